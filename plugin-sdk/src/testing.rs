//! Helpers for testing slices natively with `cargo test`: build bars, feed them
//! to a slice the way the host does, and get its outputs back.
//!
//! The helpers check what the host checks (one regime per bar, at most one
//! signal per bar and in order, the right number of feature values, bars in
//! order and inside the range), so a slice that passes its tests here does not
//! surprise you in a backtest.
//!
//! ```
//! use plugin_sdk::testing::{self, Pipeline};
//! use plugin_sdk::{Action, Analyzer, Bar, Config, FeatureNames, FeatureRows, Manifest, Param};
//! use plugin_sdk::{Regime, RegimeDetector, Result, Signal, Strategy};
//!
//! // A one-feature analyzer, a detector that sees every bar as trending up,
//! // and a strategy that enters when the close rises above the previous close.
//! struct Last;
//! impl Analyzer for Last {
//!     fn manifest() -> Manifest { Manifest::new("the previous close") }
//!     fn new(_: &Config) -> Result<Self> { Ok(Last) }
//!     fn outputs(&self) -> Vec<String> { vec!["close".into()] }
//!     fn update(&mut self, bars: &[Bar], values: &mut Vec<f64>) -> Result<()> {
//!         values.extend(bars.iter().map(|b| b.close));
//!         Ok(())
//!     }
//! }
//! struct Up;
//! impl RegimeDetector for Up {
//!     fn manifest() -> Manifest { Manifest::new("always up") }
//!     fn new(_: &Config, _: &FeatureNames) -> Result<Self> { Ok(Up) }
//!     fn classify(&mut self, bars: &[Bar], _: &FeatureRows, out: &mut Vec<Regime>) -> Result<()> {
//!         out.extend(bars.iter().map(|_| Regime::TrendingUp));
//!         Ok(())
//!     }
//! }
//! struct Rising { close: usize, previous: f64 }
//! impl Strategy for Rising {
//!     fn manifest() -> Manifest { Manifest::new("enters on a higher close") }
//!     fn new(_: &Config, features: &FeatureNames) -> Result<Self> {
//!         Ok(Rising { close: features.index("close")?, previous: f64::NAN })
//!     }
//!     fn decide(&mut self, bars: &[Bar], f: &FeatureRows, _: &[Regime], out: &mut Vec<Signal>) -> Result<()> {
//!         for i in 0..bars.len() {
//!             let close = f.get(i, self.close);
//!             if close > self.previous {
//!                 out.push(Signal::market(i, Action::EnterLong));
//!             }
//!             self.previous = close;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let mut pipeline = Pipeline::<Last, Up, Rising>::with_defaults().unwrap();
//! // Batches of 2 bars, as the host may hand them over: state must carry across.
//! let run = pipeline.run(&testing::bars_from_closes(&[10.0, 9.0, 11.0, 12.0]), 2).unwrap();
//! assert_eq!(run.actions(), vec![(2, Action::EnterLong), (3, Action::EnterLong)]);
//! assert_eq!(run.feature(3, "close"), Some(12.0));
//! ```

use std::path::Path;
use std::str::FromStr;

use crate::{
    Action, Analyzer, Bar, Config, DataSource, Decimal, Error, Executor, FeatureNames, FeatureRows, Order,
    OrderEvent, OrderType, Regime, RegimeDetector, Result, Side, Signal, SizingRequest, Strategy,
    TimeInForce, TimeRange, Timestamp,
};

/// 2024-01-01T00:00:00Z in milliseconds: the first bar of [`bars_from_closes`].
pub const START: Timestamp = 1_704_067_200_000;

/// One day in milliseconds.
pub const DAY: Timestamp = 86_400_000;

/// Daily bars from closing prices, starting at [`START`]: each bar opens at the
/// previous close (the first at its own close), and high and low span open and close.
pub fn bars_from_closes(closes: &[f64]) -> Vec<Bar> {
    let mut prev = closes.first().copied().unwrap_or_default();
    closes
        .iter()
        .enumerate()
        .map(|(i, &close)| {
            let open = prev;
            prev = close;
            Bar {
                ts: START + i as Timestamp * DAY,
                open,
                high: open.max(close),
                low: open.min(close),
                close,
                volume: 1_000.0,
            }
        })
        .collect()
}

