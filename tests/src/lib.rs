//! Support for the integration tests in `tests/all`: where the built host and
//! components are, running the host, writing configs, and reading a run's
//! files back. Tests run the real binary on real `.wasm` files; build them
//! first with `./scripts/test.sh` (which then runs these tests).

pub mod reference;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

fn built(path: PathBuf, what: &str) -> PathBuf {
    assert!(
        path.exists(),
        "{what} {} is missing: run ./scripts/test.sh, which builds it first",
        path.display()
    );
    path
}

/// `target/release/host`.
pub fn host_bin() -> PathBuf {
    built(repo().join("target/release/host"), "the host binary")
}

/// A component built from `plugins/` or `tests/fixtures/`, by crate name.
pub fn component(crate_name: &str) -> PathBuf {
    let file = format!("{}.wasm", crate_name.replace('-', "_"));
    built(repo().join("target/wasm32-wasip2/release").join(file), "component")
}

/// The shared real data (`../shared/data`), read in place, never copied into
/// the repository. A git worktree may sit deeper than the main checkout, so
/// the first `shared/data` beside the repository or one of its parents counts.
pub fn shared_data() -> PathBuf {
    let found = repo()
        .ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/data"))
        .find(|d| d.join("BTC-USD-1d.csv").exists());
    let dir = found.unwrap_or_else(|| {
        panic!("the shared data is missing at {}", repo().join("../shared/data").display())
    });
    dir.canonicalize().unwrap()
}

/// What a `host` invocation did.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// Asserts a clean failure: non-zero exit, the given fragments in stderr,
    /// and no panic or backtrace of the host's own, which users should never
    /// see (a plugin's panic message, quoted by the host, is fine).
    pub fn assert_fails_with(&self, fragments: &[&str]) {
        assert!(!self.ok() && self.code.is_some(), "expected a failure exit, got {self:#?}");
        for f in fragments {
            assert!(self.stderr.contains(f), "stderr lacks {f:?}:\n{}", self.stderr);
        }
        for bad in ["thread 'main' panicked", "RUST_BACKTRACE", "stack backtrace"] {
            assert!(!self.stderr.contains(bad), "stderr shows a panic:\n{}", self.stderr);
        }
    }
}

/// Runs `host` with `args` in `cwd`.
pub fn host_in(cwd: &Path, args: &[&str]) -> Ran {
    let out: Output = Command::new(host_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("STRATA_CONFIG")
        .env_remove("STRATA_DATA_DIR")
        .env_remove("RUST_LOG")
        .output()
        .expect("run host");
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `host` with `args` from the repository root.
pub fn host(args: &[&str]) -> Ran {
    host_in(&repo(), args)
}

/// A run configuration, written to a file for `--config`. Starts as the
/// reference chain (the same components and settings as `config/default.toml`).
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub run: Vec<(String, String)>,
    /// The `[risk]` section's keys and TOML values.
    pub risk: Vec<(String, String)>,
    /// The `[paper]` section's keys and TOML values (written only when not empty).
    pub paper: Vec<(String, String)>,
    /// The `[live]` section's keys and TOML values (written only when not empty).
    pub live: Vec<(String, String)>,
    pub slices: BTreeMap<&'static str, SliceConfig>,
}

#[derive(Debug, Clone)]
pub struct SliceConfig {
    pub plugin: PathBuf,
    /// TOML inline-table body, for example `fast = 2, slow = 3`.
    pub config: String,
    pub extra: Vec<String>,
}

impl ConfigFile {
    pub fn reference(data_dir: &Path) -> Self {
        let slice = |name: &str, config: &str| SliceConfig {
            plugin: component(name),
            config: config.to_owned(),
            extra: Vec::new(),
        };
        let mut slices = BTreeMap::new();
        let mut data = slice("csv-data", "dir = \"/data\"");
        data.extra.push(format!("grants.read-dirs = {{ \"/data\" = {:?} }}", data_dir.display().to_string()));
        slices.insert("data", data);
        slices.insert("analysis", slice("sma", "fast = 10, slow = 30"));
        slices.insert("regime", slice("trend-vol-regime", ""));
        slices.insert("strategy", slice("sma-crossover", ""));
        slices.insert("sizing", slice("fixed-fraction", "fraction = 0.95"));
        slices.insert("execution", slice("sim-execution", "taker-fee-bps = 10"));
        ConfigFile {
            run: vec![("start-cash".into(), "10000".into())],
            // As in config/default.toml (the defaults, written out): the
            // reference strategy's 95% entries pass, nothing is borrowed.
            risk: vec![
                ("max-position-fraction".into(), "1".into()),
                ("max-gross-exposure".into(), "1".into()),
                ("max-daily-loss".into(), "\"none\"".into()),
            ],
            paper: Vec::new(),
            live: Vec::new(),
            slices,
        }
    }

    pub fn slice(mut self, kind: &'static str, f: impl FnOnce(&mut SliceConfig)) -> Self {
        f(self.slices.get_mut(kind).expect("a slice kind"));
        self
    }

    pub fn to_toml(&self) -> String {
        let mut s = String::from("[run]\n");
        for (k, v) in &self.run {
            s += &format!("{k} = {v}\n");
        }
        s += "\n[risk]\n";
        for (k, v) in &self.risk {
            s += &format!("{k} = {v}\n");
        }
        if !self.paper.is_empty() {
            s += "\n[paper]\n";
            for (k, v) in &self.paper {
                s += &format!("{k} = {v}\n");
            }
        }
        if !self.live.is_empty() {
            s += "\n[live]\n";
            for (k, v) in &self.live {
                s += &format!("{k} = {v}\n");
            }
        }
        for (kind, slice) in &self.slices {
            s += &format!(
                "\n[slices.{kind}]\nplugin = {:?}\nconfig = {{ {} }}\n",
                slice.plugin.display().to_string(),
                slice.config
            );
            for line in &slice.extra {
                s += line;
                s.push('\n');
            }
        }
        s
    }

    /// Writes the config into `dir` and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("run.toml");
        std::fs::write(&path, self.to_toml()).unwrap();
        path
    }
}

