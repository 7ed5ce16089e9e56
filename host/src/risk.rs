//! The risk gate: limits every order passes before the execution slice sees
//! it. It lives in the host, so no plugin can bypass it.
//!
//! Orders that reduce a position (exits) always pass: cutting risk must never
//! be refused. Orders that open or grow one are checked against the limits;
//! a refused order is recorded in `orders.csv` with status `refused` and the
//! reason. The daily-loss limit stops new entries for the rest of the UTC
//! day; the drawdown kill switch closes everything and ends the run.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::model::Timestamp;
use crate::time::MS_PER_DAY;

/// The limits, as written in a config's `[risk]` section. A config without
/// one gets the defaults: no position or total above equity, no daily-loss
/// stop, no kill switch.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RiskLimits {
    /// Largest position in one symbol, as a fraction of equity, valued at the
    /// order's reference price (the signal bar's close, or the limit price).
    #[serde(default = "default_max_position", with = "decimal_option")]
    pub max_position_fraction: Option<Decimal>,
    /// Largest sum of all positions' absolute values, as a fraction of equity.
    #[serde(default = "default_max_gross", with = "decimal_option")]
    pub max_gross_exposure: Option<Decimal>,
    /// A loss, as a fraction of the equity the UTC day started with, after
    /// which no new positions are opened until the next day.
    #[serde(default = "default_max_daily_loss", with = "decimal_option")]
    pub max_daily_loss: Option<Decimal>,
    /// When the daily-loss limit is breached, also close every position (in
    /// live mode with market orders at the venue), once per UTC day. Off by
    /// default: the limit only stops new positions.
    #[serde(default)]
    pub daily_loss_closes: bool,
    /// A fall from the equity peak, as a fraction, at which the host closes
    /// every position and stops the run.
    #[serde(default, with = "decimal_option")]
    pub max_drawdown: Option<Decimal>,
    /// Largest notional of one order, in quote currency.
    #[serde(default, with = "decimal_option")]
    pub max_order_notional: Option<Decimal>,
    /// Most orders opening or growing positions per UTC day, over all symbols.
    #[serde(default)]
    pub max_orders_per_day: Option<u32>,
    /// Most adjustments (orders that change an open position without closing
    /// it) per position.
    #[serde(default = "default_max_adjustments")]
    pub max_adjustments_per_position: u32,
}

// The defaults let the default sizer (95% of equity per entry) through and
// never borrow: one position up to all of equity, every position together up
// to all of equity. A daily-loss stop is off by default: on daily bars a "day"
// is one bar, so any fixed threshold would silently change what a strategy
// does after an ordinary down day; a config that wants one says so.
fn default_max_position() -> Option<Decimal> {
    Some(Decimal::ONE)
}
fn default_max_gross() -> Option<Decimal> {
    Some(Decimal::ONE)
}
fn default_max_daily_loss() -> Option<Decimal> {
    None
}
fn default_max_adjustments() -> u32 {
    10
}

impl Default for RiskLimits {
    fn default() -> Self {
        RiskLimits {
            max_position_fraction: default_max_position(),
            max_gross_exposure: default_max_gross(),
            max_daily_loss: default_max_daily_loss(),
            daily_loss_closes: false,
            max_drawdown: None,
            max_order_notional: None,
            max_orders_per_day: None,
            max_adjustments_per_position: default_max_adjustments(),
        }
    }
}

impl RiskLimits {
    /// Every problem with the limits, by key.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let fraction = |key: &str, v: Option<Decimal>, max: i64, problems: &mut Vec<String>| {
            if let Some(v) = v.filter(|v| *v <= Decimal::ZERO || *v > Decimal::from(max)) {
                problems.push(format!("risk.{key} must be in (0, {max}], got {v}"));
            }
        };
        fraction("max-position-fraction", self.max_position_fraction, 100, &mut problems);
        fraction("max-gross-exposure", self.max_gross_exposure, 100, &mut problems);
        fraction("max-daily-loss", self.max_daily_loss, 1, &mut problems);
        fraction("max-drawdown", self.max_drawdown, 1, &mut problems);
        if let Some(v) = self.max_order_notional.filter(|v| *v <= Decimal::ZERO) {
            problems.push(format!("risk.max-order-notional must be positive, got {v}"));
        }
        if self.max_orders_per_day == Some(0) {
            problems.push("risk.max-orders-per-day must be at least 1".into());
        }
        problems
    }
}