/// Bars from CSV text in the format the host's data files use: the header
/// `timestamp,open,high,low,close,volume`, then one bar per row with an
/// ISO-8601 UTC timestamp (`2024-01-05` or `2024-01-05T13:00:00Z`). Lines
/// starting with `#` before the header are comments. Errors name the line.
pub fn bars_from_csv(text: &str) -> Result<Vec<Bar>> {
    let mut lines = text.lines().enumerate().skip_while(|(_, l)| l.starts_with('#') || l.trim().is_empty());
    match lines.next() {
        Some((_, header)) if header.trim() == "timestamp,open,high,low,close,volume" => {}
        Some((n, header)) => {
            return Err(Error::new(format!(
                "line {}: expected the header `timestamp,open,high,low,close,volume`, got `{header}`",
                n + 1
            )));
        }
        None => return Err(Error::new("no header line `timestamp,open,high,low,close,volume`")),
    }
    let mut bars = Vec::new();
    for (n, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let at = |why: String| Error::new(format!("line {}: {why}", n + 1));
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 6 {
            return Err(at(format!("expected 6 fields, got {}", fields.len())));
        }
        let number = |i: usize, name: &str| {
            fields[i].parse::<f64>().map_err(|_| at(format!("`{name}`: `{}` is not a number", fields[i])))
        };
        let bar = Bar {
            ts: parse_timestamp(fields[0]).map_err(at)?,
            open: number(1, "open")?,
            high: number(2, "high")?,
            low: number(3, "low")?,
            close: number(4, "close")?,
            volume: number(5, "volume")?,
        };
        if bars.last().is_some_and(|prev: &Bar| prev.ts >= bar.ts) {
            return Err(at("timestamps must strictly increase".to_owned()));
        }
        bars.push(bar);
    }
    Ok(bars)
}

/// Bars from a CSV file (see [`bars_from_csv`]); errors name the file.
pub fn read_bars(path: impl AsRef<Path>) -> Result<Vec<Bar>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
    bars_from_csv(&text).map_err(|e| Error::new(format!("{}: {e}", path.display())))
}

/// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ` to milliseconds since the epoch.
fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    let bad = || format!("`{text}` is not a timestamp like 2024-01-05 or 2024-01-05T13:00:00Z");
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let [y, m, d] = parts[..] else { return Err(bad()) };
    let (y, m, d) = (num(y)?, num(m)?, num(d)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let yy = if m <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let mut ms = days * DAY;
    if let Some(time) = time {
        let hms: Vec<&str> = time.split(':').collect();
        let (h, min, s) = match hms[..] {
            [h, m] => (num(h)?, num(m)?, 0),
            [h, m, s] => (num(h)?, num(m)?, num(s)?),
            _ => return Err(bad()),
        };
        ms += ((h * 60 + min) * 60 + s) * 1_000;
    }
    Ok(ms)
}

/// Opens `symbol` on a data source and drains it the way the host does
/// (batches of `batch_size` until an empty one), checking what the host checks:
/// no more than asked for, strictly increasing times, inside the range.
pub fn collect_bars<D: DataSource>(
    source: &mut D,
    symbol: &str,
    range: TimeRange,
    batch_size: usize,
) -> Result<Vec<Bar>> {
    source.open(symbol, range)?;
    let mut all: Vec<Bar> = Vec::new();
    loop {
        let mut batch = Vec::new();
        source.next_batch(batch_size, &mut batch)?;
        if batch.is_empty() {
            return Ok(all);
        }
        if batch.len() > batch_size {
            return Err(Error::new(format!("returned {} bars when asked for {batch_size}", batch.len())));
        }
        for bar in batch {
            if all.last().is_some_and(|prev| prev.ts >= bar.ts) {
                return Err(Error::new(format!("bar at {} does not come after the previous bar", bar.ts)));
            }
            if !range.contains(bar.ts) {
                return Err(Error::new(format!("bar at {} is outside the requested range", bar.ts)));
            }
            all.push(bar);
        }
    }
}

/// Feeds `bars` to an analyzer in one batch and returns its values, row-major.
pub fn update<A: Analyzer>(analyzer: &mut A, bars: &[Bar]) -> Result<Vec<f64>> {
    let mut values = Vec::new();
    analyzer.update(bars, &mut values)?;
    Ok(values)
}

