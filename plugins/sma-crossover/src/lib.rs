//! `sma-crossover`: the moving-average crossover, with a rule per regime.
//!
//! The crossover rule enters long when the fast average crosses above the
//! slow one (fast > slow on this bar, fast <= slow on the previous bar) and
//! exits when it crosses below (fast < slow now, fast >= slow before). A
//! signal needs both averages on this bar and the previous one.
//!
//! Each regime maps to one rule (setting = regime name):
//! - `crossover`: enter and exit on crosses (the default for every regime);
//! - `exit-only`: exit on a cross below, never enter;
//! - `flat`: exit at once and stay out;
//! - `hold`: do nothing, keep whatever position there is.
//!
//! With `side = "short"` the rule is mirrored: a cross below enters short and
//! a cross above covers (the host must allow short selling).
//!
//! Orders are market orders by default. `entry-order = "limit"` buys at
//! close x (1 - `entry-offset`), `"stop"` at close x (1 + `entry-offset`);
//! `exit-order` likewise sells at close x (1 + `exit-offset`) for a limit or
//! close x (1 - `exit-offset`) for a stop. `time-in-force` applies to both.

use plugin_sdk::{
    Action, Bar, Config, Error, FeatureNames, FeatureRows, Manifest, OrderType, Param, Regime, Result,
    Signal, Strategy, TimeInForce,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Crossover,
    ExitOnly,
    Flat,
    Hold,
}

const REGIME_KEYS: [(&str, Regime); 5] = [
    ("unknown", Regime::Unknown),
    ("trending-up", Regime::TrendingUp),
    ("trending-down", Regime::TrendingDown),
    ("ranging", Regime::Ranging),
    ("volatile", Regime::Volatile),
];

pub struct SmaCrossover {
    fast: usize,
    slow: usize,
    rules: [Rule; 5],
    previous: Option<(f64, f64)>,
    entry: OrderStyle,
    exit: OrderStyle,
    time_in_force: TimeInForce,
    /// Entering long (false) or short (true).
    short: bool,
}

/// How a signal becomes an order: its type and how far from the close its price is.
#[derive(Debug, Clone, Copy)]
struct OrderStyle {
    order_type: OrderType,
    offset: f64,
}

impl OrderStyle {
    fn from(config: &Config, order_key: &str, offset_key: &str) -> Result<Self> {
        let order_type = match config.text(order_key)? {
            "market" => OrderType::Market,
            "limit" => OrderType::Limit,
            "stop" => OrderType::Stop,
            other => {
                return Err(Error::new(format!(
                    "`{order_key}` must be market, limit or stop, got {other:?}"
                )));
            }
        };
        let offset = config.float(offset_key)?;
        if !(0.0..1.0).contains(&offset) {
            return Err(Error::new(format!("`{offset_key}` must be in [0, 1), got {offset}")));
        }
        Ok(OrderStyle { order_type, offset })
    }

    /// The signal for `action` on bar `i` closing at `close`. Buying below the
    /// close is a limit, above it a stop; selling the other way round.
    fn signal(&self, i: usize, action: Action, close: f64, time_in_force: TimeInForce) -> Signal {
        let buying = matches!(action, Action::EnterLong | Action::ExitShort);
        let below = close * (1.0 - self.offset);
        let above = close * (1.0 + self.offset);
        let signal = match self.order_type {
            OrderType::Limit => Signal::limit(i, action, if buying { below } else { above }),
            OrderType::Stop => Signal::stop(i, action, if buying { above } else { below }),
            _ => Signal::market(i, action),
        };
        signal.with_time_in_force(time_in_force)
    }
}

fn regime_index(regime: Regime) -> usize {
    REGIME_KEYS.iter().position(|(_, r)| *r == regime).expect("every regime has a key")
}

