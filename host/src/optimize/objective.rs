//! What "best" means: a portfolio metric to maximise, and the conditions a
//! trial must meet to count (a drawdown cap, a minimum number of trades).
//!
//! Scores are read from the metrics as written (`summary.json`'s
//! `metrics.portfolio`, rounded to 4 decimals), never from unrounded floats
//! kept in memory, so a ranking made from a shard's files is the ranking
//! the process that ran the trials made.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use super::config::{ObjectiveKind, OptimizeSection};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub kind: ObjectiveKind,
    /// As a fraction: 0.3 caps the maximum drawdown at 30%.
    pub max_drawdown: Option<f64>,
    pub min_trades: u64,
}

impl Objective {
    pub fn from_section(section: &OptimizeSection) -> Self {
        Objective {
            kind: section.objective,
            max_drawdown: section.max_drawdown,
            min_trades: section.min_trades,
        }
    }

    /// The figure maximised, if the run has one (Sharpe is undefined for a
    /// flat curve, for example).
    pub fn score(&self, metrics: &serde_json::Value) -> Option<f64> {
        number(&metrics[self.kind.metric_key()])
    }

    /// Whether a run's metrics meet the conditions to count as best.
    pub fn qualifies(&self, metrics: &serde_json::Value) -> bool {
        let trades = metrics["trades"].as_u64().unwrap_or(0);
        let drawdown = number(&metrics["max_drawdown_pct"]).map(|pct| pct / 100.0);
        trades >= self.min_trades
            && self.max_drawdown.is_none_or(|cap| drawdown.is_some_and(|d| d <= cap))
            && self.score(metrics).is_some()
    }

    /// One line for people: `sharpe, max drawdown 30%, at least 5 trades`.
    pub fn describe(&self) -> String {
        let mut text = self.kind.as_str().to_owned();
        if let Some(cap) = self.max_drawdown {
            text += &format!(", max drawdown {}%", (cap * 1e6).round() / 1e4);
        }
        if self.min_trades > 0 {
            text += &format!(", at least {} trades", self.min_trades);
        }
        text
    }
}

/// A metric as a number: JSON numbers, and decimal strings (money).
pub fn number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Ranking order: qualifying trials first, then by score (highest first;
/// none last), then by trial number, so ties never depend on timing.
pub fn rank_order(a: (bool, Option<f64>, u64), b: (bool, Option<f64>, u64)) -> Ordering {
    b.0.cmp(&a.0)
        .then_with(|| match (a.1, b.1) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
        .then(a.2.cmp(&b.2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn caps_and_minimums_decide_who_qualifies() {
        let o = Objective { kind: ObjectiveKind::Cagr, max_drawdown: Some(0.3), min_trades: 2 };
        let run = |cagr: serde_json::Value, dd: f64, trades: u64| json!({"cagr_pct": cagr, "max_drawdown_pct": dd, "trades": trades});
        assert!(o.qualifies(&run(json!(12.5), 30.0, 2)));
        assert!(!o.qualifies(&run(json!(12.5), 30.01, 2)));
        assert!(!o.qualifies(&run(json!(12.5), 10.0, 1)));
        assert!(!o.qualifies(&run(json!(null), 10.0, 5)));
        assert_eq!(o.score(&run(json!(12.5), 30.0, 2)), Some(12.5));
        let pnl = Objective { kind: ObjectiveKind::NetPnl, max_drawdown: None, min_trades: 0 };
        assert_eq!(pnl.score(&json!({"net_pnl": "-12.25"})), Some(-12.25));
    }

    #[test]
    fn ranking_puts_qualifying_high_scores_first_and_breaks_ties_by_trial() {
        let mut trials = [
            (false, Some(9.0), 0),
            (true, None, 1),
            (true, Some(1.0), 2),
            (true, Some(2.0), 3),
            (true, Some(2.0), 4),
        ];
        trials.sort_by(|a, b| rank_order(*a, *b));
        let order: Vec<u64> = trials.iter().map(|t| t.2).collect();
        assert_eq!(order, [3, 4, 2, 1, 0]);
    }
}