/// The analyzer's outputs, as the regime and strategy slices receive them.
pub fn feature_names<A: Analyzer>(analyzer: &A) -> FeatureNames {
    FeatureNames::new(analyzer.outputs())
}

/// Runs a regime detector on one batch.
pub fn classify<R: RegimeDetector>(
    detector: &mut R,
    bars: &[Bar],
    features: &[f64],
    width: usize,
) -> Result<Vec<Regime>> {
    let mut regimes = Vec::new();
    detector.classify(bars, &FeatureRows::new(features, width), &mut regimes)?;
    Ok(regimes)
}

/// Runs a strategy on one batch, every bar in the `unknown` regime.
pub fn decide<S: Strategy>(
    strategy: &mut S,
    bars: &[Bar],
    features: &[f64],
    width: usize,
) -> Result<Vec<Signal>> {
    decide_in(strategy, bars, features, width, &vec![Regime::Unknown; bars.len()])
}

/// Runs a strategy on one batch with the given regimes.
pub fn decide_in<S: Strategy>(
    strategy: &mut S,
    bars: &[Bar],
    features: &[f64],
    width: usize,
    regimes: &[Regime],
) -> Result<Vec<Signal>> {
    let mut signals = Vec::new();
    strategy.decide(bars, &FeatureRows::new(features, width), regimes, &mut signals)?;
    Ok(signals)
}

/// An analysis, a regime and a strategy slice chained the way the host chains
/// them for one symbol.
pub struct Pipeline<A, R, S> {
    /// The analysis slice.
    pub analyzer: A,
    /// The regime slice, built with the analyzer's outputs.
    pub detector: R,
    /// The strategy slice, built with the analyzer's outputs.
    pub strategy: S,
    names: FeatureNames,
    bars_seen: usize,
}

/// What a [`Pipeline`] produced over the bars it was given.
#[derive(Debug, Clone)]
pub struct PipelineRun {
    /// The analyzer's feature names.
    pub names: FeatureNames,
    /// Feature values, one row per bar.
    pub features: Vec<f64>,
    /// One regime per bar.
    pub regimes: Vec<Regime>,
    /// The strategy's signals, with `bar_index` counted from the first bar of
    /// this run rather than from the start of each batch.
    pub signals: Vec<Signal>,
}

impl PipelineRun {
    /// `(bar index, action)` of every signal, the easiest thing to assert on.
    pub fn actions(&self) -> Vec<(usize, Action)> {
        self.signals.iter().map(|s| (s.bar_index as usize, s.action)).collect()
    }

    /// The value of feature `name` on bar `bar`, if both exist.
    pub fn feature(&self, bar: usize, name: &str) -> Option<f64> {
        let col = self.names.names().iter().position(|n| n == name)?;
        self.features.get(bar * self.names.len() + col).copied()
    }
}

impl<A: Analyzer, R: RegimeDetector, S: Strategy> Pipeline<A, R, S> {
    /// Builds the three slices with the given configs, as the host would:
    /// the analyzer first, then the others with its outputs.
    pub fn new(analysis: &Config, regime: &Config, strategy: &Config) -> Result<Self> {
        let analyzer = A::new(analysis)?;
        let names = feature_names(&analyzer);
        let detector = R::new(regime, &names)?;
        let strategy = S::new(strategy, &names)?;
        Ok(Pipeline { analyzer, detector, strategy, names, bars_seen: 0 })
    }

    /// Builds the three slices with their default configs.
    pub fn with_defaults() -> Result<Self> {
        Self::new(
            &Config::defaults(&A::manifest()),
            &Config::defaults(&R::manifest()),
            &Config::defaults(&S::manifest()),
        )
    }