/// `none` or an exact decimal (number or string) in TOML.
mod decimal_option {
    use std::str::FromStr;

    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_str(&d.normalize().to_string()),
            None => s.serialize_str("none"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Float(f64),
            Text(String),
        }
        let bad = || serde::de::Error::custom("expected a number, a decimal string, or \"none\"");
        match Raw::deserialize(d)? {
            Raw::Int(i) => Ok(Some(Decimal::from(i))),
            Raw::Float(f) => crate::model::price_to_decimal(f).map(Some).ok_or_else(bad),
            Raw::Text(t) if t == "none" => Ok(None),
            Raw::Text(t) => Decimal::from_str(t.trim()).map(Some).map_err(|_| bad()),
        }
    }
}

/// Why the gate refused an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An order as the gate sees it.
#[derive(Debug, Clone)]
pub struct Proposal {
    /// Quantity x reference price.
    pub notional: Decimal,
    /// The symbol's position value, signed, if the order filled in full at
    /// the reference price.
    pub position_value_after: Decimal,
    /// Sum of every position's absolute value if the order filled.
    pub gross_after: Decimal,
    /// Adjustments the position has had, if the order adjusts one.
    pub adjustments: Option<u32>,
}

/// The gate's state that carries from bar to bar: what paper mode persists
/// and shows the operator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskDayState {
    /// The UTC day (days since 1970-01-01) the counters are for.
    pub day: Option<i64>,
    pub day_start_equity: Decimal,
    pub orders_today: u32,
    pub peak_equity: Decimal,
    /// Why the drawdown kill switch stopped trading, if it did.
    pub killed: Option<String>,
}

/// The gate's state through a run.
#[derive(Debug, Clone)]
pub struct RiskGate {
    limits: RiskLimits,
    day: Option<i64>,
    day_start_equity: Decimal,
    orders_today: u32,
    peak_equity: Decimal,
    /// Set when the drawdown kill switch fired.
    killed: Option<String>,
    /// The account's limit on gross exposure, as a multiple of equity: 1 for
    /// a cash account, `max-leverage` for a margin one. Applies whatever
    /// `[risk]` says, so no config can borrow without opting in.
    leverage_cap: Decimal,
    /// The UTC day the daily-loss limit last closed every position.
    daily_closed: Option<i64>,
}

impl RiskGate {
    /// A gate for a cash account (no borrowing); see [`RiskGate::with_leverage_cap`].
    pub fn new(limits: RiskLimits, start_equity: Decimal) -> Self {
        RiskGate {
            limits,
            day: None,
            day_start_equity: start_equity,
            orders_today: 0,
            peak_equity: start_equity,
            killed: None,
            leverage_cap: Decimal::ONE,
            daily_closed: None,
        }
    }

    /// The account's gross-exposure limit, as a multiple of equity.
    pub fn with_leverage_cap(mut self, cap: Decimal) -> Self {
        self.leverage_cap = cap;
        self
    }

    /// New limits from here on (a config reload in paper mode); the day's
    /// counters and the equity peak carry over.
    pub fn set_limits(&mut self, limits: RiskLimits) {
        self.limits = limits;
    }

    pub fn day_state(&self) -> RiskDayState {
        RiskDayState {
            day: self.day,
            day_start_equity: self.day_start_equity,
            orders_today: self.orders_today,
            peak_equity: self.peak_equity,
            killed: self.killed.clone(),
        }
    }

