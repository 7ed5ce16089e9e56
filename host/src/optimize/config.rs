//! The `[optimize]` section of a run config: what to search, how to search
//! it, and what counts as best. Read with the rest of the config (unknown
//! keys refused with their line); checked against the components' declared
//! settings by [`super::space::SearchSpace::new`].
//!
//! ```toml
//! [optimize]
//! sampler = "grid"                              # grid, random or tpe
//! objective = "sharpe"                          # what "best" means
//! constraints = ["analysis.fast < analysis.slow"]
//!
//! [optimize.space.analysis]
//! fast = { from = 5, to = 50, step = 5 }        # a range with a step
//! slow = [20, 30, 50, 100, 200]                 # a list
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

/// `[optimize]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OptimizeSection {
    /// How parameter sets are chosen.
    #[serde(default)]
    pub sampler: SamplerKind,
    /// Random and TPE: how many trials to run (per walk-forward window).
    /// Grid: the most the grid may have, a guard against a typo that makes
    /// it enormous.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trials: Option<u64>,
    /// Seeds the random and TPE samplers [default: `run.seed`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The figure to maximise.
    #[serde(default)]
    pub objective: ObjectiveKind,
    /// A trial whose maximum drawdown is deeper than this fraction (0.3 is
    /// 30%) does not qualify as best, whatever its objective.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_drawdown: Option<f64>,
    /// A trial with fewer round trips does not qualify as best.
    #[serde(default)]
    pub min_trades: u64,
    /// Conditions every parameter set must meet, such as
    /// `"analysis.fast < analysis.slow"`; sets that break one are skipped
    /// and counted, never run.
    #[serde(default)]
    pub constraints: Vec<Spanned<String>>,
    /// The two parameters of the report's heat map [default: the first two].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<Spanned<Vec<String>>>,
    /// TPE: trials proposed per round. Fixed in the config, not taken from
    /// the number of cores, so the trials do not depend on the machine.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// TPE: random trials before the model takes over [default: max(10, trials / 5)].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_trials: Option<u64>,
    /// Slice kind -> setting -> what to try: a list, a range or a distribution.
    #[serde(default)]
    pub space: BTreeMap<String, BTreeMap<String, Spanned<toml::Value>>>,
    /// Optimise on a training window, test on the window after it, and roll on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk_forward: Option<WalkForwardSection>,
}

fn default_batch() -> u32 {
    16
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SamplerKind {
    /// Every combination of the listed values and ranges.
    #[default]
    Grid,
    /// `trials` draws, seeded.
    Random,
    /// Tree-structured Parzen estimator: random at first, then each round
    /// samples where the good trials so far are denser than the others.
    Tpe,
}

impl SamplerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerKind::Grid => "grid",
            SamplerKind::Random => "random",
            SamplerKind::Tpe => "tpe",
        }
    }
}

/// What "best" means: one of the run's portfolio metrics, maximised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ObjectiveKind {
    #[default]
    Sharpe,
    Sortino,
    Calmar,
    Cagr,
    TotalReturn,
    ProfitFactor,
    NetPnl,
}

impl ObjectiveKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectiveKind::Sharpe => "sharpe",
            ObjectiveKind::Sortino => "sortino",
            ObjectiveKind::Calmar => "calmar",
            ObjectiveKind::Cagr => "cagr",
            ObjectiveKind::TotalReturn => "total-return",
            ObjectiveKind::ProfitFactor => "profit-factor",
            ObjectiveKind::NetPnl => "net-pnl",
        }
    }

    /// The key of the figure in `summary.json`'s `metrics.portfolio`.
    pub fn metric_key(self) -> &'static str {
        match self {
            ObjectiveKind::Sharpe => "sharpe",
            ObjectiveKind::Sortino => "sortino",
            ObjectiveKind::Calmar => "calmar",
            ObjectiveKind::Cagr => "cagr_pct",
            ObjectiveKind::TotalReturn => "total_return_pct",
            ObjectiveKind::ProfitFactor => "profit_factor",
            ObjectiveKind::NetPnl => "net_pnl",
        }
    }
}

/// `[optimize.walk-forward]`: consecutive train/test windows. Each test
/// window follows its training window, and the next pair moves on by the
/// test length, so the test windows tile the range without overlapping.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WalkForwardSection {
    /// Length of a training window, in days.
    pub train_days: u32,
    /// Length of a test window, in days.
    pub test_days: u32,
    /// Training windows all start at the beginning of the range and grow
    /// (anchored), instead of rolling forward with a fixed length.
    #[serde(default)]
    pub anchored: bool,
}