    /// Feeds `bars` through the chain in batches of `batch_size`, checking
    /// every output the way the host does. State carries over between calls.
    pub fn run(&mut self, bars: &[Bar], batch_size: usize) -> Result<PipelineRun> {
        let width = self.names.len();
        let mut run = PipelineRun {
            names: self.names.clone(),
            features: Vec::new(),
            regimes: Vec::new(),
            signals: Vec::new(),
        };
        for (n, batch) in bars.chunks(batch_size.max(1)).enumerate() {
            let offset = n * batch_size.max(1);
            let values = update(&mut self.analyzer, batch)?;
            if values.len() != batch.len() * width {
                return Err(Error::new(format!(
                    "the analyzer returned {} values for {} bars of {width} features",
                    values.len(),
                    batch.len()
                )));
            }
            let regimes = classify(&mut self.detector, batch, &values, width)?;
            if regimes.len() != batch.len() {
                return Err(Error::new(format!(
                    "the regime detector returned {} regimes for {} bars",
                    regimes.len(),
                    batch.len()
                )));
            }
            let signals = decide_in(&mut self.strategy, batch, &values, width, &regimes)?;
            let mut last: Option<u32> = None;
            for signal in signals {
                if signal.bar_index as usize >= batch.len() || last.is_some_and(|l| l >= signal.bar_index) {
                    return Err(Error::new(format!(
                        "the strategy's signal for bar {} of a batch of {} is out of range or out of order",
                        signal.bar_index,
                        batch.len()
                    )));
                }
                last = Some(signal.bar_index);
                run.signals.push(Signal { bar_index: (offset + signal.bar_index as usize) as u32, ..signal });
            }
            run.features.extend(values);
            run.regimes.extend(regimes);
        }
        self.bars_seen += bars.len();
        Ok(run)
    }

    /// Bars fed so far, over every call to [`run`](Self::run).
    pub fn bars_seen(&self) -> usize {
        self.bars_seen
    }
}

fn decimal(field: &str, text: &str) -> Decimal {
    Decimal::from_str(text).unwrap_or_else(|_| panic!("{field}: {text:?} is not a decimal"))
}

/// A sizing request as the host would send it for `action` on a bar closing
/// at `price`. Amounts are decimal strings (`"10000"`); panics on a bad one,
/// since it is test input.
pub fn sizing_request(
    action: Action,
    price: &str,
    equity: &str,
    cash: &str,
    position: &str,
) -> SizingRequest {
    SizingRequest {
        symbol: "TEST".to_owned(),
        action,
        ts: START,
        price: decimal("price", price),
        equity: decimal("equity", equity),
        cash: decimal("cash", cash),
        position: decimal("position", position),
    }
}

/// A good-till-cancelled market order for `quantity` (a decimal string),
/// created on the bar that opened at `created_at`.
pub fn market_order(id: u64, side: Side, quantity: &str, created_at: Timestamp) -> Order {
    Order {
        id,
        symbol: "TEST".to_owned(),
        side,
        quantity: decimal("quantity", quantity),
        order_type: OrderType::Market,
        limit_price: None,
        stop_price: None,
        time_in_force: TimeInForce::Gtc,
        created_at,
    }
}

/// Submits `order` on `bars[0]` (the bar it was created on) and hands the
/// executor the later bars one at a time while the order is working, as the
/// host does. Returns every event.
pub fn execute<E: Executor>(executor: &mut E, order: Order, bars: &[Bar]) -> Result<Vec<OrderEvent>> {
    let (first, rest) = bars.split_first().ok_or_else(|| Error::new("execute needs at least one bar"))?;
    let (id, quantity) = (order.id, order.quantity);
    let mut events = Vec::new();
    executor.submit(order, first, &mut events)?;
    let done = |events: &[OrderEvent]| {
        let filled: Decimal = events
            .iter()
            .filter_map(|e| match e {
                OrderEvent::Filled(f) if f.order_id == id => Some(f.quantity),
                _ => None,
            })
            .sum();
        filled >= quantity
            || events.iter().any(|e| {
                matches!(e, OrderEvent::Cancelled { order_id, .. } | OrderEvent::Rejected { order_id, .. }
                    if *order_id == id)
            })
    };
    for bar in rest {
        if done(&events) {
            break;
        }
        executor.on_bar(bar, &mut events)?;
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_bars_parse_dates_times_and_comments() {
        let text = "# SYNTHETIC\ntimestamp,open,high,low,close,volume\n\
                    2024-01-01,1,2,0.5,1.5,10\n2024-01-01T12:30:00Z,1.5,2,1,2,5\n";
        let bars = bars_from_csv(text).unwrap();
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[0].ts, START);
        assert_eq!(bars[1].ts, START + DAY / 2 + 30 * 60_000);
        assert_eq!(bars[1].close, 2.0);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let err =
            bars_from_csv("timestamp,open,high,low,close,volume\n2024-01-01,1,2,0.5,x,10\n").unwrap_err();
        assert_eq!(err.to_string(), "line 2: `close`: `x` is not a number");
        let err =
            bars_from_csv("timestamp,open,high,low,close,volume\n2024-01-02,1,1,1,1,1\n2024-01-01,1,1,1,1,1")
                .unwrap_err();
        assert_eq!(err.to_string(), "line 3: timestamps must strictly increase");
    }

    #[test]
    fn timestamps_match_the_calendar() {
        // 2000-03-01 is day 11017 after the epoch (a leap-year February before it).
        assert_eq!(parse_timestamp("2000-03-01").unwrap(), 11_017 * DAY);
        assert!(parse_timestamp("2024-13-01").is_err());
    }
}