    /// Called before each timestamp is processed, with the equity carried in
    /// from the last one: rolls the day over.
    pub fn begin(&mut self, ts: Timestamp, equity: Decimal) {
        let day = ts.div_euclid(MS_PER_DAY);
        if self.day != Some(day) {
            self.day = Some(day);
            self.day_start_equity = equity;
            self.orders_today = 0;
        }
    }

    /// Called after marking, with the equity at the close. Returns the kill
    /// switch's reason the first time the drawdown limit is breached.
    pub fn after_marks(&mut self, equity: Decimal) -> Option<String> {
        self.peak_equity = self.peak_equity.max(equity);
        let limit = self.limits.max_drawdown?;
        if self.killed.is_some() || self.peak_equity <= Decimal::ZERO {
            return None;
        }
        // Checked: equity far below a huge peak cannot overflow the fraction
        // into a panic; a drawdown too large to compute is past any limit.
        let drawdown =
            self.peak_equity.checked_sub(equity).and_then(|fall| fall.checked_div(self.peak_equity));
        if drawdown.is_none_or(|drawdown| drawdown >= limit) {
            let reason = format!(
                "drawdown kill switch: equity {} is {}% below its peak of {} (limit {}%)",
                equity.round_dp(2),
                drawdown.map_or_else(|| "far".to_owned(), |d| percent(d).round_dp(2).to_string()),
                self.peak_equity.round_dp(2),
                percent(limit)
            );
            self.killed = Some(reason.clone());
            return Some(reason);
        }
        None
    }

    /// Called after marking, with the equity at the close: with
    /// `daily-loss-closes`, the reason to close every position the first
    /// time in a UTC day the daily-loss limit is breached.
    pub fn daily_close_due(&mut self, equity: Decimal) -> Option<String> {
        let limit = self.limits.max_daily_loss.filter(|_| self.limits.daily_loss_closes)?;
        if self.daily_closed == self.day || !self.daily_loss_breached(equity) {
            return None;
        }
        self.daily_closed = self.day;
        Some(format!(
            "max-daily-loss: equity {} is more than {}% below the day's start of {}; every position closed and \
             no new positions until the next day",
            equity.round_dp(2),
            percent(limit),
            self.day_start_equity.round_dp(2)
        ))
    }

    /// True while the day's loss is beyond its limit: no new positions today.
    pub fn daily_loss_breached(&self, equity: Decimal) -> bool {
        // `limit` is in (0, 1], so the product is at most the day's start.
        self.limits.max_daily_loss.is_some_and(|limit| {
            self.day_start_equity.checked_mul(Decimal::ONE - limit).is_some_and(|floor| equity < floor)
        })
    }

