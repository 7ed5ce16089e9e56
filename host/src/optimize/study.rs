//! A study: the plan (windows, parameter sets, trial numbers) made from the
//! config, and running its trials on all cores into a [`Store`].
//!
//! Trials are numbered by the plan: in window w, the k-th parameter set is
//! trial `w * trials_per_window + k`. Grid and random plans are fixed before
//! anything runs; TPE proposes round by round from the finished rounds.
//! Either way a trial's number, parameters and results depend only on the
//! config and the data, so the study is the same on any number of cores, in
//! shards, and after a resume.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bar_cache::BarCache;
use super::config::{OptimizeSection, SamplerKind};
use super::objective::Objective;
use super::rng::Rng;
use super::sampler::{self, Observation};
use super::space::{Declared, Point, SearchSpace};
use super::store::{FORMAT, Shard, Store, StudyFile};
use super::trial::{self, Evaluator, TrialRecord};
use super::windows::{self, Span, Window};
use crate::config::ConfigError;
use crate::model::{SliceKind, Symbol};
use crate::session::Session;

/// Everything needed to read a study's results without running anything:
/// `study.json` keeps it, and merging shards uses it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub symbols: Vec<String>,
    /// `--from` and `--to`.
    pub range: Span,
    /// The first and last bar of the data in the range.
    pub bars: Span,
    pub sampler: SamplerKind,
    pub seed: u64,
    pub objective: Objective,
    pub parameters: Vec<ParameterPlan>,
    /// Indices into `parameters` of the heat map's axes.
    pub heatmap: Vec<usize>,
    pub constraints: Vec<String>,
    pub windows: Vec<Window>,
    /// Parameter sets per window: the planned ones (grid, random) or the budget (TPE).
    pub trials_per_window: u64,
    /// Per window, when planning: combinations (grid) or draws (random)
    /// that broke a constraint. TPE counts its own in each trial's record.
    pub skipped_by_constraints: u64,
    /// Random: draws that repeated an earlier one, per window.
    pub duplicates: u64,
    /// TPE: trials per round, and random trials before the model.
    pub batch: u32,
    pub startup_trials: u64,
    pub start_cash: String,
    pub risk_free_rate: f64,
    pub synthetic_data: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParameterPlan {
    pub name: String,
    /// `5 to 50 step 5 (10 values)`, `[20, 30, 50]`, `uniform between 0.5 and 1`.
    pub values: String,
}

impl Plan {
    pub fn total_trials(&self) -> u64 {
        self.windows.len() as u64 * self.trials_per_window
    }

    /// The range as given, or where the data starts and ends where not given.
    pub fn describe_range(&self) -> String {
        Span { from: self.range.from.or(self.bars.from), to: self.range.to.or(self.bars.to) }.describe()
    }

    pub fn walk_forward(&self) -> bool {
        self.windows.iter().any(|w| w.test.is_some())
    }
}

/// What the command line adds to the config.
pub struct StudyOptions {
    pub symbols: Vec<Symbol>,
    pub range: Span,
    /// `--from` and `--to` as given, for the fingerprint.
    pub from: Option<String>,
    pub to: Option<String>,
    pub risk_free: f64,
    pub shard: Option<Shard>,
}

/// A planned study, ready to run.
pub struct Study<'s> {
    pub session: &'s Session,
    pub space: SearchSpace,
    pub plan: Plan,
    pub file: StudyFile,
    pub shard: Option<Shard>,
    evaluator: Evaluator<'s>,
    /// Grid and random: the parameter sets of each window, in trial order.
    points: Vec<Point>,
}

/// One trial to run.
#[derive(Clone)]
struct Job {
    trial: u64,
    window: Window,
    point: Point,
    rejected: u64,
}

