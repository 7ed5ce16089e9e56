//! Turning a `.wasm` file into a [`Plugin`] ready to instantiate, refusing
//! anything that does not fit the slot, before any of its code runs.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use semver::Version;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{InstancePre, Linker};

use super::INTERFACE_VERSION;
use super::cache::{Cache, CacheOutcome};
use super::sandbox::SliceState;
use crate::bindings::{analysis, data, execution, regime, sizing, snapshot, strategy};
use crate::files;
use crate::model::{PluginInfo, SliceKind};

/// A compiled component that passed every check for one slice kind.
#[derive(Clone)]
pub struct Plugin {
    pub kind: SliceKind,
    pub path: PathBuf,
    pub sha256: String,
    pub size_bytes: u64,
    /// The WIT package version in the component's export name.
    pub built_against: Version,
    /// What the component says about itself (filled in by the runtime's probe).
    pub info: PluginInfo,
    /// Every import the component declares (what it would ask the host for).
    pub imports: Vec<String>,
    /// Compiling, or loading the compiled code from the cache.
    pub compile_time: Duration,
    /// Whether the compiled-component cache had it.
    pub cache: CacheOutcome,
    pub(crate) pre: InstancePre<SliceState>,
    pub(crate) exports: Exports,
    /// The optional `snapshot` interface, when the component exports it.
    pub(crate) snapshot: Option<snapshot::GuestIndices>,
    /// An execution slice that imports `strata:plugin/venue`: it works
    /// orders through the venue instead of filling them itself.
    pub uses_venue: bool,
    /// The simulated venue such a slice trades with in backtests and paper
    /// trading (`[slices.execution.venue]`), once the session attached it.
    pub venue: Option<std::sync::Arc<SimulatedVenue>>,
}

/// The simulated venue of an execution slice that imports `strata:plugin/venue`:
/// an execution slice that fills orders, with its own settings, grants and limits.
pub struct SimulatedVenue {
    pub plugin: Plugin,
    pub settings: Vec<(String, crate::model::ConfigValue)>,
    pub read_dirs: std::collections::BTreeMap<String, PathBuf>,
    pub limits: crate::config::Limits,
}

impl Plugin {
    /// `sma 0.1.0`.
    pub fn label(&self) -> String {
        self.info.label()
    }

    /// True when the component exports the optional `snapshot` interface.
    #[allow(dead_code)] // read by paper mode's reports
    pub fn exports_snapshot(&self) -> bool {
        self.snapshot.is_some()
    }
}

/// Where the one exported slice interface's functions are, per kind.
#[derive(Clone)]
pub(crate) enum Exports {
    Data(data::GuestIndices),
    Analysis(analysis::GuestIndices),
    Regime(regime::GuestIndices),
    Strategy(strategy::GuestIndices),
    Sizing(sizing::GuestIndices),
    Execution(execution::GuestIndices),
}

/// Why a file cannot fill a slot. Each message starts with the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{} does not exist", .path.display())]
    Missing { path: PathBuf },
    /// Unreadable, not a regular file, or larger than [`files::PLUGIN_MAX`].
    #[error(transparent)]
    Read(files::ReadError),
    #[error("{} is not a WebAssembly file", .path.display())]
    NotWasm { path: PathBuf },
    #[error(
        "{} is a core WebAssembly module, not a component: build the plugin for the \
         wasm32-wasip2 target (`host plugin build`)",
        .path.display()
    )]
    CoreModule { path: PathBuf },
    #[error("{} is not a valid WebAssembly component: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{} exports no slice interface, so it is not a slice for this host (a slice exports \
         one of strata:plugin/{{data,analysis,regime,strategy,sizing,execution}}); it exports: {exports}",
        .path.display()
    )]
    NoSliceExport { path: PathBuf, exports: String },
    #[error(
        "{} exports several slice interfaces ({exports}); a component implements exactly one slice",
        .path.display()
    )]
    ManySliceExports { path: PathBuf, exports: String },
    #[error(
        "{} is {} {found} slice (it exports {export}), but this slot needs {} {expected} slice",
        .path.display(), article(*.found), article(*.expected)
    )]
    WrongKind { path: PathBuf, found: SliceKind, expected: SliceKind, export: String },
    #[error(
        "{} was built against interface strata:plugin@{plugin}, but this host implements \
         strata:plugin@{host}, which is not compatible with it: {advice}",
        .path.display()
    )]
    IncompatibleVersion { path: PathBuf, plugin: String, host: String, advice: String },
    #[error("{} asks for something this host does not provide: {reason}", .path.display())]
    Imports { path: PathBuf, reason: String },
    #[error(
        "{} does not implement the {kind} interface completely: {reason}",
        .path.display()
    )]
    MissingExport { path: PathBuf, kind: SliceKind, reason: String },
    #[error("{} failed to describe itself: {reason}", .path.display())]
    Describe { path: PathBuf, reason: String },
    #[error("{} describes itself wrongly: {reason}", .path.display())]
    BadDescription { path: PathBuf, reason: String },
}

