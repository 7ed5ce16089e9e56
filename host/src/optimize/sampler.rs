//! Which parameter sets to try.
//!
//! - Grid: every combination, planned up front.
//! - Random: `trials` uniform draws from a seeded generator, planned up front.
//! - TPE (tree-structured Parzen estimator, Bergstra et al., 2011): rounds
//!   of `batch` proposals. The first rounds are random; after that each
//!   round splits the trials so far into the best quarter ("good") and the
//!   rest, fits a density to each (per parameter: a mixture of Gaussians
//!   for numbers, smoothed frequencies for lists), draws candidates from the
//!   good density, and proposes those where good is most likely relative to
//!   the rest. A round depends only on the rounds before it and a generator
//!   seeded by (seed, window, round), never on which thread finished first,
//!   so the trials are the same on any number of cores.
//!
//! Every sampler skips parameter sets that break a constraint, and counts them.

use std::collections::HashSet;

use super::objective::rank_order;
use super::rng::Rng;
use super::space::{Domain, Point, SearchSpace, numeric, point_key, significant};
use super::stats::normal_cdf;
use crate::model::ConfigValue;

/// A sampler's plan: the parameter sets to try, in trial order.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub points: Vec<Point>,
    /// Combinations (grid) or draws (random) that broke a constraint.
    pub skipped: u64,
    /// Random draws that repeated an earlier one.
    pub duplicates: u64,
}

/// The largest grid a study may plan.
pub const MAX_GRID: u64 = 10_000_000;

/// Every combination of the space, if `limit` (and [`MAX_GRID`]) allow.
pub fn grid(space: &SearchSpace, limit: Option<u64>) -> Result<Planned, String> {
    let size = space.grid_size().ok_or_else(|| {
        let p = space.parameters.iter().find(|p| p.domain.grid_values().is_none()).expect("one is not enumerable");
        format!(
            "optimize.space.{}: a distribution cannot be enumerated by the grid sampler: give a list or a range with a \
             step, or use sampler = \"random\" or \"tpe\"",
            p.name
        )
    })?;
    let limit = limit.unwrap_or(MAX_GRID).min(MAX_GRID);
    if size > limit {
        return Err(format!(
            "the grid has {size} combinations, more than {} ({}): narrow the ranges or use sampler = \"random\" \
             or \"tpe\" with a trial budget",
            limit,
            if limit == MAX_GRID { "the most a grid may have" } else { "optimize.trials" }
        ));
    }
    let (points, skipped) = space.grid();
    Ok(Planned { points, skipped, duplicates: 0 })
}

/// `count` distinct uniform draws that meet the constraints. Stops early
/// (with fewer) when a small discrete space runs out of new points.
pub fn random(space: &SearchSpace, count: u64, rng: &mut Rng) -> Planned {
    let mut planned = Planned { points: Vec::new(), skipped: 0, duplicates: 0 };
    let mut seen = HashSet::new();
    let mut attempts = 0u64;
    let max_attempts = count.saturating_mul(100).saturating_add(1_000);
    while (planned.points.len() as u64) < count && attempts < max_attempts {
        attempts += 1;
        let point = space.sample(rng);
        if !space.allows(&point) {
            planned.skipped += 1;
        } else if !seen.insert(point_key(&point)) {
            planned.duplicates += 1;
        } else {
            planned.points.push(point);
        }
    }
    planned
}

/// A finished trial as the TPE model sees it.
#[derive(Debug, Clone)]
pub struct Observation {
    pub trial: u64,
    pub point: Point,
    pub qualifies: bool,
    pub score: Option<f64>,
}

/// A TPE proposal: a point, and how many candidates that broke a
/// constraint were discarded on the way to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub point: Point,
    pub rejected: u64,
}

/// The share of trials counted as good.
const GAMMA: f64 = 0.25;
/// At most this many good trials (Optuna's cap): more only blurs the density.
const MAX_GOOD: usize = 25;
/// Candidates drawn from the good density per proposal (hyperopt's default).
const CANDIDATES: usize = 24;