impl<'s> Study<'s> {
    /// Checks the `[optimize]` section against the components, reads the
    /// data's extent, and plans windows and trials.
    pub fn plan(session: &'s Session, options: StudyOptions) -> Result<Self> {
        let config = &session.config;
        let Prepared { section, space, seed, points, skipped, duplicates, per_window } =
            prepare(session, options.shard)?;
        let invalid = |problems: Vec<String>| ConfigError::Invalid { path: config.path.clone(), problems };
        let mut evaluator = Evaluator {
            session,
            symbols: options.symbols.clone(),
            risk_free: options.risk_free,
            cache: BarCache::default(),
        };
        let (extent, synthetic_data) = evaluator.extent(options.range)?;
        let windows = windows::plan(section.walk_forward.as_ref(), options.range, extent)
            .map_err(|e| invalid(vec![format!("optimize.walk-forward: {e}")]))?;
        if space.parameters.iter().all(|p| p.kind != SliceKind::Data) {
            // The ranges trials read: training windows, and test windows with their warm-up.
            let ranges = windows.iter().flat_map(|w| {
                [Some((w.train.from, w.train.to)), w.test.map(|t| (w.train.from, t.to))].into_iter().flatten()
            });
            evaluator.cache = BarCache::read(session, &options.symbols, ranges);
        }

        let plan = Plan {
            symbols: options.symbols.iter().map(|s| s.as_str().to_owned()).collect(),
            range: options.range,
            bars: Span { from: Some(extent.0), to: Some(extent.1) },
            sampler: section.sampler,
            seed,
            objective: Objective::from_section(section),
            parameters: space
                .parameters
                .iter()
                .map(|p| ParameterPlan { name: p.name.clone(), values: p.domain.describe() })
                .collect(),
            heatmap: space.heatmap.clone(),
            constraints: space.constraints.iter().map(|c| c.text.clone()).collect(),
            windows,
            trials_per_window: per_window,
            skipped_by_constraints: skipped,
            duplicates,
            batch: section.batch,
            startup_trials: section.startup_trials.unwrap_or_else(|| (per_window / 5).max(10)),
            start_cash: config.config.run.start_cash.normalize().to_string(),
            risk_free_rate: options.risk_free,
            synthetic_data,
        };
        let inputs = fingerprint_inputs(session, &options)?;
        let fingerprint = hex(&Sha256::digest(serde_json::to_string(&inputs)?.as_bytes()));
        let file =
            StudyFile { format: FORMAT, fingerprint, shard: options.shard, plan: plan.clone(), inputs };
        Ok(Study { session, space, plan, file, shard: options.shard, evaluator, points })
    }

    /// Trials this process still has to run (its shard's, minus finished ones).
    pub fn remaining(&self, store: &Store) -> u64 {
        (0..self.plan.total_trials())
            .filter(|&t| self.shard.is_none_or(|s| s.owns(t)))
            .filter(|&t| store.get(t).is_none())
            .count() as u64
    }