fn article(kind: SliceKind) -> &'static str {
    if kind == SliceKind::Analysis || kind == SliceKind::Execution { "an" } else { "a" }
}

/// The host's interface version, parsed.
pub fn host_version() -> Version {
    Version::parse(INTERFACE_VERSION).expect("INTERFACE_VERSION is semver")
}

/// Semver compatibility as the component model's name lookup applies it:
/// same major for 1.x and later, same minor for 0.x, exact for 0.0.x and
/// pre-releases.
pub fn compatible(host: &Version, plugin: &Version) -> bool {
    if !host.pre.is_empty() || !plugin.pre.is_empty() {
        return host == plugin;
    }
    match (host.major, host.minor) {
        (0, 0) => host == plugin,
        (0, minor) => plugin.major == 0 && plugin.minor == minor,
        (major, _) => plugin.major == major,
    }
}

fn version_advice(host: &Version, plugin: &Version) -> String {
    if plugin < host {
        format!(
            "rebuild the plugin against interface {}.{} (a plugin-sdk of that version, or the WIT files shipped with this host)",
            host.major, host.minor
        )
    } else {
        format!(
            "use a host that implements strata:plugin@{}.{}, or rebuild the plugin against {}.{}",
            plugin.major, plugin.minor, host.major, host.minor
        )
    }
}

/// The parts of a slice export name, `strata:plugin/<kind>@<version>`.
fn parse_slice_export(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("strata:plugin/")?;
    let (iface, version) = rest.split_once('@')?;
    Some((iface, version))
}

/// Reads, checks and compiles `path` for slot `expected` (or for whatever
/// slice kind it is, when `expected` is `None`). Does not run any guest code.
pub fn load(
    engine: &Engine,
    linker: &Linker<SliceState>,
    cache: Option<&Cache>,
    path: &Path,
    expected: Option<SliceKind>,
) -> Result<Plugin, LoadError> {
    let path_buf = path.to_owned();
    let bytes = files::read_bounded(path, files::PLUGIN_MAX, "plugin").map_err(|e| {
        if e.io_kind() == Some(std::io::ErrorKind::NotFound) {
            LoadError::Missing { path: path_buf.clone() }
        } else {
            LoadError::Read(e)
        }
    })?;
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {
            return Err(LoadError::CoreModule { path: path_buf });
        }
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
        _ => return Err(LoadError::NotWasm { path: path_buf }),
    }
    let sha256 = super::cache::hex(&Sha256::digest(&bytes));

    let started = Instant::now();
    let (component, cache) = Cache::compile(cache, engine, &bytes, &sha256)
        .map_err(|e| LoadError::Invalid { path: path_buf.clone(), reason: format!("{e:#}") })?;
    let compile_time = started.elapsed();

    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_owned()).collect();
    let slice_exports: Vec<(&str, SliceKind, &str)> = exports
        .iter()
        .filter_map(|name| {
            let (iface, version) = parse_slice_export(name)?;
            Some((name.as_str(), SliceKind::from_name(iface)?, version))
        })
        .collect();
    let (export, found, version) = match slice_exports.as_slice() {
        [one] => *one,
        [] => {
            let exports = if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") };
            return Err(LoadError::NoSliceExport { path: path_buf, exports });
        }
        many => {
            let exports = many.iter().map(|(n, ..)| *n).collect::<Vec<_>>().join(", ");
            return Err(LoadError::ManySliceExports { path: path_buf, exports });
        }
    };
    if let Some(expected) = expected.filter(|&e| e != found) {
        return Err(LoadError::WrongKind { path: path_buf, found, expected, export: export.to_owned() });
    }
    let host = host_version();
    let built_against = Version::parse(version).map_err(|e| LoadError::Invalid {
        path: path_buf.clone(),
        reason: format!("export {export} has an invalid version: {e}"),
    })?;
    if !compatible(&host, &built_against) {
        return Err(LoadError::IncompatibleVersion {
            path: path_buf,
            advice: version_advice(&host, &built_against),
            plugin: built_against.to_string(),
            host: host.to_string(),
        });
    }
    let imports: Vec<String> = ty
        .imports(engine)
        .filter(|(_, item)| !matches!(item.ty, ComponentItem::Type(_)))
        .map(|(name, _)| name.to_owned())
        .collect();

    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| LoadError::Imports { path: path_buf.clone(), reason: format!("{e:#}") })?;
    let missing = |e: wasmtime::Error| LoadError::MissingExport {
        path: path_buf.clone(),
        kind: found,
        reason: format!("{e:#}"),
    };
    let exports = match found {
        SliceKind::Data => Exports::Data(data::GuestIndices::new(&pre).map_err(missing)?),
        SliceKind::Analysis => Exports::Analysis(analysis::GuestIndices::new(&pre).map_err(missing)?),
        SliceKind::Regime => Exports::Regime(regime::GuestIndices::new(&pre).map_err(missing)?),
        SliceKind::Strategy => Exports::Strategy(strategy::GuestIndices::new(&pre).map_err(missing)?),
        SliceKind::Sizing => Exports::Sizing(sizing::GuestIndices::new(&pre).map_err(missing)?),
        SliceKind::Execution => Exports::Execution(execution::GuestIndices::new(&pre).map_err(missing)?),
    };
    // Optional: found by name when the component exports it, else absent.
    let snapshot = snapshot::GuestIndices::new(&pre).ok();
    let uses_venue = imports.iter().any(|i| i.starts_with("strata:plugin/venue@"));
    if uses_venue && found != SliceKind::Execution {
        return Err(LoadError::Imports {
            path: path_buf,
            reason: format!(
                "a {found} slice imports strata:plugin/venue, which only execution slices may use"
            ),
        });
    }

    Ok(Plugin {
        kind: found,
        path: path_buf,
        sha256,
        size_bytes: bytes.len() as u64,
        built_against,
        info: PluginInfo {
            name: String::new(),
            version: String::new(),
            kind: found,
            interface_version: String::new(),
            description: String::new(),
            params: Vec::new(),
        },
        imports,
        compile_time,
        cache,
        pre,
        exports,
        snapshot,
        uses_venue,
        venue: None,
    })
}

