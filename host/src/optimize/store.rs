//! A study's folder on disk, which is also what makes it resumable:
//!
//! - `study.json`: the plan and a fingerprint of everything the results
//!   depend on (the config, the components' hashes, the symbols and range,
//!   the host's version), plus the shard, if any. Written first.
//! - `trials.jsonl`: one line per finished trial, appended and flushed as
//!   each trial ends, so a study that is interrupted (Ctrl-C, a crash, a
//!   killed pod) keeps every finished trial. Running the same command again
//!   reads the file back and runs only the trials missing from it.
//!
//! An append-only file is enough here: trials are independent, a line is
//! the unit of work, and a torn last line (the process died mid-write) is
//! recognisable and dropped. It also merges by concatenation.

use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::study::Plan;
use super::trial::TrialRecord;

pub const STUDY_FILE: &str = "study.json";
pub const TRIALS_FILE: &str = "trials.jsonl";
/// Bumped when the files change shape; a folder of another format is refused.
pub const FORMAT: u32 = 1;

/// `--shard i/N`: this process runs the trials whose number modulo N is i.
/// Trial numbers come from the plan, which every shard computes the same
/// way, so the assignment is stable and the shards never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    pub fn owns(&self, trial: u64) -> bool {
        trial % self.count == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage = "expected I/N: shard I (counting from 0) of N, for example 0/4 to 3/4";
        let (i, n) = text.split_once('/').ok_or_else(|| format!("`{text}`: {usage}"))?;
        let (Ok(index), Ok(count)) = (i.trim().parse::<u64>(), n.trim().parse::<u64>()) else {
            return Err(format!("`{text}`: {usage}"));
        };
        if count == 0 {
            return Err(format!("`{text}`: the number of shards must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "`{text}`: shard {index} does not exist when there are {count} (they are 0 to {}); \
                 shards count from 0, like JOB_COMPLETION_INDEX",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

/// `study.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyFile {
    pub format: u32,
    /// sha256 of `inputs`: two folders with the same fingerprint ran the same study.
    pub fingerprint: String,
    pub shard: Option<Shard>,
    pub plan: Plan,
    /// What the results depend on: the config as used (paths resolved), the
    /// components' sha256, the symbols, the range, the risk-free rate and
    /// the host's version.
    pub inputs: serde_json::Value,
}

/// An open study folder: its finished trials, and the file new ones go to.
pub struct Store {
    pub dir: PathBuf,
    pub records: Vec<TrialRecord>,
    /// Trial number -> position in `records`.
    index: HashMap<u64, usize>,
    file: File,
    last_sync: Instant,
}

impl Store {
    /// Opens `dir` for `study`: creates it, or resumes it if it holds the
    /// same study, or refuses if it holds anything else.
    pub fn open(dir: &Path, study: &StudyFile) -> Result<Self> {
        let study_path = dir.join(STUDY_FILE);
        if study_path.exists() {
            let existing = read_study(dir)?;
            if existing.fingerprint != study.fingerprint || existing.shard != study.shard {
                bail!(
                    "{} holds another study ({}); use another --out, or delete the folder to start again",
                    dir.display(),
                    differences(&existing, study).join("; ")
                );
            }
        } else if dir.read_dir().is_ok_and(|mut d| d.next().is_some()) {
            bail!(
                "--out {} already holds files that are not a study; choose an empty or new folder",
                dir.display()
            );
        } else {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let text = serde_json::to_string_pretty(study)? + "\n";
            write_atomically(&study_path, text.as_bytes())?;
        }
        let path = dir.join(TRIALS_FILE);
        let records = read_records(&path, true)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut index = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            if index.insert(r.trial, i).is_some() {
                bail!("{} lists trial {} twice; the folder is damaged", path.display(), r.trial);
            }
        }
        Ok(Store { dir: dir.to_owned(), records, index, file, last_sync: Instant::now() })
    }

    /// Appends a finished trial. The line reaches the OS at once (so a
    /// killed process keeps it) and the disk at least once a second.
    pub fn append(&mut self, record: &TrialRecord) -> Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.file.write_all(line.as_bytes()).with_context(|| format!("cannot append to {}", TRIALS_FILE))?;
        if self.last_sync.elapsed() > Duration::from_secs(1) {
            self.file.sync_data().ok();
            self.last_sync = Instant::now();
        }
        self.index.insert(record.trial, self.records.len());
        self.records.push(record.clone());
        Ok(())
    }

    /// The finished trial `trial`, if any.
    pub fn get(&self, trial: u64) -> Option<&TrialRecord> {
        self.index.get(&trial).map(|&i| &self.records[i])
    }

    pub fn sync(&mut self) {
        self.file.sync_data().ok();
    }
}

