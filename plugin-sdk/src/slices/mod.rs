//! One module per slice kind, each with the same shape: the trait a plugin
//! implements, the adapter functions the export macro calls, and the macro.

pub(crate) mod adapter;
pub mod analysis;
pub mod data;
pub mod exec_algorithm;
pub mod execution;
pub mod regime;
pub mod sizing;
pub mod snapshot;
pub mod strategy;