/// Checks a component's self-description against what its exports say.
pub fn check_description(plugin: &Plugin, info: &PluginInfo) -> Result<(), LoadError> {
    let bad = |reason: String| LoadError::BadDescription { path: plugin.path.clone(), reason };
    if info.name.trim().is_empty() || info.name.len() > 64 {
        return Err(bad(format!("name {:?} must be 1 to 64 characters", info.name)));
    }
    if Version::parse(&info.version).is_err() {
        return Err(bad(format!("version {:?} is not semver (like 1.2.0)", info.version)));
    }
    if info.kind != plugin.kind {
        return Err(bad(format!(
            "it says it is {} {} slice but exports the {} interface",
            article(info.kind),
            info.kind,
            plugin.kind
        )));
    }
    match Version::parse(&info.interface_version) {
        Ok(v) if compatible(&host_version(), &v) => {}
        _ => {
            return Err(LoadError::IncompatibleVersion {
                path: plugin.path.clone(),
                plugin: info.interface_version.clone(),
                host: INTERFACE_VERSION.to_owned(),
                advice: "its describe() reports an interface version this host does not implement".to_owned(),
            });
        }
    }
    let mut keys: Vec<&str> = info.params.iter().map(|p| p.key.as_str()).collect();
    keys.sort_unstable();
    if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!("config key `{}` is declared twice", w[0])));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_compatibility_follows_the_component_model() {
        let v = |s| Version::parse(s).unwrap();
        let cases = [
            ("0.1.0", "0.1.0", true),
            ("0.1.0", "0.1.7", true),
            ("0.1.3", "0.1.0", true),
            ("0.1.0", "0.2.0", false),
            ("0.2.0", "0.1.0", false),
            ("1.0.0", "1.4.0", true),
            ("1.0.0", "2.0.0", false),
            ("0.0.1", "0.0.2", false),
            ("0.1.0", "0.1.0-rc1", false),
        ];
        for (host, plugin, want) in cases {
            assert_eq!(compatible(&v(host), &v(plugin)), want, "host {host}, plugin {plugin}");
        }
    }

    #[test]
    fn export_names_split_into_kind_and_version() {
        assert_eq!(parse_slice_export("strata:plugin/sizing@0.1.0"), Some(("sizing", "0.1.0")));
        assert_eq!(parse_slice_export("wasi:cli/run@0.2.0"), None);
    }
}
