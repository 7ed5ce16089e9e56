//! The on-disk cache of compiled components, so that starting a run compiles
//! nothing the machine has compiled before.
//!
//! An entry is keyed by what decides whether compiled code may be reused:
//! the sha256 of the component's bytes (the file name) and the engine's
//! compatibility hash (the folder: wasmtime's version, the target and every
//! compilation setting, from [`Engine::precompile_compatibility_hash`]).
//! A host upgrade or a changed engine setting therefore lands in a new folder
//! and never meets old code.
//!
//! Loading compiled code is `unsafe` in wasmtime: [`Component::deserialize`]
//! trusts its input to be code wasmtime produced. So an entry carries the
//! sha256 of its payload in a header, and the payload is handed to
//! `deserialize` only when that checksum matches; a torn, truncated or
//! tampered entry is compiled again and replaced, never loaded. Entries are
//! written to a temporary file and renamed into place, so a reader sees a
//! whole entry or none, and concurrent runs can share the cache.
//!
//! Where: `$STRATA_CACHE_DIR` if set (`off` disables the cache), else
//! `$XDG_CACHE_HOME/strata`, else `~/.cache/strata`.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The environment variable that moves (or, set to `off`, disables) the cache.
pub const CACHE_DIR_ENV: &str = "STRATA_CACHE_DIR";

/// First line of every entry; the second line is the payload's sha256 in hex.
const MAGIC: &[u8] = b"strata compiled component v1\n";
/// Length of the header: the magic, 64 hex digits and a newline.
const HEADER_LEN: usize = MAGIC.len() + 64 + 1;

/// A folder of compiled components for one engine configuration.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// What the cache did for one component, for `summary.json` and `host plugin inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheOutcome {
    pub status: CacheStatus,
    /// The entry's file, when there is a cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<PathBuf>,
    /// Why an entry was rebuilt, or why a fresh one could not be stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheStatus {
    /// Loaded compiled code from a verified entry; nothing was compiled.
    Hit,
    /// No entry yet: compiled, and stored for next time.
    Miss,
    /// An entry was there but failed verification: compiled again and replaced.
    Rebuilt,
    /// No cache (`STRATA_CACHE_DIR=off`, or no home folder): compiled in memory.
    Off,
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Rebuilt => "rebuilt",
            CacheStatus::Off => "off",
        })
    }
}

impl CacheOutcome {
    fn off() -> Self {
        CacheOutcome { status: CacheStatus::Off, entry: None, note: None }
    }
}

impl fmt::Display for CacheOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.status)?;
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

impl Cache {
    /// The cache the environment asks for, in the folder for `engine`, or
    /// `None` when it is disabled or there is nowhere to put it.
    pub fn from_env(engine: &Engine) -> Option<Cache> {
        let root = match std::env::var_os(CACHE_DIR_ENV) {
            Some(v) if v == "off" || v.is_empty() => return None,
            Some(v) => PathBuf::from(v),
            None => default_root()?,
        };
        Some(Cache::at(&root, engine))
    }

