//! `host`: runs trading strategies built from six sandboxed WebAssembly slices.

fn main() -> std::process::ExitCode {
    strata_host::main()
}