/// Proposes `count` new points (not in `taken`, meeting the constraints)
/// from the `history` of finished trials. Random while `history` is
/// shorter than `startup`. Fewer come back when the space runs out.
pub fn tpe(
    space: &SearchSpace,
    history: &[Observation],
    startup: u64,
    count: usize,
    taken: &mut HashSet<String>,
    rng: &mut Rng,
) -> Vec<Proposal> {
    let model =
        ((history.len() as u64) >= startup && !history.is_empty()).then(|| Model::fit(space, history));
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let mut rejected = 0;
        let mut chosen = None;
        if let Some(model) = &model {
            // A few tries at the model's best candidates, then random.
            for _ in 0..10 {
                let mut candidates: Vec<(f64, Point)> = (0..CANDIDATES)
                    .map(|_| {
                        let p = model.sample(rng);
                        (model.score(&p), p)
                    })
                    .collect();
                // Highest score first; ties keep draw order (stable sort).
                candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
                for (_, p) in candidates {
                    if !space.allows(&p) {
                        rejected += 1;
                    } else if !taken.contains(&point_key(&p)) {
                        chosen = Some(p);
                        break;
                    }
                }
                if chosen.is_some() {
                    break;
                }
            }
        }
        if chosen.is_none() {
            for _ in 0..10_000 {
                let p = space.sample(rng);
                if !space.allows(&p) {
                    rejected += 1;
                } else if !taken.contains(&point_key(&p)) {
                    chosen = Some(p);
                    break;
                }
            }
        }
        let Some(point) = chosen else { break };
        taken.insert(point_key(&point));
        out.push(Proposal { point, rejected });
    }
    out
}

/// The good and bad densities of every parameter.
struct Model {
    dims: Vec<(Dimension, Density, Density)>,
}

/// How TPE sees a parameter.
#[derive(Clone)]
enum Dimension {
    /// A list: its values are categories.
    Categorical(Vec<ConfigValue>),
    /// A range (snapped to its steps) or a distribution, on [lo, hi]
    /// (of ln x for log-uniform).
    Numeric { lo: f64, hi: f64, log: bool, integer: bool, steps: Option<Vec<ConfigValue>> },
}

enum Density {
    /// Smoothed frequencies of the categories.
    Categorical(Vec<f64>),
    /// Gaussians (mean, sd), equally weighted, truncated to [lo, hi].
    Parzen(Vec<(f64, f64)>),
}

impl Dimension {
    fn of(domain: &Domain) -> Self {
        match domain {
            Domain::List(values) => Dimension::Categorical(values.clone()),
            Domain::Range { values, .. } => Dimension::Numeric {
                lo: numeric(&values[0]).unwrap_or(0.0),
                hi: numeric(&values[values.len() - 1]).unwrap_or(0.0),
                log: false,
                integer: matches!(values[0], ConfigValue::Int(_)),
                steps: Some(values.clone()),
            },
            Domain::Uniform { lo, hi, log, integer } => {
                let (lo, hi) = if *log { (lo.ln(), hi.ln()) } else { (*lo, *hi) };
                Dimension::Numeric { lo, hi, log: *log, integer: *integer, steps: None }
            }
        }
    }

    /// Where a value sits: its category, or its (transformed) number.
    fn coordinate(&self, v: &ConfigValue) -> f64 {
        match self {
            Dimension::Categorical(values) => values.iter().position(|x| x == v).unwrap_or(0) as f64,
            Dimension::Numeric { log, .. } => {
                let x = numeric(v).unwrap_or(0.0);
                if *log { x.ln() } else { x }
            }
        }
    }

    fn fit(&self, coordinates: &[f64]) -> Density {
        match self {
            Dimension::Categorical(values) => {
                // One pseudo-observation per category, so none is ruled out.
                let mut counts = vec![1.0; values.len()];
                for &c in coordinates {
                    counts[c as usize] += 1.0;
                }
                let total: f64 = counts.iter().sum();
                Density::Categorical(counts.iter().map(|c| c / total).collect())
            }
            Dimension::Numeric { lo, hi, .. } => {
                let width = (hi - lo).max(f64::MIN_POSITIVE);
                let mut mus = coordinates.to_vec();
                mus.sort_by(f64::total_cmp);
                // Each point's spread reaches its farther neighbour (or bound),
                // within limits, as in hyperopt's adaptive Parzen estimator.
                let floor = width / ((mus.len() + 1) as f64).min(100.0);
                let mut parzen: Vec<(f64, f64)> = (0..mus.len())
                    .map(|i| {
                        let left = if i == 0 { mus[i] - lo } else { mus[i] - mus[i - 1] };
                        let right = if i + 1 == mus.len() { hi - mus[i] } else { mus[i + 1] - mus[i] };
                        (mus[i], left.max(right).clamp(floor, width))
                    })
                    .collect();
                // The prior: one broad Gaussian in the middle, so no region is ruled out.
                parzen.push(((lo + hi) / 2.0, width));
                Density::Parzen(parzen)
            }
        }
    }

