//! Write slices for the strategy host in plain Rust.
//!
//! A slice is one step of the per-symbol chain the host runs:
//!
//! ```text
//! data -> analysis -> regime -> strategy -> sizing -> execution
//! ```
//!
//! Each kind has one trait here ([`DataSource`], [`Analyzer`], [`RegimeDetector`],
//! [`Strategy`], [`Sizer`], [`Executor`]) and one export macro
//! ([`export_data_source!`], [`export_analyzer!`], [`export_regime_detector!`],
//! [`export_strategy!`], [`export_sizer!`], [`export_executor!`]). Implement the
//! trait, call the macro once, and `cargo build --target wasm32-wasip2 --release`
//! turns the crate into a component the host loads. The same code runs natively
//! under `cargo test`, so a slice is unit-tested like any Rust code.
//!
//! # A complete strategy
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [package]
//! name = "breakout"
//! version = "0.1.0"
//! edition = "2024"
//!
//! [lib]
//! crate-type = ["cdylib", "rlib"]
//!
//! [dependencies]
//! plugin-sdk = { path = "../strata/plugin-sdk" }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```
//! use plugin_sdk::{
//!     Action, Bar, Config, FeatureNames, FeatureRows, Manifest, Param, Regime, Result, Signal,
//!     Strategy,
//! };
//!
//! /// Goes long when the close rises above the slow moving average by a margin,
//! /// and exits when it falls back below it.
//! pub struct Breakout {
//!     slow: usize,
//!     margin: f64,
//! }
//!
//! impl Strategy for Breakout {
//!     fn manifest() -> Manifest {
//!         Manifest::new("Enters when the close breaks above the slow SMA by a margin")
//!             .param(Param::float("margin", 0.02, "fraction above the SMA that counts as a breakout"))
//!     }
//!
//!     fn new(config: &Config, features: &FeatureNames) -> Result<Self> {
//!         Ok(Breakout { slow: features.index("sma_slow")?, margin: config.float("margin")? })
//!     }
//!
//!     fn decide(
//!         &mut self,
//!         bars: &[Bar],
//!         features: &FeatureRows,
//!         _regimes: &[Regime],
//!         signals: &mut Vec<Signal>,
//!     ) -> Result<()> {
//!         for (i, bar) in bars.iter().enumerate() {
//!             let sma = features.get(i, self.slow);
//!             if sma.is_nan() {
//!                 continue; // still warming up
//!             }
//!             if bar.close > sma * (1.0 + self.margin) {
//!                 signals.push(Signal::market(i, Action::EnterLong));
//!             } else if bar.close < sma {
//!                 signals.push(Signal::market(i, Action::ExitLong));
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! plugin_sdk::export_strategy!(Breakout);
//!
//! // Natively, the same type is tested like any Rust code:
//! use plugin_sdk::testing;
//! let names = FeatureNames::new(["sma_fast", "sma_slow"]);
//! let config = Config::defaults(&Breakout::manifest());
//! let mut strategy = Breakout::new(&config, &names).unwrap();
//! let bars = testing::bars_from_closes(&[100.0, 104.0, 98.0]);
//! let features = [f64::NAN, 100.0, f64::NAN, 100.0, f64::NAN, 100.0];
//! let signals = testing::decide(&mut strategy, &bars, &features, names.len()).unwrap();
//! assert_eq!(signals.len(), 2);
//! assert_eq!(signals[0].action, Action::EnterLong);
//! assert_eq!(signals[1].action, Action::ExitLong);
//! ```
//!
//! # From crate to running slice
//!
//! `host` is the Strata host binary (`target/release/host` in a checkout).
//!
//! 1. **Start**: `host plugin new --kind strategy my-strategy` writes a crate
//!    with a working example of that kind and its unit tests (any of `data`,
//!    `analysis`, `regime`, `strategy`, `sizing`, `execution`).
//! 2. **Test natively**: `cargo test`. The [`testing`] module feeds your
//!    slice the way the host does (bars from closes or from a CSV file, batches,
//!    an analysis -> regime -> strategy [`testing::Pipeline`]) and checks what
//!    the host checks.
//! 3. **Build**: `host plugin build` (or `cargo build --release --target
//!    wasm32-wasip2`) prints where the component is.
//! 4. **Check**: `host plugin check FILE.wasm --kind strategy --config margin=0.05`
//!    loads it for a slot and runs its `init` on those settings, saying exactly
//!    what is wrong if anything is; `host plugin inspect FILE.wasm` shows what
//!    it says about itself and what it imports.
//! 5. **Run**: `host run --symbols BTC-USD --slice strategy=FILE.wasm`, or
//!    point `[slices.strategy] plugin` in a run config at the file. The host is
//!    never recompiled.
//!
//! The crate's `README.md` walks through each step.
//!
//! # What a slice may do
//!
//! A slice runs in a sandbox with nothing granted unless the run's config says
//! so: no files, no network, no environment variables, no stdout. Use
//! [`log`] to tell the operator something. In backtests the clock shows the
//! simulated time and random numbers come from a seeded generator, so a run is
//! reproducible bit for bit.

#![warn(missing_docs)]

include!(concat!(env!("OUT_DIR"), "/generated.rs"));

mod config;
mod error;
mod excerpt;
mod features;
pub mod log;
mod money;
mod slices;
pub mod testing;

pub use config::{Config, Manifest, Param};
pub use error::{Error, Result};
pub use excerpt::{EXCERPT_CHARS, excerpt};
pub use features::{FeatureNames, FeatureRows};
pub use money::price_to_decimal;
pub use rust_decimal::{self, Decimal};
pub use slices::analysis::Analyzer;
pub use slices::data::{DataSource, TimeRange};
pub use slices::exec_algorithm::{ChildOrder, ChildState, ChildStatus, ExecAlgorithm, Venue};
pub use slices::execution::{Executor, Fill, Order, OrderEvent};
pub use slices::regime::RegimeDetector;
pub use slices::sizing::{Sizer, SizingRequest};
pub use slices::snapshot::Snapshot;
pub use slices::strategy::Strategy;

/// Wire types shared with the host, generated from `wit/types.wit`.
pub use gen_::strata::plugin::types::{
    Action, Bar, ConfigValue, OrderType, Regime, Side, Signal, SliceKind, SourceInfo, TimeInForce, Timestamp,
};

/// Items the export macros expand to. Not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::gen_::strata::plugin::{host, types};
    pub use crate::slices::adapter::{Slot, plugin_info};
    pub use crate::slices::{analysis, data, exec_algorithm, execution, regime, sizing, strategy};
    pub use wit_bindgen;
}