    /// Runs the trials this process owns that `store` does not have yet, on
    /// `threads` threads (0 = one per core). `stop` (set by Ctrl-C) stops
    /// starting new trials; those running finish and are kept.
    /// `on_trial` sees each finished trial.
    pub fn run(
        &self,
        store: &mut Store,
        threads: usize,
        stop: &AtomicBool,
        on_trial: &mut dyn FnMut(&TrialRecord),
    ) -> Result<()> {
        self.check_resumed(store)?;
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("trial-{i}"))
            .build()
            .context("cannot start the trial threads")?;
        match self.plan.sampler {
            SamplerKind::Grid | SamplerKind::Random => {
                let per_window = self.plan.trials_per_window;
                let jobs: Vec<Job> = (0..self.plan.total_trials())
                    .filter(|&t| self.shard.is_none_or(|s| s.owns(t)) && store.get(t).is_none())
                    .map(|t| Job {
                        trial: t,
                        window: self.plan.windows[(t / per_window) as usize],
                        point: self.points[(t % per_window) as usize].clone(),
                        rejected: 0,
                    })
                    .collect();
                self.execute(&pool, jobs, store, stop, on_trial)
            }
            SamplerKind::Tpe => self.run_tpe(&pool, store, stop, on_trial),
        }
    }

    /// TPE, window by window, round by round. A round is computed from the
    /// rounds before it, which are in `store` (run now or resumed).
    fn run_tpe(
        &self,
        pool: &rayon::ThreadPool,
        store: &mut Store,
        stop: &AtomicBool,
        on_trial: &mut dyn FnMut(&TrialRecord),
    ) -> Result<()> {
        let budget = self.plan.trials_per_window;
        for window in &self.plan.windows {
            let base = window.index as u64 * budget;
            let mut history: Vec<Observation> = Vec::new();
            let mut taken = HashSet::new();
            let mut round = 0u64;
            while (history.len() as u64) < budget {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let count = (budget - history.len() as u64).min(u64::from(self.plan.batch)) as usize;
                let mut rng = Rng::new(self.plan.seed, ((window.index as u64) << 32) | round);
                let proposals = sampler::tpe(
                    &self.space,
                    &history,
                    self.plan.startup_trials,
                    count,
                    &mut taken,
                    &mut rng,
                );
                if proposals.is_empty() {
                    // A small discrete space has no new point left.
                    break;
                }
                let first = base + history.len() as u64;
                let jobs: Vec<Job> = proposals
                    .into_iter()
                    .enumerate()
                    .map(|(j, p)| Job {
                        trial: first + j as u64,
                        window: *window,
                        point: p.point,
                        rejected: p.rejected,
                    })
                    .collect();
                for job in &jobs {
                    if let Some(done) = store.get(job.trial)
                        && done.params != self.space.to_json(&job.point)
                    {
                        bail!(
                            "{} does not match this study: trial {} has other parameters than the sampler proposes \
                             now; delete the folder to start again",
                            store.dir.display(),
                            job.trial
                        );
                    }
                }
                let missing: Vec<Job> =
                    jobs.iter().filter(|j| store.get(j.trial).is_none()).map(Job::clone).collect();
                self.execute(pool, missing, store, stop, on_trial)?;
                for job in &jobs {
                    let Some(record) = store.get(job.trial) else {
                        // Stopped part-way through the round.
                        return Ok(());
                    };
                    let metrics = record.in_sample.as_ref().filter(|_| record.ok()).map(|r| &r.metrics);
                    history.push(Observation {
                        trial: job.trial,
                        point: job.point.clone(),
                        qualifies: metrics.is_some_and(|m| self.plan.objective.qualifies(m)),
                        score: metrics.and_then(|m| self.plan.objective.score(m)),
                    });
                }
                round += 1;
            }
        }
        Ok(())
    }

    /// Runs `jobs` on the pool; finished trials come back to this thread,
    /// which appends them to the store as they arrive.
    fn execute(
        &self,
        pool: &rayon::ThreadPool,
        jobs: Vec<Job>,
        store: &mut Store,
        stop: &AtomicBool,
        on_trial: &mut dyn FnMut(&TrialRecord),
    ) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let (tx, rx) = mpsc::channel::<TrialRecord>();
        // Set when the store cannot be written: no point running more.
        let abandon = AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                pool.install(|| {
                    jobs.par_iter().for_each_with(tx, |tx, job| {
                        if stop.load(Ordering::Relaxed) || abandon.load(Ordering::Relaxed) {
                            return;
                        }
                        let _ = tx.send(self.run_job(job));
                    })
                })
            });
            let mut result = Ok(());
            for record in rx {
                if result.is_ok() {
                    result = store.append(&record);
                    if result.is_err() {
                        abandon.store(true, Ordering::Relaxed);
                    }
                }
                on_trial(&record);
            }
            store.sync();
            result
        })
    }

    fn run_job(&self, job: &Job) -> TrialRecord {
        let settings = self.space.settings(&self.session.settings, &job.point);
        trial::run(
            &self.evaluator,
            job.trial,
            &job.window,
            self.space.to_json(&job.point),
            &settings,
            job.rejected,
        )
    }

    /// Finished trials of a resumed folder must be this plan's.
    fn check_resumed(&self, store: &Store) -> Result<()> {
        let per_window = self.plan.trials_per_window;
        for r in &store.records {
            let planned = match self.plan.sampler {
                SamplerKind::Tpe => None,
                _ => self.points.get((r.trial % per_window) as usize).map(|p| self.space.to_json(p)),
            };
            let consistent = r.trial < self.plan.total_trials()
                && r.window as u64 == r.trial / per_window
                && self.shard.is_none_or(|s| s.owns(r.trial))
                && planned.is_none_or(|p| p == r.params);
            if !consistent {
                bail!(
                    "{} does not match this study: trial {} is not the plan's; delete the folder to start again",
                    store.dir.display(),
                    r.trial
                );
            }
        }
        Ok(())
    }

    /// Backtests `params` on a window's training and test ranges, keeping
    /// the curves: the report draws the best trials.
    pub fn curves(
        &self,
        window: &Window,
        params: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(trial::Evaluation, Option<trial::Evaluation>)> {
        let point = self
            .space
            .point_from_json(params)
            .with_context(|| format!("parameters {params:?} are not in this study's space"))?;
        let settings = self.space.settings(&self.session.settings, &point);
        let train = self.evaluator.evaluate(&settings, window.train, None).map_err(anyhow::Error::msg)?;
        let test = window
            .test
            .map(|span| {
                self.evaluator.evaluate(&settings, span, window.train.from).map_err(anyhow::Error::msg)
            })
            .transpose()?;
        Ok((train, test))
    }
}

