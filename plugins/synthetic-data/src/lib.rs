//! `synthetic-data`: seeded, deterministic OHLCV bars. Not market data.
//!
//! A random walk whose drift and volatility switch between four hidden
//! regimes (calm rise, calm fall, sideways, turbulent), so that trend and
//! regime logic has something to find. The same seed, symbol and settings
//! give the same bars on every machine: the generator is SplitMix64 and every
//! step is plain IEEE arithmetic inside the sandbox.

use plugin_sdk::{Bar, Config, DataSource, Error, Manifest, Param, Result, SourceInfo, TimeRange, Timestamp};

const MS_PER_DAY: i64 = 86_400_000;

pub struct SyntheticData {
    seed: u64,
    start: Timestamp,
    bars: u64,
    interval_ms: i64,
    start_price: f64,
    interval_name: String,
    feed: Option<Feed>,
}

/// The generator's state for one symbol.
struct Feed {
    rng: SplitMix64,
    produced: u64,
    ts: Timestamp,
    close: f64,
    regime: usize,
    range: TimeRange,
    /// Fraction of a year one bar spans, for scaling drift and volatility.
    dt: f64,
}

/// Annual drift and volatility of each hidden regime, and how long it tends to last (in days).
const REGIMES: [(f64, f64, f64); 4] = [
    (0.60, 0.45, 120.0), // calm rise
    (-0.45, 0.50, 80.0), // calm fall
    (0.00, 0.35, 90.0),  // sideways
    (0.00, 1.10, 30.0),  // turbulent
];

impl DataSource for SyntheticData {
    fn manifest() -> Manifest {
        Manifest::new("Seeded synthetic OHLCV bars (a regime-switching random walk); not market data")
            .param(Param::int("seed", 42, "generator seed; each symbol also mixes in its name"))
            .param(Param::text("start", "2019-01-01", "open time of the first bar, YYYY-MM-DD"))
            .param(Param::int("bars", 2192, "number of bars to generate"))
            .param(Param::text("interval", "1d", "bar length: 1d, 4h, 1h, 15m, 5m or 1m"))
            .param(Param::float("start-price", 20_000.0, "close before the first bar"))
    }

    fn new(config: &Config) -> Result<Self> {
        let interval_name = config.text("interval")?.to_owned();
        let interval_ms = match interval_name.as_str() {
            "1d" => MS_PER_DAY,
            "4h" => 4 * 3_600_000,
            "1h" => 3_600_000,
            "15m" => 15 * 60_000,
            "5m" => 5 * 60_000,
            "1m" => 60_000,
            other => {
                return Err(Error::new(format!(
                    "`interval` must be 1d, 4h, 1h, 15m, 5m or 1m, got {other:?}"
                )));
            }
        };
        let bars = config.int("bars")?;
        if !(1..=100_000_000).contains(&bars) {
            return Err(Error::new(format!("`bars` must be between 1 and 100000000, got {bars}")));
        }
        let start_price = config.float("start-price")?;
        if !(start_price.is_finite() && start_price > 0.0) {
            return Err(Error::new(format!("`start-price` must be positive, got {start_price}")));
        }
        Ok(SyntheticData {
            seed: config.int("seed")? as u64,
            start: parse_date(config.text("start")?)?,
            bars: bars as u64,
            interval_ms,
            start_price,
            interval_name,
            feed: None,
        })
    }

    fn open(&mut self, symbol: &str, range: TimeRange) -> Result<SourceInfo> {
        let mut rng = SplitMix64(self.seed ^ fnv1a(symbol));
        let regime = (rng.next_u64() % 4) as usize;
        self.feed = Some(Feed {
            rng,
            produced: 0,
            ts: self.start,
            close: self.start_price,
            regime,
            range,
            dt: self.interval_ms as f64 / (365.0 * MS_PER_DAY as f64),
        });
        Ok(SourceInfo {
            description: format!(
                "synthetic-data seed {} symbol {symbol}: {} {} bars from {}, regime-switching random walk",
                self.seed,
                self.bars,
                self.interval_name,
                format_date(self.start)
            ),
            synthetic: true,
        })
    }

    fn next_batch(&mut self, max: usize, bars: &mut Vec<Bar>) -> Result<()> {
        let total = self.bars;
        let interval = self.interval_ms;
        let feed = self.feed.as_mut().ok_or_else(|| Error::new("next-batch before open"))?;
        while bars.len() < max && feed.produced < total {
            let bar = feed.step(interval);
            if feed.range.end.is_some_and(|end| bar.ts > end) {
                feed.produced = total;
                break;
            }
            if feed.range.contains(bar.ts) {
                bars.push(bar);
            }
        }
        Ok(())
    }
}

