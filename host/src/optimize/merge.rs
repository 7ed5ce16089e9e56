//! `host optimize merge DIR...`: the folders of all N shards of a study
//! into the outputs a single process would have written. Runs nothing: a
//! shard's folder holds its trials and the curves of its best trials, and
//! the best of all shards is the best of its own shard.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::results::{self, BestCurves, CURVES_FILE};
use super::store::{self, StudyFile, TRIALS_FILE, read_records, read_study, write_atomically};
use super::trial::TrialRecord;
use super::{Report, read_curves};

/// Merges the shard folders `dirs` into `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Report> {
    let mut shards: Vec<(PathBuf, StudyFile)> = Vec::new();
    for dir in dirs {
        let study = read_study(dir).with_context(|| format!("{} is not a study folder", dir.display()))?;
        shards.push((dir.clone(), study));
    }
    let (first_dir, first) = shards.first().context("name the shards' folders")?;
    for (dir, study) in &shards {
        if study.fingerprint != first.fingerprint {
            bail!(
                "{} and {} are not shards of the same study ({})",
                first_dir.display(),
                dir.display(),
                store::differences(first, study).join("; ")
            );
        }
    }
    let count = match first.shard {
        Some(s) => s.count,
        None => bail!(
            "{} is not a shard (it ran without --shard): there is nothing to merge",
            first_dir.display()
        ),
    };
    let mut seen = BTreeSet::new();
    for (dir, study) in &shards {
        let Some(shard) = study.shard.filter(|s| s.count == count) else {
            bail!("{} is not one of {count} shards", dir.display());
        };
        if !seen.insert(shard.index) {
            bail!("shard {shard} is named twice (again as {})", dir.display());
        }
    }
    let missing: Vec<String> =
        (0..count).filter(|i| !seen.contains(i)).map(|i| format!("{i}/{count}")).collect();
    if !missing.is_empty() {
        bail!("shard(s) {} missing: give the folders of all {count} shards", missing.join(", "));
    }

    let plan = first.plan.clone();
    let total = plan.total_trials();
    let mut records: Vec<TrialRecord> = Vec::new();
    let mut curves: Vec<BestCurves> = Vec::new();
    for (dir, study) in &shards {
        let shard = study.shard.expect("checked");
        let mine = read_records(&dir.join(TRIALS_FILE), false)?;
        let expected = (0..total).filter(|t| shard.owns(*t)).count();
        if let Some(stray) = mine.iter().find(|r| !shard.owns(r.trial) || r.trial >= total) {
            bail!("{} holds trial {}, which is not shard {shard}'s", dir.display(), stray.trial);
        }
        if mine.len() != expected {
            bail!(
                "shard {shard} in {} is incomplete: {} of its {expected} trials finished; run its command again to \
                 finish it, then merge",
                dir.display(),
                mine.len()
            );
        }
        records.extend(mine);
        curves.push(read_curves(dir)?);
    }
    records.sort_by_key(|r| r.trial);

    // The curves of each window's overall best, from the shard that ran it.
    let ranked = results::rank(&plan, &records);
    let mut merged = BestCurves::default();
    for best in results::best(&ranked).into_iter().flatten() {
        let trial = best.record.trial;
        let found = curves.iter().flat_map(|c| &c.windows).find(|w| w.trial == trial).with_context(|| {
            format!("no shard has the curves of trial {trial}, the best of window {}", best.record.window)
        })?;
        merged.windows.push(found.clone());
    }

    if out.read_dir().is_ok_and(|mut d| d.next().is_some()) {
        bail!("--out {} already holds files; choose an empty or new folder", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    // The folder of a single run of the same study: no shard.
    let single = StudyFile { shard: None, ..first.clone() };
    write_atomically(
        &out.join(store::STUDY_FILE),
        (serde_json::to_string_pretty(&single)? + "\n").as_bytes(),
    )?;
    let mut lines = String::new();
    for r in &records {
        lines += &serde_json::to_string(r)?;
        lines.push('\n');
    }
    write_atomically(&out.join(TRIALS_FILE), lines.as_bytes())?;
    write_atomically(&out.join(CURVES_FILE), (serde_json::to_string(&merged)? + "\n").as_bytes())?;
    let written = results::write(out, &plan, &records, &merged, true)?;
    let report = Report {
        dir: out.to_owned(),
        plan,
        written,
        complete: true,
        ran_now: 0,
        resumed: records.len() as u64,
        seconds: 0.0,
        threads: 0,
        shard: None,
        merged_shards: Some(count),
    };
    super::write_summary(&report)?;
    Ok(report)
}
