//! Finds the WIT package and writes the macro that generates one slice world's
//! bindings inside a plugin crate.
//!
//! Why the plugin crate and not this one: wit-bindgen embeds a `component-type`
//! custom section for every world it generates, and the linker keeps every such
//! section it sees. If this crate generated all six slice worlds, every plugin
//! would claim to export all six interfaces. So this crate generates only the
//! shared `types` and the `host` imports, and each `export_*!` macro generates
//! its own world in the plugin, pointing back here for the shared types.
//!
//! The path has to be absolute because the macro expands in the plugin's crate,
//! where a relative path would be resolved against the plugin's directory.

use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let wit_dir = find_wit_dir(&manifest_dir);
    println!("cargo:rerun-if-changed={}", wit_dir.display());

    let types = fs::read_to_string(wit_dir.join("types.wit")).expect("read wit/types.wit");
    let version = package_version(&types).expect("wit/types.wit declares `package strata:plugin@X.Y.Z;`");

    let wit_path = wit_dir.to_str().expect("WIT path is valid UTF-8").replace('\\', "/");
    let generated = format!(
        r#"/// The SDK's own bindings: the shared types and the host imports, nothing exported.
#[allow(missing_docs, clippy::all)]
mod gen_ {{
    wit_bindgen::generate!({{
        path: "{wit_path}",
        inline: "
            package strata:sdk-internal;
            world imports {{
                import strata:plugin/host@{version};
                import strata:plugin/types@{version};
            }}
        ",
        world: "strata:sdk-internal/imports",
        additional_derives: [PartialEq],
        generate_all,
    }});
}}

/// Version of the `strata:plugin` WIT package this SDK was built against.
pub const INTERFACE_VERSION: &str = "{version}";

#[doc(hidden)]
#[macro_export]
macro_rules! __generate_slice_world {{
    ($world:tt) => {{
        ::plugin_sdk::__private::wit_bindgen::generate!({{
            path: "{wit_path}",
            world: $world,
            with: {{
                "strata:plugin/types@{version}": ::plugin_sdk::__private::types,
                "strata:plugin/host@{version}": ::plugin_sdk::__private::host,
            }},
            runtime_path: "::plugin_sdk::__private::wit_bindgen::rt",
        }});
    }};
}}
"#
    );
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("generated.rs");
    fs::write(out, generated).expect("write generated.rs");
}

/// `wit/` beside this crate when packaged on its own, `../wit` in the workspace.
fn find_wit_dir(manifest_dir: &Path) -> PathBuf {
    for candidate in [manifest_dir.join("wit"), manifest_dir.join("../wit")] {
        if candidate.join("types.wit").is_file() {
            return candidate.canonicalize().expect("canonicalize WIT dir");
        }
    }
    panic!("cannot find the WIT package (wit/types.wit) next to {}", manifest_dir.display());
}

fn package_version(wit: &str) -> Option<&str> {
    let line = wit.lines().find(|l| l.trim_start().starts_with("package "))?;
    let at = line.find('@')?;
    Some(line[at + 1..].trim().trim_end_matches(';').trim())
}