impl Feed {
    fn step(&mut self, interval: i64) -> Bar {
        let (drift, vol, days) = REGIMES[self.regime];
        // Leave the regime with a probability that gives its mean duration.
        let bars_per_day = MS_PER_DAY as f64 / interval as f64;
        if self.rng.uniform() < 1.0 / (days * bars_per_day) {
            self.regime = (self.regime + 1 + (self.rng.next_u64() % 3) as usize) % 4;
        }
        let sigma = vol * self.dt.sqrt();
        let mu = (drift - 0.5 * vol * vol) * self.dt;
        let gap = 0.1 * sigma * self.rng.normal();
        let open = round_cents(self.close * gap.exp());
        let close = round_cents(open * (mu + sigma * self.rng.normal()).exp());
        let wick = |rng: &mut SplitMix64| (0.35 * sigma * rng.normal()).abs();
        let high = round_cents(open.max(close) * (1.0 + wick(&mut self.rng)));
        let low = round_cents(open.min(close) * (1.0 - wick(&mut self.rng)).max(0.5));
        let volume = (1_000.0
            * (0.5 * self.rng.normal()).exp()
            * (1.0 + 4.0 * (close / open - 1.0).abs() / sigma.max(1e-9)))
        .round();
        let bar = Bar { ts: self.ts, open, high, low: low.min(open.min(close)), close, volume };
        self.close = close;
        self.ts += interval;
        self.produced += 1;
        bar
    }
}

/// Prices to the cent, never below one cent.
fn round_cents(price: f64) -> f64 {
    ((price * 100.0).round() / 100.0).max(0.01)
}

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and fully defined by its seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal, by Box-Muller.
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn fnv1a(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

fn parse_date(text: &str) -> Result<Timestamp> {
    let bad = || Error::new(format!("`start` must be a date like 2019-01-01, got {text:?}"));
    let parts: Vec<&str> = text.split('-').collect();
    let [y, m, d] = parts.as_slice() else { return Err(bad()) };
    let (y, m, d): (i64, i64, i64) =
        (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?, d.parse().map_err(|_| bad())?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) * MS_PER_DAY)
}

fn format_date(ts: Timestamp) -> String {
    let z = ts.div_euclid(MS_PER_DAY) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", yoe + era * 400 + i64::from(m <= 2))
}

plugin_sdk::export_data_source!(SyntheticData);

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(config: Config, symbol: &str, range: TimeRange) -> Vec<Bar> {
        let mut source = SyntheticData::new(&config).unwrap();
        assert!(source.open(symbol, range).unwrap().synthetic);
        let mut bars = Vec::new();
        loop {
            let mut batch = Vec::new();
            source.next_batch(1000, &mut batch).unwrap();
            if batch.is_empty() {
                return bars;
            }
            bars.extend(batch);
        }
    }

    fn defaults() -> Config {
        Config::defaults(&SyntheticData::manifest())
    }

    #[test]
    fn same_seed_same_bars_other_symbol_other_bars() {
        let a = generate(defaults(), "BTC-USD", TimeRange::default());
        let b = generate(defaults(), "BTC-USD", TimeRange::default());
        let c = generate(defaults(), "ETH-USD", TimeRange::default());
        assert_eq!(a.len(), 2192);
        assert_eq!(a, b);
        assert_ne!(a[10].close, c[10].close);
    }

    #[test]
    fn bars_are_valid_market_data() {
        let bars =
            generate(defaults().with("bars", 20_000).with("interval", "1h"), "X", TimeRange::default());
        for w in bars.windows(2) {
            assert_eq!(w[1].ts - w[0].ts, 3_600_000);
        }
        for b in &bars {
            assert!(b.low > 0.0 && b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close), "{b:?}");
            assert!(b.volume >= 0.0);
        }
    }

    #[test]
    fn range_limits_the_bars() {
        let start = parse_date("2019-02-01").unwrap();
        let end = parse_date("2019-02-10").unwrap();
        let bars = generate(defaults(), "X", TimeRange { start: Some(start), end: Some(end) });
        assert_eq!(bars.len(), 10);
        assert_eq!(bars[0].ts, start);
        assert_eq!(format_date(bars[9].ts), "2019-02-10");
    }
}
