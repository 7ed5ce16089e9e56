//! The only `bindgen!` in the host: Rust bindings for the WIT package in `wit/`.
//!
//! The host needs every slice interface, but a real component exports only
//! one. So the bindings are generated for a host-only world that imports the
//! `host` interface and exports all six slice interfaces (and the optional
//! `snapshot`), and the runtime loads just the interfaces a component actually
//! exports (`GuestIndices` per interface). Nothing outside `runtime/` sees
//! these types.

#[cfg(not(feature = "next-interface"))]
wasmtime::component::bindgen!({
    path: "../wit",
    inline: "
        package strata:host-view;

        world all-slices {
            import strata:plugin/host@0.1.1;
            import strata:plugin/venue@0.1.1;
            export strata:plugin/data@0.1.1;
            export strata:plugin/analysis@0.1.1;
            export strata:plugin/regime@0.1.1;
            export strata:plugin/strategy@0.1.1;
            export strata:plugin/sizing@0.1.1;
            export strata:plugin/execution@0.1.1;
            export strata:plugin/snapshot@0.1.1;
        }
    ",
    world: "strata:host-view/all-slices",
    anyhow: true,
});

// The rehearsal of the next compatible interface (docs/versioning.md): the
// same package bumped to 0.1.2, generated from `wit/` by `scripts/lib.sh`
// into `target/next-interface/wit`, and compiled only into the
// `host-next-interface` binary. Components built against 0.1.1 (and 0.1.0) must load
// under it unchanged; a test runs the reference chain through it.
#[cfg(feature = "next-interface")]
wasmtime::component::bindgen!({
    path: "../target/next-interface/wit",
    inline: "
        package strata:host-view;

        world all-slices {
            import strata:plugin/host@0.1.2;
            import strata:plugin/venue@0.1.2;
            export strata:plugin/data@0.1.2;
            export strata:plugin/analysis@0.1.2;
            export strata:plugin/regime@0.1.2;
            export strata:plugin/strategy@0.1.2;
            export strata:plugin/sizing@0.1.2;
            export strata:plugin/execution@0.1.2;
            export strata:plugin/snapshot@0.1.2;
        }
    ",
    world: "strata:host-view/all-slices",
    anyhow: true,
});

pub use exports::strata::plugin::{analysis, data, execution, regime, sizing, snapshot, strategy};
pub use strata::plugin::{host, types, venue};