impl Strategy for SmaCrossover {
    fn manifest() -> Manifest {
        let mut m = Manifest::new("Moving-average crossover with a rule per market regime")
            .param(Param::text("fast-feature", "sma_fast", "feature holding the fast average"))
            .param(Param::text("slow-feature", "sma_slow", "feature holding the slow average"));
        for (key, _) in REGIME_KEYS {
            m = m.param(Param::text(
                key,
                "crossover",
                "rule in this regime: crossover, exit-only, flat or hold",
            ));
        }
        m.param(Param::text("entry-order", "market", "entry order type: market, limit or stop"))
            .param(Param::float(
                "entry-offset",
                0.0,
                "limit/stop entry price distance from the close, as a fraction",
            ))
            .param(Param::text("exit-order", "market", "exit order type: market, limit or stop"))
            .param(Param::float(
                "exit-offset",
                0.0,
                "limit/stop exit price distance from the close, as a fraction",
            ))
            .param(Param::text("time-in-force", "gtc", "gtc, day or ioc"))
            .param(Param::text(
                "side",
                "long",
                "long (enter on a cross above) or short (enter short on a cross below)",
            ))
    }

    fn new(config: &Config, features: &FeatureNames) -> Result<Self> {
        let mut rules = [Rule::Crossover; 5];
        for (i, (key, _)) in REGIME_KEYS.iter().enumerate() {
            rules[i] = match config.text(key)? {
                "crossover" => Rule::Crossover,
                "exit-only" => Rule::ExitOnly,
                "flat" => Rule::Flat,
                "hold" => Rule::Hold,
                other => {
                    return Err(Error::new(format!(
                        "`{key}` must be crossover, exit-only, flat or hold, got {other:?}"
                    )));
                }
            };
        }
        let time_in_force = match config.text("time-in-force")? {
            "gtc" => TimeInForce::Gtc,
            "day" => TimeInForce::Day,
            "ioc" => TimeInForce::Ioc,
            other => {
                return Err(Error::new(format!("`time-in-force` must be gtc, day or ioc, got {other:?}")));
            }
        };
        Ok(SmaCrossover {
            fast: features.index(config.text("fast-feature")?)?,
            slow: features.index(config.text("slow-feature")?)?,
            rules,
            previous: None,
            entry: OrderStyle::from(config, "entry-order", "entry-offset")?,
            exit: OrderStyle::from(config, "exit-order", "exit-offset")?,
            time_in_force,
            short: match config.text("side")? {
                "long" => false,
                "short" => true,
                other => return Err(Error::new(format!("`side` must be long or short, got {other:?}"))),
            },
        })
    }