/// A venue for testing an [`crate::ExecAlgorithm`] natively: market children
/// fill in full at the open of the next bar passed to [`NextOpenVenue::advance`]
/// (as the reference `sim-execution` does with `fill = "next-open"`), without
/// fees; limit and stop children rest until cancelled. It checks what the
/// host checks: a positive quantity, and no more than the parent's quantity
/// across its children once [`NextOpenVenue::parent`] declared it.
#[derive(Debug, Default)]
pub struct NextOpenVenue {
    children: Vec<crate::ChildState>,
    kinds: Vec<crate::OrderType>,
    parents: std::collections::BTreeMap<u64, crate::Decimal>,
}

impl NextOpenVenue {
    /// A venue with no orders.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares a parent of `quantity`, so children beyond it are refused.
    pub fn parent(&mut self, id: u64, quantity: crate::Decimal) {
        self.parents.insert(id, quantity);
    }

    /// The next bar: working market children fill at its open.
    pub fn advance(&mut self, bar: &Bar) {
        let open = crate::price_to_decimal(bar.open).unwrap_or_default();
        for (child, kind) in self.children.iter_mut().zip(&self.kinds) {
            if child.is_working() && *kind == crate::OrderType::Market {
                child.status = crate::ChildStatus::Filled;
                child.filled_quantity = child.quantity;
                child.average_price = Some(open);
            }
        }
    }

    /// Every child placed so far, in order.
    pub fn children(&self) -> &[crate::ChildState] {
        &self.children
    }
}

impl crate::Venue for NextOpenVenue {
    fn place(&mut self, order: crate::ChildOrder) -> Result<crate::ChildState> {
        if order.quantity <= crate::Decimal::ZERO {
            return Err(crate::Error::new(format!(
                "child quantity must be positive, got {}",
                order.quantity
            )));
        }
        if let Some(limit) = self.parents.get(&order.parent_id) {
            let placed: crate::Decimal = self
                .children
                .iter()
                .filter(|c| c.parent_id == order.parent_id)
                .map(|c| {
                    if c.is_working() || c.status == crate::ChildStatus::Filled {
                        c.quantity
                    } else {
                        c.filled_quantity
                    }
                })
                .sum();
            if placed + order.quantity > *limit {
                return Err(crate::Error::new(format!(
                    "a child of {} is more than parent order {} has left to place",
                    order.quantity, order.parent_id
                )));
            }
        }
        let state = crate::ChildState {
            id: self.children.len() as u64 + 1,
            parent_id: order.parent_id,
            status: crate::ChildStatus::Working,
            quantity: order.quantity,
            filled_quantity: crate::Decimal::ZERO,
            average_price: None,
            fees: crate::Decimal::ZERO,
            reason: None,
        };
        self.children.push(state.clone());
        self.kinds.push(order.order_type);
        Ok(state)
    }

    fn cancel(&mut self, id: u64) -> Result<crate::ChildState> {
        let child = self
            .children
            .iter_mut()
            .find(|c| c.id == id)
            .ok_or_else(|| crate::Error::new(format!("there is no child order {id}")))?;
        if child.is_working() {
            child.status = crate::ChildStatus::Cancelled;
            child.reason = Some("cancelled".into());
        }
        Ok(child.clone())
    }

    fn query(&mut self, id: u64) -> Result<crate::ChildState> {
        self.children
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .ok_or_else(|| crate::Error::new(format!("there is no child order {id}")))
    }
}