    fn sample(&self, density: &Density, rng: &mut Rng) -> ConfigValue {
        match (self, density) {
            (Dimension::Categorical(values), Density::Categorical(p)) => {
                let u = rng.unit();
                let mut acc = 0.0;
                for (v, p) in values.iter().zip(p) {
                    acc += p;
                    if u < acc {
                        return v.clone();
                    }
                }
                values[values.len() - 1].clone()
            }
            (Dimension::Numeric { lo, hi, log, integer, steps }, Density::Parzen(components)) => {
                let (mu, sd) = components[rng.below(components.len() as u64) as usize];
                let mut x = mu;
                for _ in 0..20 {
                    x = mu + sd * rng.normal();
                    if (*lo..=*hi).contains(&x) {
                        break;
                    }
                }
                let x = x.clamp(*lo, *hi);
                self.value_at(if *log { x.exp() } else { x }, *integer, steps.as_deref())
            }
            _ => unreachable!("a dimension's densities have its shape"),
        }
    }

    /// The setting's value nearest `x`: a step of a range, a whole number, or `x`.
    fn value_at(&self, x: f64, integer: bool, steps: Option<&[ConfigValue]>) -> ConfigValue {
        if let Some(steps) = steps {
            return steps
                .iter()
                .min_by(|a, b| {
                    (numeric(a).unwrap_or(0.0) - x).abs().total_cmp(&(numeric(b).unwrap_or(0.0) - x).abs())
                })
                .expect("a range has values")
                .clone();
        }
        if integer { ConfigValue::Int(x.round() as i64) } else { ConfigValue::Float(significant(x)) }
    }

    fn log_density(&self, density: &Density, v: &ConfigValue) -> f64 {
        let c = self.coordinate(v);
        match (self, density) {
            (Dimension::Categorical(_), Density::Categorical(p)) => p[c as usize].ln(),
            (Dimension::Numeric { lo, hi, .. }, Density::Parzen(components)) => {
                let w = 1.0 / components.len() as f64;
                let sum: f64 = components
                    .iter()
                    .map(|&(mu, sd)| {
                        let mass = (normal_cdf((hi - mu) / sd) - normal_cdf((lo - mu) / sd)).max(1e-12);
                        let z = (c - mu) / sd;
                        w * (-0.5 * z * z).exp() / (sd * (std::f64::consts::TAU).sqrt() * mass)
                    })
                    .sum();
                sum.max(1e-300).ln()
            }
            _ => unreachable!("a dimension's densities have its shape"),
        }
    }
}