/// One row of `trades.csv`, as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRow {
    pub symbol: String,
    pub entry_ts: String,
    pub entry_price: Decimal,
    pub exit_ts: String,
    pub exit_price: Decimal,
    pub qty: Decimal,
    pub fees: Decimal,
    pub pnl: Decimal,
}

pub fn read_trades(run_dir: &Path) -> Vec<TradeRow> {
    let text = std::fs::read_to_string(run_dir.join("trades.csv")).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with("symbol,entry_ts,entry_price,exit_ts,exit_price,qty,fees,pnl"));
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let d = |i: usize| f[i].parse::<Decimal>().unwrap_or_else(|e| panic!("{line}: field {i}: {e}"));
            TradeRow {
                symbol: f[0].into(),
                entry_ts: f[1].into(),
                entry_price: d(2),
                exit_ts: f[3].into(),
                exit_price: d(4),
                qty: d(5),
                fees: d(6),
                pnl: d(7),
            }
        })
        .collect()
}

pub fn read_summary(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A decimal field of the summary (money is written as strings).
pub fn summary_decimal(summary: &serde_json::Value, key: &str) -> Decimal {
    summary[key].as_str().unwrap_or_else(|| panic!("summary.{key} missing")).parse().unwrap()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A copy of a component as if built against another version of the WIT
/// package: the version is only in the names of the interfaces it imports and
/// exports, and rewriting a same-length version keeps the binary valid.
pub fn with_interface_version(component: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len(), "same-length versions keep the binary's offsets");
    let prefix = b"strata:plugin/";
    let mut out = component.to_vec();
    let mut i = 0;
    let mut rewritten = 0;
    while let Some(pos) = out[i..].windows(prefix.len()).position(|w| w == prefix) {
        let start = i + pos + prefix.len();
        let name_len = out[start..].iter().take_while(|b| b.is_ascii_lowercase() || **b == b'-').count();
        let at = start + name_len;
        if out[at..].starts_with(format!("@{from}").as_bytes()) {
            out[at + 1..at + 1 + to.len()].copy_from_slice(to.as_bytes());
            rewritten += 1;
        }
        i = at;
    }
    assert!(rewritten > 0, "no strata:plugin names found");
    out
}

/// A running host process (a paper or live session), killed when dropped.
pub struct Running {
    pub child: Option<Child>,
    pub stderr: PathBuf,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    pub fn signal(&self, name: &str) {
        let status =
            Command::new("kill").args([&format!("-{name}"), &self.pid().to_string()]).status().unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// SIGKILL, and waits for it to be gone.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits for the process to exit; its exit code, or None on a timeout.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().unwrap();
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
