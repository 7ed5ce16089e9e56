//! `host plugin build`: a plugin crate to a component, built the way
//! `scripts/lib.sh` builds the project's own: rustup's `wasm32-wasip2` target
//! when it is installed or can be installed, else Debian's Rust with the
//! standard library's sources (`-Zbuild-std`), as `../shared/TOOLCHAIN.md`
//! describes. `STRATA_FORCE_TOOLCHAIN_FALLBACK=1` skips rustup, as there.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

const TARGET: &str = "wasm32-wasip2";
const DEBIAN_PACKAGES: &str = "rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc";

/// How to build for `wasm32-wasip2` on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's cargo with the `wasm32-wasip2` target installed.
    Rustup,
    /// Debian's `/usr/bin/cargo` building the standard library from source.
    Debian,
}

impl Toolchain {
    pub fn name(self) -> &'static str {
        match self {
            Toolchain::Rustup => "rustup's wasm32-wasip2 target",
            Toolchain::Debian => "Debian's Rust with -Zbuild-std",
        }
    }

    /// Finds a working toolchain, installing rustup's target if it can.
    pub fn find() -> Result<Toolchain> {
        if std::env::var_os("STRATA_FORCE_TOOLCHAIN_FALLBACK").is_none_or(|v| v.is_empty())
            && succeeds(Command::new("rustup").arg("--version"))
        {
            let installed = Command::new("rustup")
                .args(["target", "list", "--installed"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l.trim() == TARGET));
            if installed || succeeds(Command::new("rustup").args(["target", "add", TARGET])) {
                return Ok(Toolchain::Rustup);
            }
            eprintln!("rustup could not install {TARGET}; trying Debian's Rust toolchain");
        }
        let debian_ready = Path::new("/usr/bin/cargo").is_file()
            && Path::new("/usr/lib/wasm32-wasi").is_dir()
            && succeeds(Command::new("dpkg").args(["-s", "rust-web-src"]));
        if debian_ready {
            return Ok(Toolchain::Debian);
        }
        bail!(
            "no toolchain can build {TARGET} components here: install rustup's target \
             (`rustup target add {TARGET}`) or Debian's (`apt-get install {DEBIAN_PACKAGES}`)"
        )
    }

    /// `cargo build --release --target wasm32-wasip2` for this toolchain.
    fn cargo(self) -> Command {
        match self {
            Toolchain::Rustup => {
                let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
                cmd.args(["build", "--release", "--target", TARGET]);
                cmd
            }
            Toolchain::Debian => {
                // rustup's proxies come first on PATH, so Debian's tools are named in full.
                let mut cmd = Command::new("/usr/bin/cargo");
                cmd.env("RUSTC", "/usr/bin/rustc")
                    .env("RUSTC_BOOTSTRAP", "1")
                    .env("RUSTFLAGS", "-L /usr/lib/wasm32-wasi")
                    .args(["build", "--release", "--target", TARGET, "-Zbuild-std=std,panic_abort"]);
                cmd
            }
        }
    }
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Builds the crate at `dir` and returns the component it produced. Cargo's
/// progress and diagnostics go to stderr as usual.
pub fn build(dir: &Path, toolchain: Toolchain) -> Result<PathBuf> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        bail!(
            "{} has no Cargo.toml: pass the folder of a plugin crate (made with `host plugin new`)",
            dir.display()
        );
    }
    let mut cmd = toolchain.cargo();
    cmd.arg("--manifest-path")
        .arg(&manifest)
        // Cargo names every artifact it writes in these messages, so the
        // component is found wherever the target directory is.
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd.spawn().with_context(|| format!("cannot run cargo ({})", toolchain.name()))?;
    let mut components = Vec::new();
    for line in std::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.context("cannot read cargo's output")?;
        components.extend(components_in(&line));
    }
    let status = child.wait().context("cargo did not finish")?;
    if !status.success() {
        bail!("cargo could not build {} (its messages are above)", manifest.display());
    }
    match components.as_slice() {
        [] => bail!(
            "cargo built {} but produced no .wasm: the crate needs `crate-type = [\"cdylib\", \"rlib\"]` under [lib]",
            manifest.display()
        ),
        [.., last] => Ok(last.clone()),
    }
}

/// The `.wasm` files a cargo JSON message says were written for a cdylib.
fn components_in(line: &str) -> Vec<PathBuf> {
    let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else { return Vec::new() };
    let is_cdylib = message["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
    if message["reason"] != "compiler-artifact" || !is_cdylib {
        return Vec::new();
    }
    message["filenames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .filter(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_component_is_read_from_cargos_artifact_message() {
        let line = r#"{"reason":"compiler-artifact","target":{"kind":["cdylib","rlib"],"name":"x"},"filenames":["/t/x.wasm","/t/libx.rlib"]}"#;
        assert_eq!(components_in(line), vec![PathBuf::from("/t/x.wasm")]);
        let dep = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/liby.rlib"]}"#;
        assert!(components_in(dep).is_empty());
        assert!(components_in("Compiling x").is_empty());
    }
}