impl Model {
    fn fit(space: &SearchSpace, history: &[Observation]) -> Self {
        let mut ranked: Vec<&Observation> = history.iter().collect();
        ranked.sort_by(|a, b| rank_order((a.qualifies, a.score, a.trial), (b.qualifies, b.score, b.trial)));
        let good_count = ((ranked.len() as f64 * GAMMA).ceil() as usize).clamp(1, MAX_GOOD);
        let (good, bad) = ranked.split_at(good_count.min(ranked.len()));
        let dims = space
            .parameters
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let dim = Dimension::of(&p.domain);
                let coords = |set: &[&Observation]| {
                    set.iter().map(|o| dim.coordinate(&o.point[i])).collect::<Vec<_>>()
                };
                let (l, g) = (dim.fit(&coords(good)), dim.fit(&coords(bad)));
                (dim, l, g)
            })
            .collect();
        Model { dims }
    }

    fn sample(&self, rng: &mut Rng) -> Point {
        self.dims.iter().map(|(dim, good, _)| dim.sample(good, rng)).collect()
    }

    /// log l(x) - log g(x): how much likelier `point` is among the good trials.
    fn score(&self, point: &Point) -> f64 {
        self.dims
            .iter()
            .zip(point)
            .map(|((dim, good, bad), v)| dim.log_density(good, v) - dim.log_density(bad, v))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConfigParam, SliceKind};
    use crate::optimize::config::OptimizeSection;
    use crate::optimize::space::Declared;
    use crate::session::Settings;
    use std::collections::BTreeMap;

    fn space(text: &str) -> SearchSpace {
        let section: OptimizeSection = toml::from_str(text).unwrap();
        let p = |key: &str, default| ConfigParam { key: key.into(), description: String::new(), default };
        let analysis = [p("fast", ConfigValue::Int(10)), p("slow", ConfigValue::Int(30))];
        let sizing = [p("fraction", ConfigValue::Float(0.95))];
        let mut plugins = BTreeMap::new();
        let mut settings = Settings::new();
        for kind in SliceKind::ALL {
            let declared: &[ConfigParam] = match kind {
                SliceKind::Analysis => &analysis,
                SliceKind::Sizing => &sizing,
                _ => &[],
            };
            plugins.insert(kind, ("plugin 0.1.0".to_owned(), declared));
            settings.insert(kind, declared.iter().map(|p| (p.key.clone(), p.default.clone())).collect());
        }
        SearchSpace::new(&section, &Declared { plugins, settings: &settings }, None).unwrap()
    }

    #[test]
    fn random_draws_are_distinct_allowed_and_reproducible() {
        let s = space(
            "constraints = [\"analysis.fast < analysis.slow\"]\n[space.analysis]\nfast = { from = 2, to = 40, step = 2 }\nslow = { from = 10, to = 100, step = 10 }\n",
        );
        let a = random(&s, 50, &mut Rng::new(9, 0));
        let b = random(&s, 50, &mut Rng::new(9, 0));
        assert_eq!(a, b);
        assert_eq!(a.points.len(), 50);
        assert!(a.points.iter().all(|p| s.allows(p)));
        let keys: HashSet<String> = a.points.iter().map(point_key).collect();
        assert_eq!(keys.len(), 50);
        assert!(a.skipped > 0, "some draws have fast >= slow");
    }

    #[test]
    fn random_stops_when_a_small_space_runs_out() {
        let s = space("[space.analysis]\nfast = [1, 2, 3]\n");
        let planned = random(&s, 10, &mut Rng::new(1, 0));
        assert_eq!(planned.points.len(), 3);
    }

    #[test]
    fn grid_refuses_distributions_and_oversized_grids() {
        let s = space("[space.sizing]\nfraction = { uniform = [0.5, 1.0] }\n");
        assert!(
            grid(&s, None)
                .unwrap_err()
                .contains("optimize.space.sizing.fraction: a distribution cannot be enumerated")
        );
        let s = space("[space.analysis]\nfast = { from = 1, to = 100, step = 1 }\n");
        assert!(
            grid(&s, Some(50))
                .unwrap_err()
                .starts_with("the grid has 100 combinations, more than 50 (optimize.trials)")
        );
    }

    /// On a smooth objective with its peak at fraction 0.8, TPE's proposals
    /// after the random start gather near the peak much more than random
    /// draws do.
    #[test]
    fn tpe_concentrates_where_the_good_trials_are() {
        let s = space("[space.sizing]\nfraction = { uniform = [0.0, 1.0] }\n");
        let objective = |p: &Point| match p[0] {
            ConfigValue::Float(x) => -(x - 0.8).powi(2),
            _ => unreachable!(),
        };
        let mut history = Vec::new();
        let mut taken = HashSet::new();
        for round in 0..8 {
            let mut rng = Rng::new(5, round);
            for proposal in tpe(&s, &history, 16, 8, &mut taken, &mut rng) {
                let score = objective(&proposal.point);
                history.push(Observation {
                    trial: history.len() as u64,
                    point: proposal.point,
                    qualifies: true,
                    score: Some(score),
                });
            }
        }
        assert_eq!(history.len(), 64);
        let near = |obs: &[Observation]| {
            obs.iter().filter(|o| o.score.unwrap() > -0.01).count() as f64 / obs.len() as f64
        };
        // Random: 20% of draws land within 0.1 of the peak.
        assert!(near(&history[32..]) > 0.5, "late proposals near the peak: {}", near(&history[32..]));
    }
}
