//! Coinbase Advanced Trade adapter: signed REST, WebSocket streams, venue rules.
//!
//! The host holds the venue keys; nothing here is reachable from plugins. The wire subset is
//! fixed by `briefs/coinbase-contract.md`, which the simulator in `tests/coinbase-sim` follows
//! too.
//!
//! - [`Credentials`] loads a CDP key and signs the ES256 JWTs Coinbase wants.
//! - [`RestClient`] makes blocking REST calls with rate-limit retries and checked parsing.
//! - [`round_to_rules`] fits an order to a [`Product`]'s increments and limits.
//! - [`spawn_stream`] runs the market and user WebSocket feeds on background threads.

mod auth;
mod model;
mod rest;
mod rules;
mod stream;

pub use auth::{CredentialError, Credentials, JWT_LIFETIME_SECS};
pub use model::{
    Balance, CancelResult, Candle, Fill, Granularity, NewOrder, OrderKind, OrderStatus, PlaceOutcome,
    Product, Side, VenueOrder, VenueOrderUpdate,
};
pub use rest::{Endpoints, MAX_BODY_BYTES, MAX_CANDLES_PER_REQUEST, RestClient, VenueError, drop_forming};
pub use rules::{CLIENT_ORDER_ID_MAX, RuleViolation, client_order_id, round_to_rules};
pub use stream::{Stream, StreamEndpoint, StreamEvent, spawn_stream};