/// A checked `[optimize]` section and its parameter sets (grid, random).
struct Prepared<'a> {
    section: &'a OptimizeSection,
    space: SearchSpace,
    seed: u64,
    points: Vec<Point>,
    skipped: u64,
    duplicates: u64,
    per_window: u64,
}

/// Checks the `[optimize]` section against the components and plans its
/// parameter sets; every problem is reported at once, with its line.
fn prepare(session: &Session, shard: Option<Shard>) -> Result<Prepared<'_>> {
    let config = &session.config;
    let Some(section) = &config.config.optimize else {
        bail!(
            "config file {} has no [optimize] section: optimize mode needs a search space, for example\n\n\
             [optimize]\nobjective = \"sharpe\"\n\n[optimize.space.analysis]\nfast = [5, 10, 20]\n\
             slow = {{ from = 30, to = 90, step = 30 }}\n\n(docs/optimize.md has the format)",
            config.path.display()
        );
    };
    let text = crate::files::read_text_bounded(&config.path, crate::files::CONFIG_MAX, "config file").ok();
    let mut problems = section_problems(section);
    let declared = Declared {
        plugins: SliceKind::ALL
            .iter()
            .map(|&k| (k, (session.plugin(k).label(), session.plugin(k).info.params.as_slice())))
            .collect(),
        settings: &session.settings,
    };
    let space = match SearchSpace::new(section, &declared, text.as_deref()) {
        Ok(space) => Some(space),
        Err(p) => {
            problems.extend(p);
            None
        }
    };
    if let (Some(_), SamplerKind::Tpe) = (shard, section.sampler) {
        problems.push(
            "optimize.sampler: tpe chooses each round from the results of the rounds before, so its trials \
             cannot be split into independent shards: use grid or random with --shard"
                .to_owned(),
        );
    }
    let invalid = |problems: Vec<String>| ConfigError::Invalid { path: config.path.clone(), problems };
    let Some(space) = space.filter(|_| problems.is_empty()) else {
        return Err(invalid(problems).into());
    };
    let seed = section.seed.unwrap_or(config.config.run.seed);
    let (points, skipped, duplicates, per_window) = match section.sampler {
        SamplerKind::Grid => {
            let planned = sampler::grid(&space, section.trials).map_err(|e| invalid(vec![e]))?;
            let n = planned.points.len() as u64;
            (planned.points, planned.skipped, 0, n)
        }
        SamplerKind::Random => {
            let n = section.trials.unwrap_or_default();
            let planned = sampler::random(&space, n, &mut Rng::new(seed, 0));
            let got = planned.points.len() as u64;
            (planned.points, planned.skipped, planned.duplicates, got)
        }
        SamplerKind::Tpe => (Vec::new(), 0, 0, section.trials.unwrap_or_default()),
    };
    if per_window == 0 {
        return Err(invalid(vec![format!(
            "optimize.constraints: no parameter set meets them ({skipped} {} broke one)",
            if section.sampler == SamplerKind::Grid { "combinations" } else { "draws" }
        )])
        .into());
    }
    Ok(Prepared { section, space, seed, points, skipped, duplicates, per_window })
}

