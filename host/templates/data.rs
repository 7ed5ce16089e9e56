//! `{{name}}`: {{description}}.
//!
//! Generates daily bars whose close follows a sine wave around `start-price`.
//! Every symbol gets the same wave. The bars are labelled synthetic, so every
//! report on them says so. A real data slice reads files from a directory the
//! run's config grants it (see the `csv-data` reference plugin).

use plugin_sdk::{Bar, Config, DataSource, Error, Manifest, Param, Result, SourceInfo, TimeRange, Timestamp};

const DAY: Timestamp = 86_400_000;
/// 2020-01-01T00:00:00Z, where the bars start when the run gives no start.
const DEFAULT_START: Timestamp = 1_577_836_800_000;

pub struct {{type}} {
    price: f64,
    amplitude: f64,
    period: f64,
    days: i64,
    /// Index of the next bar and the range asked for, once opened.
    next: i64,
    range: TimeRange,
}

impl {{type}} {
    fn close(&self, day: i64) -> f64 {
        let phase = std::f64::consts::TAU * day as f64 / self.period;
        self.price * (1.0 + self.amplitude * phase.sin())
    }
}

impl DataSource for {{type}} {
    fn manifest() -> Manifest {
        Manifest::new("{{description}}")
            .param(Param::float("start-price", 100.0, "middle of the wave"))
            .param(Param::float("amplitude", 0.2, "height of the wave, as a fraction of start-price"))
            .param(Param::int("period", 60, "length of one wave, in days"))
            .param(Param::int("days", 1000, "number of daily bars"))
    }

    fn new(config: &Config) -> Result<Self> {
        let price = config.float("start-price")?;
        let amplitude = config.float("amplitude")?;
        if !(price > 0.0) || !(0.0..0.9).contains(&amplitude) {
            return Err(Error::new("`start-price` must be positive and `amplitude` between 0 and 0.9"));
        }
        Ok({{type}} {
            price,
            amplitude,
            period: config.count("period")? as f64,
            days: config.count("days")? as i64,
            next: 0,
            range: TimeRange::default(),
        })
    }

    fn open(&mut self, symbol: &str, range: TimeRange) -> Result<SourceInfo> {
        self.range = range;
        Ok(SourceInfo { description: format!("sine wave for {symbol}"), synthetic: true })
    }

    fn next_batch(&mut self, max: usize, bars: &mut Vec<Bar>) -> Result<()> {
        let start = self.range.start.map_or(DEFAULT_START, |s| s.div_euclid(DAY) * DAY);
        while bars.len() < max && self.next < self.days {
            let ts = start + self.next * DAY;
            if !self.range.contains(ts) {
                self.next = self.days; // past the end of the range: the feed is over
                break;
            }
            let (open, close) = (self.close(self.next - 1), self.close(self.next));
            bars.push(Bar { ts, open, high: open.max(close), low: open.min(close), close, volume: 1_000.0 });
            self.next += 1;
        }
        Ok(())
    }
}

plugin_sdk::export_data_source!({{type}});

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::collect_bars;

    #[test]
    fn produces_the_days_asked_for_in_order_and_inside_the_range() {
        let config = Config::defaults(&{{type}}::manifest()).with("days", 10);
        let mut source = {{type}}::new(&config).unwrap();
        // Batches of 3, as the host might ask; collect_bars checks order and range.
        let bars = collect_bars(&mut source, "TEST", TimeRange::default(), 3).unwrap();
        assert_eq!(bars.len(), 10);
        assert_eq!(bars[0].ts, DEFAULT_START);
        assert!(bars.iter().all(|b| b.low <= b.open.min(b.close) && b.high >= b.open.max(b.close)));
    }

    #[test]
    fn stops_at_the_end_of_the_range() {
        let mut source = {{type}}::new(&Config::defaults(&{{type}}::manifest())).unwrap();
        let range = TimeRange { start: Some(DEFAULT_START), end: Some(DEFAULT_START + 4 * DAY) };
        assert_eq!(collect_bars(&mut source, "TEST", range, 100).unwrap().len(), 5);
    }
}
