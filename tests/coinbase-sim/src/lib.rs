//! A local exchange that speaks the subset of Coinbase Advanced Trade's REST and WebSocket API
//! that Strata uses (see `/work/briefs/coinbase-contract.md`), replaying candles from CSV, with
//! injectable faults. Library so the tests can run the server in-process.

pub mod auth;
pub mod clock;
pub mod faults;
pub mod http;
pub mod market;
pub mod rest;
pub mod server;
pub mod views;
pub mod ws;

#[cfg(test)]
mod tests;