    fn decide(
        &mut self,
        bars: &[Bar],
        features: &FeatureRows,
        regimes: &[Regime],
        signals: &mut Vec<Signal>,
    ) -> Result<()> {
        for (i, regime) in regimes.iter().enumerate().take(bars.len()) {
            let (fast, slow) = (features.get(i, self.fast), features.get(i, self.slow));
            let previous = self.previous.replace((fast, slow));
            let rule = self.rules[regime_index(*regime)];
            let (close, tif) = (bars[i].close, self.time_in_force);
            let (enter, exit) = if self.short {
                (Action::EnterShort, Action::ExitShort)
            } else {
                (Action::EnterLong, Action::ExitLong)
            };
            if rule == Rule::Flat {
                signals.push(self.exit.signal(i, exit, close, tif));
                continue;
            }
            let Some((prev_fast, prev_slow)) = previous else { continue };
            if [fast, slow, prev_fast, prev_slow].iter().any(|v| v.is_nan()) {
                continue;
            }
            let crossed_up = fast > slow && prev_fast <= prev_slow;
            let crossed_down = fast < slow && prev_fast >= prev_slow;
            // Long: in on a cross up, out on a cross down; short: the mirror image.
            let (entry_cross, exit_cross) =
                if self.short { (crossed_down, crossed_up) } else { (crossed_up, crossed_down) };
            match rule {
                Rule::Crossover if entry_cross => signals.push(self.entry.signal(i, enter, close, tif)),
                Rule::Crossover | Rule::ExitOnly if exit_cross => {
                    signals.push(self.exit.signal(i, exit, close, tif))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

plugin_sdk::export_strategy!(SmaCrossover);

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::{bars_from_closes, decide, decide_in};

    const NAN: f64 = f64::NAN;

    fn strategy(config: Config) -> SmaCrossover {
        SmaCrossover::new(&config, &FeatureNames::new(["sma_fast", "sma_slow"])).unwrap()
    }

    fn defaults() -> Config {
        Config::defaults(&SmaCrossover::manifest())
    }

    #[test]
    fn crosses_make_signals_and_touches_count_as_not_above() {
        // (fast, slow) per bar.
        let features = [NAN, NAN, 1.0, 2.0, 2.0, 2.0, 3.0, 2.0, 3.0, 2.5, 2.0, 2.5, 2.0, 2.0];
        let bars = bars_from_closes(&[1.0; 7]);
        let signals = decide(&mut strategy(defaults()), &bars, &features, 2).unwrap();
        let got: Vec<(u32, Action)> = signals.iter().map(|s| (s.bar_index, s.action)).collect();
        // Bar 2: fast == slow, not above yet. Bar 3: 3 > 2 after 2 <= 2: enter.
        // Bar 5: 2 < 2.5 after 3 >= 2.5: exit. Bar 6: equal again: nothing.
        assert_eq!(got, vec![(3, Action::EnterLong), (5, Action::ExitLong)]);
    }

    #[test]
    fn state_carries_across_batches() {
        let mut s = strategy(defaults());
        let bars = bars_from_closes(&[1.0]);
        assert!(decide(&mut s, &bars, &[1.0, 2.0], 2).unwrap().is_empty());
        let signals = decide(&mut s, &bars, &[3.0, 2.0], 2).unwrap();
        assert_eq!(signals[0].action, Action::EnterLong);
    }

    #[test]
    fn rules_per_regime() {
        let features = [1.0, 2.0, 3.0, 2.0];
        let bars = bars_from_closes(&[1.0, 1.0]);
        let regimes = [Regime::Volatile, Regime::Volatile];
        let mut exit_only = strategy(defaults().with("volatile", "exit-only"));
        assert!(decide_in(&mut exit_only, &bars, &features, 2, &regimes).unwrap().is_empty());
        let mut flat = strategy(defaults().with("volatile", "flat"));
        let signals = decide_in(&mut flat, &bars, &features, 2, &regimes).unwrap();
        assert!(signals.iter().all(|s| s.action == Action::ExitLong) && signals.len() == 2);
    }

    #[test]
    fn order_styles_price_from_the_close() {
        let features = [1.0, 2.0, 3.0, 2.0];
        let bars = bars_from_closes(&[100.0, 100.0]);
        let config =
            defaults().with("entry-order", "limit").with("entry-offset", 0.01).with("time-in-force", "day");
        let signals = decide(&mut strategy(config), &bars, &features, 2).unwrap();
        assert_eq!(signals[0].order_type, OrderType::Limit);
        assert_eq!(signals[0].limit_price, Some(99.0));
        assert_eq!(signals[0].time_in_force, TimeInForce::Day);
        let config = defaults().with("entry-order", "stop").with("entry-offset", 0.01);
        let signals = decide(&mut strategy(config), &bars, &features, 2).unwrap();
        assert_eq!((signals[0].order_type, signals[0].stop_price), (OrderType::Stop, Some(101.0)));
    }

    #[test]
    fn the_short_side_mirrors_the_rule() {
        let features = [1.0, 2.0, 3.0, 2.0, 1.0, 2.0];
        let bars = bars_from_closes(&[100.0, 100.0, 100.0]);
        let signals = decide(&mut strategy(defaults().with("side", "short")), &bars, &features, 2).unwrap();
        let got: Vec<(u32, Action)> = signals.iter().map(|s| (s.bar_index, s.action)).collect();
        assert_eq!(got, vec![(1, Action::ExitShort), (2, Action::EnterShort)]);
    }

    #[test]
    fn a_missing_feature_names_what_exists() {
        let err = SmaCrossover::new(&defaults(), &FeatureNames::new(["rsi"])).err().unwrap();
        assert!(err.to_string().contains("needs feature `sma_fast`"), "{err}");
    }

    #[test]
    fn an_unknown_rule_is_refused() {
        let err = SmaCrossover::new(
            &defaults().with("ranging", "yolo"),
            &FeatureNames::new(["sma_fast", "sma_slow"]),
        )
        .err()
        .unwrap();
        assert_eq!(err.to_string(), "`ranging` must be crossover, exit-only, flat or hold, got \"yolo\"");
    }
}