    /// Checks an order that opens or grows a position. Exits are not checked.
    pub fn check_entry(&mut self, proposal: &Proposal, equity: Decimal) -> Result<(), Refusal> {
        let l = &self.limits;
        let pct = percent;
        if let Some(reason) = &self.killed {
            return Err(Refusal(format!("trading stopped: {reason}")));
        }
        if self.daily_loss_breached(equity) {
            let limit = l.max_daily_loss.unwrap_or_default();
            return Err(Refusal(format!(
                "max-daily-loss: equity {} is more than {}% below the day's start of {}; no new positions until the next day",
                equity.round_dp(2),
                pct(limit),
                self.day_start_equity.round_dp(2)
            )));
        }
        if let Some(max) = l.max_order_notional.filter(|max| proposal.notional > *max) {
            return Err(Refusal(format!(
                "max-order-notional: {} is over the limit of {}",
                proposal.notional.round_dp(2),
                max.normalize()
            )));
        }
        if let Some(f) = l.max_position_fraction {
            // Saturating: a cap beyond what a decimal holds is no cap.
            let cap = equity.max(Decimal::ZERO).saturating_mul(f);
            if proposal.position_value_after.abs() > cap {
                return Err(Refusal(format!(
                    "max-position-fraction: the position would be {} ({}% of equity {}), over the limit of {}%",
                    proposal.position_value_after.abs().round_dp(2),
                    percent_of(proposal.position_value_after.abs(), equity),
                    equity.round_dp(2),
                    pct(f)
                )));
            }
        }
        // The tighter of `[risk]`'s gross limit and the account's, named by
        // the one that binds.
        let (rule, f) = match l.max_gross_exposure {
            Some(f) if f <= self.leverage_cap => ("max-gross-exposure", f),
            _ => ("account max-leverage", self.leverage_cap),
        };
        let cap = equity.max(Decimal::ZERO).checked_mul(f).unwrap_or(Decimal::MAX);
        if proposal.gross_after > cap {
            return Err(Refusal(format!(
                "{rule}: positions and pending entries would total {} ({}% of equity {}), over the limit of {}%",
                proposal.gross_after.round_dp(2),
                percent_of(proposal.gross_after, equity),
                equity.round_dp(2),
                pct(f)
            )));
        }
        if let Some(adjustments) = proposal.adjustments.filter(|a| *a >= l.max_adjustments_per_position) {
            return Err(Refusal(format!(
                "max-adjustments-per-position: the position has been adjusted {adjustments} times already"
            )));
        }
        if let Some(max) = l.max_orders_per_day.filter(|max| self.orders_today >= *max) {
            return Err(Refusal(format!("max-orders-per-day: {max} orders already placed today")));
        }
        self.orders_today += 1;
        Ok(())
    }
}

/// `part` as a percentage of `whole`, for messages; 0 when it cannot be computed.
fn percent_of(part: Decimal, whole: Decimal) -> Decimal {
    if whole <= Decimal::ZERO {
        return Decimal::ZERO;
    }
    part.checked_div(whole).map_or(Decimal::ZERO, |ratio| percent(ratio).round_dp(2))
}