    /// The cache under `root`, in the folder for `engine`'s compatibility hash.
    pub fn at(root: &Path, engine: &Engine) -> Cache {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = hex(&hasher.0.finalize()[..8]);
        Cache { dir: root.join(format!("engine-{engine_key}")) }
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    /// The compiled form of `bytes` (whose sha256 is `sha256`): from a verified
    /// entry if there is one, else compiled and stored.
    pub fn compile(
        cache: Option<&Cache>,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let Some(cache) = cache else {
            return Ok((Component::new(engine, bytes)?, CacheOutcome::off()));
        };
        let entry = cache.entry(sha256);
        // The entry is a compiled plugin, so the plugin's cap (with room for
        // compiled code being larger than the .wasm) bounds it.
        let stale = match crate::files::read_bounded(&entry, 2 * crate::files::PLUGIN_MAX, "cache entry") {
            Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => None,
            Err(e) => Some(format!("cannot read the entry: {e}")),
            Ok(data) => match verified_payload(&data) {
                Err(reason) => Some(reason),
                // SAFETY: the payload's sha256 matches the one written beside
                // it when this host serialized the component, so these are
                // bytes wasmtime produced, unmodified; and the folder is keyed
                // by the engine's compatibility hash, so the engine matches.
                // `deserialize` still checks the engine and version header.
                Ok(payload) => match unsafe { Component::deserialize(engine, payload) } {
                    Ok(component) => {
                        let outcome =
                            CacheOutcome { status: CacheStatus::Hit, entry: Some(entry), note: None };
                        return Ok((component, outcome));
                    }
                    Err(e) => Some(format!("wasmtime refused the entry: {e}")),
                },
            },
        };
        let component = Component::new(engine, bytes)?;
        let status = if stale.is_some() { CacheStatus::Rebuilt } else { CacheStatus::Miss };
        let note =
            match component.serialize().map_err(|e| e.to_string()).and_then(|c| cache.store(&entry, &c)) {
                Ok(()) => stale,
                Err(e) => {
                    tracing::warn!(entry = %entry.display(), "cannot store the compiled component: {e}");
                    Some(
                        stale.map_or_else(|| format!("not stored: {e}"), |s| format!("{s}; not stored: {e}")),
                    )
                }
            };
        if let (CacheStatus::Rebuilt, Some(reason)) = (status, &note) {
            tracing::warn!(entry = %entry.display(), "compiled-component cache entry rebuilt: {reason}");
        }
        Ok((component, CacheOutcome { status, entry: Some(entry), note }))
    }

    /// Writes an entry atomically: a temporary file in the same folder,
    /// renamed over the entry, so readers never see half of one.
    fn store(&self, entry: &Path, payload: &[u8]) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let temp = self.dir.join(format!(".tmp-{}-{}", std::process::id(), nanos.as_nanos()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(MAGIC)?;
            file.write_all(hex(&Sha256::digest(payload)).as_bytes())?;
            file.write_all(b"\n")?;
            file.write_all(payload)?;
            file.sync_all()?;
            std::fs::rename(&temp, entry)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            format!("cannot write {}: {e}", entry.display())
        })
    }
}

/// The payload of an entry whose recorded checksum matches, or why not.
fn verified_payload(data: &[u8]) -> Result<&[u8], String> {
    if data.len() < HEADER_LEN || !data.starts_with(MAGIC) || data[HEADER_LEN - 1] != b'\n' {
        return Err("the entry's header is missing or damaged".to_owned());
    }
    let (recorded, payload) = (&data[MAGIC.len()..HEADER_LEN - 1], &data[HEADER_LEN..]);
    if hex(&Sha256::digest(payload)).as_bytes() != recorded {
        return Err("the entry's checksum does not match its contents".to_owned());
    }
    Ok(payload)
}

fn default_root() -> Option<PathBuf> {
    let base =
        std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()).map(PathBuf::from).or_else(|| {
            std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("strata"))
}

/// Feeds a `Hash` implementation into sha256, so the engine key is the same
/// from one build of the host to the next (std's hasher promises no such thing).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("only the sha256 digest is read")
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: no imports, no exports.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn cache(dir: &Path) -> (Cache, Engine) {
        let engine = Engine::default();
        (Cache::at(dir, &engine), engine)
    }

    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    #[test]
    fn a_second_load_hits_and_a_damaged_entry_is_rebuilt_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, engine) = cache(dir.path());
        let key = sha(EMPTY_COMPONENT);
        let load = || Cache::compile(Some(&cache), &engine, EMPTY_COMPONENT, &key).unwrap().1;
        assert_eq!(load().status, CacheStatus::Miss);
        assert_eq!(load().status, CacheStatus::Hit);

        let entry = cache.entry(&key);
        let mut data = std::fs::read(&entry).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&entry, &data).unwrap();
        let outcome = load();
        assert_eq!(outcome.status, CacheStatus::Rebuilt);
        assert_eq!(outcome.note.as_deref(), Some("the entry's checksum does not match its contents"));
        assert_eq!(load().status, CacheStatus::Hit, "the rebuilt entry is good again");

        std::fs::write(&entry, &data[..10]).unwrap();
        assert_eq!(load().note.as_deref(), Some("the entry's header is missing or damaged"));
    }

    #[test]
    fn another_engine_configuration_uses_another_folder() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_ne!(cache(dir.path()).0.dir, Cache::at(dir.path(), &other).dir);
    }

    #[test]
    fn without_a_cache_nothing_is_written() {
        let engine = Engine::default();
        let (_, outcome) = Cache::compile(None, &engine, EMPTY_COMPONENT, "x").unwrap();
        assert_eq!(outcome, CacheOutcome::off());
    }
}