pub fn read_study(dir: &Path) -> Result<StudyFile> {
    let path = dir.join(STUDY_FILE);
    let text = crate::files::read_text_bounded(&path, crate::files::RECORD_MAX, "study file")?;
    let format = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["format"].as_u64());
    if format != Some(u64::from(FORMAT)) {
        bail!(
            "{} is not a study of this host's format ({FORMAT}): format {}",
            path.display(),
            format.map_or("unknown".to_owned(), |f| f.to_string())
        );
    }
    serde_json::from_str(&text).with_context(|| format!("{} is damaged", path.display()))
}

/// Reads `trials.jsonl`. A last line without its newline is a write the
/// process did not finish: with `repair` it is cut off (the trial runs
/// again), otherwise it is ignored. A damaged line elsewhere is an error.
pub fn read_records(path: &Path, repair: bool) -> Result<Vec<TrialRecord>> {
    let file = match crate::files::open_regular(path, crate::files::RECORD_MAX, "trial records") {
        Ok((f, _)) => f,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut line = String::new();
    let mut good_bytes = 0u64;
    let mut number = 0;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        number += 1;
        if !line.ends_with('\n') {
            tracing::warn!("{}: dropping an unfinished last line (line {number})", path.display());
            if repair {
                OpenOptions::new()
                    .write(true)
                    .open(path)
                    .and_then(|f| f.set_len(good_bytes))
                    .with_context(|| format!("cannot repair {}", path.display()))?;
            }
            break;
        }
        let record: TrialRecord = serde_json::from_str(&line)
            .with_context(|| format!("{} line {number} is damaged", path.display()))?;
        records.push(record);
        good_bytes += n as u64;
    }
    Ok(records)
}

/// Writes `path` whole or not at all (a crash leaves the old file or none).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// What differs between two studies, for people.
pub fn differences(a: &StudyFile, b: &StudyFile) -> Vec<String> {
    let mut out = Vec::new();
    if a.shard != b.shard {
        let show = |s: Option<Shard>| s.map_or("no shard".to_owned(), |s| format!("shard {s}"));
        out.push(format!("{} there, {} here", show(a.shard), show(b.shard)));
    }
    if let (Some(x), Some(y)) = (a.inputs.as_object(), b.inputs.as_object()) {
        for (key, value) in x {
            if y.get(key) != Some(value) {
                out.push(format!("its {key} differs"));
            }
        }
    }
    if out.is_empty() && a.fingerprint != b.fingerprint {
        out.push("its fingerprint differs".to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs_are_checked() {
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        let cases = [
            ("3/2", "shard 3 does not exist when there are 2 (they are 0 to 1)"),
            ("1/0", "the number of shards must be at least 1"),
            ("two", "expected I/N"),
            ("-1/4", "expected I/N"),
        ];
        for (text, want) in cases {
            let err = text.parse::<Shard>().unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
        let s = Shard { index: 1, count: 3 };
        assert_eq!((0..7).filter(|t| s.owns(*t)).collect::<Vec<_>>(), [1, 4]);
    }

    #[test]
    fn an_unfinished_last_line_is_cut_off_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TRIALS_FILE);
        let record = TrialRecord {
            trial: 3,
            window: 0,
            params: serde_json::Map::new(),
            in_sample: None,
            out_of_sample: None,
            error: Some("x".into()),
            rejected: 0,
            ms: 1.5,
        };
        let line = serde_json::to_string(&record).unwrap();
        std::fs::write(&path, format!("{line}\n{}", &line[..20])).unwrap();
        assert_eq!(read_records(&path, true).unwrap(), vec![record]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{line}\n"));
        std::fs::write(&path, format!("{{oops}}\n{line}\n")).unwrap();
        let err = read_records(&path, true).unwrap_err();
        assert!(format!("{err:#}").contains("line 1 is damaged"), "{err:#}");
    }
}