/// A fraction as a percentage, for messages (saturating: never a panic).
fn percent(fraction: Decimal) -> Decimal {
    fraction.saturating_mul(Decimal::ONE_HUNDRED).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn proposal(notional: &str, after: &str, gross: &str) -> Proposal {
        Proposal {
            notional: d(notional),
            position_value_after: d(after),
            gross_after: d(gross),
            adjustments: None,
        }
    }

    #[test]
    fn defaults_let_the_default_sizer_through_and_never_borrow() {
        let mut gate = RiskGate::new(RiskLimits::default(), d("10000"));
        gate.begin(0, d("10000"));
        // The default sizer's 95% entry passes, and so does all of equity.
        assert!(gate.check_entry(&proposal("9500", "9500", "9500"), d("10000")).is_ok());
        assert!(gate.check_entry(&proposal("10000", "10000", "10000"), d("10000")).is_ok());
        // A second 95% position would borrow: refused by the gross limit.
        let err = gate.check_entry(&proposal("9500", "9500", "19000"), d("10000")).unwrap_err();
        assert!(err.0.starts_with("max-gross-exposure"), "{err}");
        // No daily-loss stop by default: down 10% on the day still enters.
        assert!(gate.check_entry(&proposal("100", "100", "100"), d("9000")).is_ok());
    }

    #[test]
    fn the_account_cap_applies_whatever_risk_says() {
        let limits = RiskLimits { max_gross_exposure: None, ..RiskLimits::default() };
        let mut gate = RiskGate::new(limits.clone(), d("10000"));
        let err = gate.check_entry(&proposal("9500", "9500", "19000"), d("10000")).unwrap_err();
        assert!(err.0.starts_with("account max-leverage"), "{err}");
        let mut margin = RiskGate::new(limits, d("10000")).with_leverage_cap(d("2"));
        assert!(margin.check_entry(&proposal("9500", "9500", "19000"), d("10000")).is_ok());
        assert!(margin.check_entry(&proposal("9500", "9500", "20000.01"), d("10000")).is_err());
    }

    #[test]
    fn each_limit_refuses_with_its_name() {
        let limits = RiskLimits {
            max_position_fraction: None,
            max_gross_exposure: Some(d("1.5")),
            max_daily_loss: None,
            max_drawdown: None,
            max_order_notional: Some(d("5000")),
            max_orders_per_day: Some(2),
            max_adjustments_per_position: 3,
            daily_loss_closes: false,
        };
        let mut gate = RiskGate::new(limits, d("10000")).with_leverage_cap(d("2"));
        gate.begin(0, d("10000"));
        let cases = [
            (proposal("6000", "6000", "6000"), Some("max-order-notional")),
            (proposal("4000", "4000", "16000"), Some("max-gross-exposure")),
            (
                Proposal { adjustments: Some(3), ..proposal("10", "10", "10") },
                Some("max-adjustments-per-position"),
            ),
            (proposal("10", "10", "10"), None),
            (proposal("10", "10", "10"), None),
            (proposal("10", "10", "10"), Some("max-orders-per-day")),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            let got = gate.check_entry(&p, d("10000")).err().map(|r| r.0);
            match want {
                None => assert_eq!(got, None, "case {i}"),
                Some(prefix) => {
                    assert!(got.as_deref().is_some_and(|r| r.starts_with(prefix)), "case {i}: {got:?}")
                }
            }
        }
    }

    #[test]
    fn the_daily_loss_close_fires_once_a_day_and_only_when_asked() {
        let limits = RiskLimits { max_daily_loss: Some(d("0.1")), ..RiskLimits::default() };
        let mut gate = RiskGate::new(limits.clone(), d("10000"));
        gate.begin(0, d("10000"));
        assert!(gate.daily_close_due(d("5000")).is_none(), "off unless daily-loss-closes");
        let mut gate = RiskGate::new(RiskLimits { daily_loss_closes: true, ..limits }, d("10000"));
        gate.begin(0, d("10000"));
        assert!(gate.daily_close_due(d("9000")).is_none());
        let reason = gate.daily_close_due(d("8999")).unwrap();
        assert!(reason.contains("every position closed"), "{reason}");
        assert!(gate.daily_close_due(d("8000")).is_none(), "once a day");
        gate.begin(MS_PER_DAY, d("8000"));
        assert!(gate.daily_close_due(d("7199")).is_some(), "again the next day");
    }

    #[test]
    fn the_kill_switch_fires_once_at_the_drawdown_limit() {
        let limits = RiskLimits { max_drawdown: Some(d("0.1")), ..RiskLimits::default() };
        let mut gate = RiskGate::new(limits, d("10000"));
        assert!(gate.after_marks(d("12000")).is_none());
        assert!(gate.after_marks(d("10801")).is_none());
        let reason = gate.after_marks(d("10800")).unwrap();
        assert!(reason.contains("10% below its peak of 12000"), "{reason}");
        assert!(gate.after_marks(d("5000")).is_none(), "fires once");
        assert!(
            gate.check_entry(&proposal("1", "1", "1"), d("5000"))
                .unwrap_err()
                .0
                .starts_with("trading stopped")
        );
    }

    #[test]
    fn limits_read_from_toml_with_none_for_off() {
        let limits: RiskLimits =
            toml::from_str("max-position-fraction = 1\nmax-daily-loss = \"none\"\nmax-drawdown = 0.25")
                .unwrap();
        assert_eq!(limits.max_position_fraction, Some(Decimal::ONE));
        assert_eq!(limits.max_daily_loss, None);
        assert_eq!(limits.max_drawdown, Some(d("0.25")));
        assert_eq!(limits.max_gross_exposure, Some(Decimal::ONE), "unset keys keep their defaults");
        let bad: RiskLimits = toml::from_str("max-daily-loss = 2").unwrap();
        assert_eq!(bad.problems(), vec!["risk.max-daily-loss must be in (0, 1], got 2"]);
    }
}
