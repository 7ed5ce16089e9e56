//! `host-next-interface`: the host built against `wit/` bumped to the next
//! compatible interface version, to prove that components built against the
//! current one keep loading and running (docs/versioning.md). Built only by
//! the test set-up: `cargo build --release -p host --features next-interface
//! --bin host-next-interface`, after `scripts/lib.sh` generated the bumped WIT.

fn main() -> std::process::ExitCode {
    strata_host::main()
}