/// `host config check`: checks the `[optimize]` section, if there is one,
/// and describes the search in one line.
pub fn check(session: &Session) -> Result<Option<String>> {
    if session.config.config.optimize.is_none() {
        return Ok(None);
    }
    let p = prepare(session, None)?;
    let params: Vec<String> =
        p.space.parameters.iter().map(|q| format!("{} {}", q.name, q.domain.describe())).collect();
    let count = match p.section.sampler {
        SamplerKind::Grid => format!("{} combinations ({} skipped by constraints)", p.per_window, p.skipped),
        SamplerKind::Random => format!("{} draws ({} skipped by constraints)", p.per_window, p.skipped),
        SamplerKind::Tpe => format!("{} trials", p.per_window),
    };
    let wf = p.section.walk_forward.as_ref().map_or(String::new(), |w| {
        format!(
            "; walk-forward, {} train / {} test days{}",
            w.train_days,
            w.test_days,
            if w.anchored { ", anchored" } else { "" }
        )
    });
    Ok(Some(format!(
        "{} over {}: {count}, objective {}{wf}",
        p.section.sampler.as_str(),
        params.join("; "),
        Objective::from_section(p.section).describe()
    )))
}

/// Problems of the section's own keys (the space is checked by [`SearchSpace::new`]).
fn section_problems(section: &OptimizeSection) -> Vec<String> {
    let mut problems = Vec::new();
    match (section.sampler, section.trials) {
        (_, Some(0)) => problems.push("optimize.trials must be at least 1".to_owned()),
        (SamplerKind::Random | SamplerKind::Tpe, None) => problems.push(format!(
            "optimize.trials: sampler = \"{}\" needs a trial budget, for example trials = 100",
            section.sampler.as_str()
        )),
        _ => {}
    }
    if section.batch == 0 {
        problems.push("optimize.batch must be at least 1".to_owned());
    }
    if let Some(cap) = section.max_drawdown
        && !(cap > 0.0 && cap <= 1.0)
    {
        problems.push(format!("optimize.max-drawdown is a fraction in (0, 1] (0.3 is 30%), got {cap}"));
    }
    if let Some(wf) = &section.walk_forward {
        if wf.train_days == 0 {
            problems.push("optimize.walk-forward.train-days must be at least 1".to_owned());
        }
        if wf.test_days == 0 {
            problems.push("optimize.walk-forward.test-days must be at least 1".to_owned());
        }
    }
    problems
}

/// What the results depend on, for the fingerprint. The thread count is
/// left out on purpose: results do not depend on it, so a study may be
/// resumed with another.
fn fingerprint_inputs(session: &Session, options: &StudyOptions) -> Result<serde_json::Value> {
    let mut config = session.config.config.clone();
    config.run.threads = 0;
    let components: serde_json::Map<String, serde_json::Value> = SliceKind::ALL
        .iter()
        .map(|&k| (k.as_str().to_owned(), serde_json::Value::String(session.plugin(k).sha256.clone())))
        .collect();
    Ok(serde_json::json!({
        "host_version": env!("CARGO_PKG_VERSION"),
        "symbols": options.symbols,
        "from": options.from,
        "to": options.to,
        "risk_free_rate": options.risk_free,
        "components": components,
        "config": serde_json::to_value(&config)?,
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
