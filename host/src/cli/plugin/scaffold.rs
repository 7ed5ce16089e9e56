//! `host plugin new`: a plugin crate of one slice kind, outside this
//! repository, that builds and passes its tests as generated.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::model::SliceKind;

const CARGO_TOML: &str = include_str!("../../../templates/Cargo.toml.tmpl");
const README: &str = include_str!("../../../templates/README.md.tmpl");
const GITIGNORE: &str = include_str!("../../../templates/gitignore.tmpl");

/// The example `src/lib.rs` of each kind, and its one-line description.
fn example(kind: SliceKind) -> (&'static str, &'static str) {
    match kind {
        SliceKind::Data => {
            (include_str!("../../../templates/data.rs"), "synthetic daily bars along a sine wave")
        }
        SliceKind::Analysis => {
            (include_str!("../../../templates/analysis.rs"), "rate of change of the close")
        }
        SliceKind::Regime => (
            include_str!("../../../templates/regime.rs"),
            "trend regimes from the close against a moving average",
        ),
        SliceKind::Strategy => (
            include_str!("../../../templates/strategy.rs"),
            "enters when the close breaks above its moving average by a margin",
        ),
        SliceKind::Sizing => {
            (include_str!("../../../templates/sizing.rs"), "spends a fixed fraction of cash")
        }
        SliceKind::Execution => (
            include_str!("../../../templates/execution.rs"),
            "market orders at the next open with slippage and a fee",
        ),
    }
}

/// What `plugin new` made.
pub struct Scaffold {
    pub dir: PathBuf,
    pub wasm: PathBuf,
}

/// Writes the crate `name` of `kind` into `dir`, depending on the SDK at `sdk`.
pub fn create(kind: SliceKind, name: &str, dir: &Path, sdk: &Path, host: &Path) -> Result<Scaffold> {
    check_name(name)?;
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} already exists and is not empty; choose a new folder with --path", dir.display());
    }
    let (source, description) = example(kind);
    let wasm = Path::new("target/wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    let article = if matches!(kind, SliceKind::Analysis | SliceKind::Execution) { "an" } else { "a" };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{type}}", &type_name(name))
            .replace("{{kind}}", kind.as_str())
            .replace("{{description}}", description)
            .replace(
                "{{article_upper}}",
                &article[..1].to_uppercase().chars().chain(article[1..].chars()).collect::<String>(),
            )
            .replace("{{sdk}}", &toml_path(sdk))
            .replace("{{host}}", &host.display().to_string())
            .replace("{{wasm}}", &wasm.display().to_string())
    };
    let files = [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("README.md", fill(README)),
        (".gitignore", fill(GITIGNORE)),
        ("src/lib.rs", fill(source)),
    ];
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("cannot create {}", dir.display()))?;
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // Start from the SDK repository's lock file, so the plugin builds with the
    // dependency versions the SDK was tested with (cargo drops the rest).
    if let Some(lock) = sdk.parent().map(|repo| repo.join("Cargo.lock")).filter(|l| l.is_file()) {
        std::fs::copy(&lock, dir.join("Cargo.lock"))
            .with_context(|| format!("cannot copy {}", lock.display()))?;
    }
    Ok(Scaffold { dir: dir.to_owned(), wasm: dir.join(wasm) })
}

/// A crate name that also makes a valid Rust type and file name.
fn check_name(name: &str) -> Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.ends_with(['-', '_']);
    if !ok {
        bail!(
            "`{name}` is not a usable plugin name: use lowercase letters, digits, `-` and `_`, starting with a letter (for example my-strategy)"
        );
    }
    if ["plugin-sdk", "plugin_sdk", "test", "core", "std"].contains(&name) {
        bail!("`{name}` would clash with a crate the plugin depends on; choose another name");
    }
    Ok(())
}

/// `my-breakout_2` -> `MyBreakout2`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

/// A path as a TOML basic string.
fn toml_path(path: &Path) -> String {
    path.display().to_string().replace('\\', "\\\\").replace('"', "\\\"")
}

/// The plugin-sdk this host was built with: beside the repository the binary
/// lives in (`target/release/host` -> `plugin-sdk/`), else where it was compiled.
pub fn find_sdk() -> Result<PathBuf> {
    let beside_binary = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok())
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("plugin-sdk")));
    let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    for candidate in beside_binary.into_iter().chain([compiled_in]) {
        if candidate.join("Cargo.toml").is_file() {
            return candidate
                .canonicalize()
                .with_context(|| format!("cannot resolve {}", candidate.display()));
        }
    }
    bail!(
        "cannot find plugin-sdk next to this host's repository; pass --sdk DIR (the plugin-sdk folder of a Strata checkout)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_types() {
        assert_eq!(type_name("my-breakout_2"), "MyBreakout2");
        assert_eq!(type_name("sma"), "Sma");
    }

    #[test]
    fn bad_names_are_refused_with_an_example() {
        for bad in ["", "My", "1x", "a b", "x-", "plugin-sdk"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_name("my-strategy").is_ok());
    }

    #[test]
    fn every_kind_has_an_example_with_its_export_macro_and_a_test() {
        for kind in SliceKind::ALL {
            let (source, _) = example(kind);
            assert!(source.contains("plugin_sdk::export_"), "{kind}");
            assert!(source.contains("#[test]"), "{kind}");
            assert!(
                !source
                    .replace("{{type}}", "")
                    .replace("{{name}}", "")
                    .replace("{{description}}", "")
                    .contains("{{")
            );
        }
    }
}
