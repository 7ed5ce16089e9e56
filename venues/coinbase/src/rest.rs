//! Signed REST calls to `/api/v3/brokerage`, with rate-limit handling and checked parsing.
//!
//! Retry policy: a 429 is always retried (Coinbase did not execute the request), honouring
//! `Retry-After` when present; 5xx and connection failures are retried for GETs only. A POST
//! that got no answer is never resent here: only the caller knows whether resending is safe
//! (for orders it is, with the same `client_order_id`).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::auth::Credentials;
use crate::model::{
    self, Balance, CancelResult, Candle, Fill, Granularity, NewOrder, OrderKind, PlaceOutcome, Product,
    VenueOrder,
};

/// Largest response body read; anything bigger is refused as malformed.
pub const MAX_BODY_BYTES: u64 = 8 * 1024 * 1024;
/// Coinbase returns at most this many candles per request.
pub const MAX_CANDLES_PER_REQUEST: i64 = 350;
/// A single `Retry-After` longer than this is not slept through: the caller gets
/// `RateLimited` and decides.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Guards against a venue that hands out cursors forever.
const MAX_PAGES: usize = 1000;
const API_PREFIX: &str = "/api/v3/brokerage";

/// Where to reach Coinbase (or the simulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Base URL without path, e.g. `https://api.coinbase.com`.
    pub rest: String,
    /// WebSocket URL for market data (candles, heartbeats).
    pub ws_market: String,
    /// WebSocket URL for user order data.
    pub ws_user: String,
}

impl Endpoints {
    pub fn production() -> Self {
        Endpoints {
            rest: "https://api.coinbase.com".into(),
            ws_market: "wss://advanced-trade-ws.coinbase.com".into(),
            ws_user: "wss://advanced-trade-ws-user.coinbase.com".into(),
        }
    }

    /// The simulator's layout: REST and both WebSocket paths on one local port.
    pub fn local(port: u16) -> Self {
        Endpoints {
            rest: format!("http://127.0.0.1:{port}"),
            ws_market: format!("ws://127.0.0.1:{port}/ws/market"),
            ws_user: format!("ws://127.0.0.1:{port}/ws/user"),
        }
    }

    /// `host[:port]` of the REST URL, as the JWT `uri` claim wants it.
    pub fn rest_host(&self) -> &str {
        let rest = self.rest.as_str();
        let rest = rest.split_once("://").map_or(rest, |(_, r)| r);
        rest.split('/').next().unwrap_or(rest)
    }
}

/// What went wrong talking to the venue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VenueError {
    /// 401, or no credentials for an endpoint that needs them.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// Still 429 after the configured retries.
    #[error("rate limited (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    /// No answer: the request may or may not have taken effect.
    #[error("no answer: {0}")]
    Timeout(String),
    /// The request did not reach the venue (connection refused, DNS, TLS).
    #[error("transport: {0}")]
    Transport(String),
    /// A non-success status the venue explained.
    #[error("HTTP {status}: {error}: {message}")]
    Http { status: u16, error: String, message: String },
    /// The venue answered something this client cannot trust; names the endpoint and field.
    #[error("malformed response: {0}")]
    Malformed(String),
    /// An argument this client refuses to send (e.g. an id with `/` in it).
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl VenueError {
    /// True when the request certainly did not take effect at the venue.
    pub fn not_executed(&self) -> bool {
        matches!(
            self,
            VenueError::Unauthenticated(_)
                | VenueError::RateLimited { .. }
                | VenueError::Transport(_)
                | VenueError::Invalid(_)
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// Blocking client for the REST subset in the contract. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    agent: ureq::Agent,
    endpoints: Endpoints,
    credentials: Option<Arc<Credentials>>,
    timeout: Duration,
    max_retries: u32,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("endpoints", &self.endpoints)
            .field("credentials", &self.credentials)
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl RestClient {
    pub fn new(endpoints: Endpoints, credentials: Option<Arc<Credentials>>) -> Self {
        let timeout = Duration::from_secs(10);
        RestClient { agent: build_agent(timeout), endpoints, credentials, timeout, max_retries: 5 }
    }

    /// Whole-request timeout (connect, send, receive). Default 10 s.
    pub fn with_timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self.agent = build_agent(t);
        self
    }

    /// Retries after a 429 (and, for GETs, a 5xx or failed connection). Default 5.
    pub fn with_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    pub fn product(&self, id: &str) -> Result<Product, VenueError> {
        let path = format!("/products/{}", path_segment(id, "product id")?);
        let body = self.call(Method::Get, &path, &[], None)?;
        model::parse_product(&endpoint_name(Method::Get, &path), &body)
    }

    /// Candles covering `[start, end]` (unix seconds), oldest first, deduplicated by start.
    /// Includes the candle still forming, if the venue sends it; see
    /// [`RestClient::closed_candles`]. Long ranges are fetched in windows of 350 candles.
    pub fn candles(&self, id: &str, start: i64, end: i64, g: Granularity) -> Result<Vec<Candle>, VenueError> {
        let path = format!("/products/{}/candles", path_segment(id, "product id")?);
        let name = endpoint_name(Method::Get, &path);
        let window = MAX_CANDLES_PER_REQUEST * g.seconds();
        if end < start || start < 0 {
            return Err(VenueError::Invalid(format!("{name}: start {start} after end {end}")));
        }
        if (end - start) / window >= MAX_PAGES as i64 {
            return Err(VenueError::Invalid(format!(
                "{name}: range {start}..{end} needs more than {MAX_PAGES} requests"
            )));
        }
        let mut out = Vec::new();
        let mut from = start;
        while from <= end {
            // Coinbase's `end` is inclusive of the last bar's start: stop one bar short.
            let to = from.saturating_add(window - g.seconds()).min(end);
            let query = [
                ("start", from.to_string()),
                ("end", to.to_string()),
                ("granularity", g.as_api_str().to_string()),
            ];
            let body = self.call(Method::Get, &path, &query, None)?;
            out.extend(model::parse_candles(&name, &body)?);
            match to.checked_add(g.seconds()) {
                Some(next) => from = next,
                None => break,
            }
        }
        out.sort_by_key(|c| c.start);
        out.dedup_by_key(|c| c.start);
        out.retain(|c| c.start >= start && c.start <= end);
        Ok(out)
    }

    /// As [`RestClient::candles`], without any candle that had not closed at `now`
    /// (unix seconds, the server's clock where known).
    pub fn closed_candles(
        &self,
        id: &str,
        start: i64,
        end: i64,
        g: Granularity,
        now: i64,
    ) -> Result<Vec<Candle>, VenueError> {
        Ok(drop_forming(self.candles(id, start, end, g)?, g, now))
    }

    /// Balances of every account, following cursors.
    pub fn accounts(&self) -> Result<Vec<Balance>, VenueError> {
        self.require_credentials("/accounts")?;
        let mut out = Vec::new();
        self.paginate("/accounts", vec![("limit", "250".into())], |name, body| {
            let (page, next) = model::parse_accounts(name, body)?;
            out.extend(page);
            Ok(next)
        })?;
        Ok(out)
    }

    /// Submits an order. Not retried on timeout: the caller decides, and resending with the
    /// same `client_order_id` is safe (the venue returns the existing order). A 4xx other than
    /// 401/429 is reported as `Refused`: the venue created nothing.
    pub fn create_order(&self, order: &NewOrder) -> Result<PlaceOutcome, VenueError> {
        self.require_credentials("/orders")?;
        let configuration = match &order.kind {
            OrderKind::Market => json!({
                "market_market_ioc": { "base_size": dec_str(order.base_size) }
            }),
            OrderKind::Limit { price, post_only } => json!({
                "limit_limit_gtc": {
                    "base_size": dec_str(order.base_size),
                    "limit_price": dec_str(*price),
                    "post_only": post_only,
                }
            }),
        };
        let body = json!({
            "client_order_id": order.client_order_id,
            "product_id": order.product_id,
            "side": order.side.as_api_str(),
            "order_configuration": configuration,
        });
        match self.call(Method::Post, "/orders", &[], Some(&body)) {
            Ok(v) => model::parse_create_order(&endpoint_name(Method::Post, "/orders"), &v),
            Err(VenueError::Http { status, error, message }) if (400..500).contains(&status) => {
                Ok(PlaceOutcome::Refused { error, message })
            }
            Err(e) => Err(e),
        }
    }

    /// Cancels orders by venue id. An empty list sends nothing.
    pub fn cancel_orders(&self, ids: &[String]) -> Result<Vec<CancelResult>, VenueError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let path = "/orders/batch_cancel";
        self.require_credentials(path)?;
        let body = self.call(Method::Post, path, &[], Some(&json!({ "order_ids": ids })))?;
        model::parse_cancel(&endpoint_name(Method::Post, path), &body)
    }

    pub fn order(&self, order_id: &str) -> Result<VenueOrder, VenueError> {
        let path = format!("/orders/historical/{}", path_segment(order_id, "order id")?);
        self.require_credentials(&path)?;
        let body = self.call(Method::Get, &path, &[], None)?;
        model::parse_one_order(&endpoint_name(Method::Get, &path), &body)
    }

    /// Open orders on the given products (all products when empty), following cursors.
    pub fn open_orders(&self, products: &[String]) -> Result<Vec<VenueOrder>, VenueError> {
        self.list_orders(products, Some("OPEN"))
    }

    /// Every order (any status) on the given products, following cursors:
    /// how an order is found by its `client_order_id`, which List Orders
    /// returns but does not filter by.
    pub fn orders_of(&self, products: &[String]) -> Result<Vec<VenueOrder>, VenueError> {
        self.list_orders(products, None)
    }

    /// List Orders, with `order_status` when given.
    fn list_orders(&self, products: &[String], status: Option<&str>) -> Result<Vec<VenueOrder>, VenueError> {
        let path = "/orders/historical/batch";
        self.require_credentials(path)?;
        let mut query = vec![("limit", "250".to_string())];
        if let Some(status) = status {
            query.push(("order_status", status.to_string()));
        }
        query.extend(products.iter().map(|p| ("product_ids", p.clone())));
        let mut out = Vec::new();
        self.paginate(path, query, |name, body| {
            let (page, next) = model::parse_orders(name, body)?;
            out.extend(page);
            Ok(next)
        })?;
        Ok(out)
    }

    /// The venue's clock (Get Server Time, `GET /time`), in unix seconds:
    /// what decides which candles have closed.
    pub fn server_time(&self) -> Result<i64, VenueError> {
        let path = "/time";
        let name = endpoint_name(Method::Get, path);
        let body = self.call(Method::Get, path, &[], None)?;
        let seconds = match body.get("epochSeconds") {
            Some(Value::String(s)) => s.parse::<i64>().ok(),
            Some(Value::Number(n)) => n.as_i64(),
            _ => None,
        };
        seconds
            .filter(|s| *s >= 0)
            .ok_or_else(|| VenueError::Malformed(format!("{name}: field epochSeconds missing or not a time")))
    }

    /// Fills filtered by order ids and products (no filter when empty), from `since`
    /// (RFC 3339, matched against `sequence_timestamp`) on, following cursors.
    pub fn fills(
        &self,
        order_ids: &[String],
        products: &[String],
        since: Option<&str>,
    ) -> Result<Vec<Fill>, VenueError> {
        let path = "/orders/historical/fills";
        self.require_credentials(path)?;
        let mut query = vec![("limit", "250".to_string())];
        query.extend(order_ids.iter().map(|o| ("order_ids", o.clone())));
        query.extend(products.iter().map(|p| ("product_ids", p.clone())));
        if let Some(since) = since {
            query.push(("start_sequence_timestamp", since.to_string()));
        }
        let mut out = Vec::new();
        self.paginate(path, query, |name, body| {
            let (page, next) = model::parse_fills(name, body)?;
            out.extend(page);
            Ok(next)
        })?;
        Ok(out)
    }

    // -----------------------------------------------------------------------------------------

    fn require_credentials(&self, path: &str) -> Result<(), VenueError> {
        match self.credentials {
            Some(_) => Ok(()),
            None => {
                Err(VenueError::Unauthenticated(format!("{path} needs API credentials and none were given")))
            }
        }
    }

    /// Follows `cursor` until the venue says there is no next page. `page` parses one body
    /// and returns the next cursor.
    fn paginate(
        &self,
        path: &str,
        base_query: Vec<(&'static str, String)>,
        mut page: impl FnMut(&str, &Value) -> Result<Option<String>, VenueError>,
    ) -> Result<(), VenueError> {
        let name = endpoint_name(Method::Get, path);
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = base_query.clone();
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let body = self.call(Method::Get, path, &query, None)?;
            match page(&name, &body)? {
                None => return Ok(()),
                Some(next) if cursor.as_deref() == Some(next.as_str()) => {
                    return Err(VenueError::Malformed(format!("{name}: cursor did not advance")));
                }
                Some(next) => cursor = Some(next),
            }
        }
        Err(VenueError::Malformed(format!("{name}: more than {MAX_PAGES} pages")))
    }

    /// One logical request with the retry policy applied; returns the parsed JSON body of a
    /// 2xx answer.
    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, VenueError> {
        let name = endpoint_name(method, path);
        let full_path = format!("{API_PREFIX}{path}");
        let url = format!("{}{full_path}", self.endpoints.rest.trim_end_matches('/'));
        let mut attempt: u32 = 0;
        loop {
            let outcome = self.attempt(method, &url, &full_path, query, body, &name);
            let retry_in = match &outcome {
                Attempt::Done(_) => None,
                Attempt::RateLimited(after) => Some(after.unwrap_or_else(|| backoff(attempt))),
                Attempt::Retryable(_) if method == Method::Get => Some(backoff(attempt)),
                Attempt::Retryable(_) => None,
            };
            let give_up = attempt >= self.max_retries || retry_in.is_none_or(|d| d > MAX_RETRY_AFTER);
            if give_up {
                return match outcome {
                    Attempt::Done(r) | Attempt::Retryable(r) => r,
                    Attempt::RateLimited(retry_after) => Err(VenueError::RateLimited { retry_after }),
                };
            }
            let delay = retry_in.unwrap_or_default();
            tracing::debug!(endpoint = %name, attempt, ?delay, "retrying Coinbase request");
            thread::sleep(delay);
            attempt += 1;
        }
    }

    fn attempt(
        &self,
        method: Method,
        url: &str,
        full_path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        name: &str,
    ) -> Attempt {
        // A fresh JWT per attempt: a token is valid for two minutes and retries can outlast it.
        let auth = self.credentials.as_ref().map(|c| {
            let host = self.endpoints.rest_host();
            format!("Bearer {}", c.rest_jwt(method.as_str(), host, full_path))
        });
        let sent = match method {
            Method::Get => {
                let mut req = self.agent.get(url);
                for (k, v) in query {
                    req = req.query(*k, v);
                }
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                req.call()
            }
            Method::Post => {
                let mut req = self.agent.post(url).header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    req = req.header("Authorization", a);
                }
                let text = body.map(Value::to_string).unwrap_or_else(|| "{}".into());
                req.send(text)
            }
        };
        let mut response = match sent {
            Ok(r) => r,
            Err(e) => return classify_transport(name, e),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = match response.body_mut().with_config().limit(MAX_BODY_BYTES).read_to_vec() {
            Ok(b) => b,
            Err(ureq::Error::BodyExceedsLimit(_)) => {
                return Attempt::Done(Err(VenueError::Malformed(format!(
                    "{name}: body larger than {MAX_BODY_BYTES} bytes"
                ))));
            }
            // The status arrived, so the venue saw the request; a broken body on a success is
            // as ambiguous as no answer.
            Err(e) if (200..300).contains(&status) => {
                return Attempt::Retryable(Err(VenueError::Timeout(format!("{name}: body cut short: {e}"))));
            }
            Err(_) => Vec::new(),
        };
        match status {
            200..=299 => Attempt::Done(serde_json::from_slice::<Value>(&bytes).map_err(|e| {
                VenueError::Malformed(format!(
                    "{name}: body is not JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ))
            })),
            429 => {
                tracing::warn!(endpoint = %name, ?retry_after, "Coinbase rate limit");
                Attempt::RateLimited(retry_after)
            }
            401 => {
                let (_, message) = error_body(&bytes);
                Attempt::Done(Err(VenueError::Unauthenticated(format!("{name}: {message}"))))
            }
            _ => {
                let (error, message) = error_body(&bytes);
                let err = VenueError::Http { status, error, message };
                if status >= 500 { Attempt::Retryable(Err(err)) } else { Attempt::Done(Err(err)) }
            }
        }
    }
}

enum Attempt {
    Done(Result<Value, VenueError>),
    /// 429: not executed, always safe to retry.
    RateLimited(Option<Duration>),
    /// Retried for GETs only.
    Retryable(Result<Value, VenueError>),
}

fn build_agent(timeout: Duration) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        // Statuses are ours to interpret: 429 and error bodies carry information.
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .build();
    ureq::Agent::new_with_config(config)
}

fn classify_transport(name: &str, e: ureq::Error) -> Attempt {
    use std::io::ErrorKind;
    let err = match &e {
        ureq::Error::Timeout(_) => VenueError::Timeout(format!("{name}: {e}")),
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            VenueError::Timeout(format!("{name}: {e}"))
        }
        // Before the request left: certainly not executed.
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::BadUri(_) => {
            VenueError::Transport(format!("{name}: {e}"))
        }
        ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
            VenueError::Transport(format!("{name}: {e}"))
        }
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
            VenueError::Transport(format!("{name}: {e}"))
        }
        // Anything else (connection closed mid-request, protocol error) may have happened
        // after the venue acted: say so.
        _ => VenueError::Timeout(format!("{name}: connection lost: {e}")),
    };
    Attempt::Retryable(Err(err))
}

/// `error` and `message` of a Coinbase error body, tolerating bodies that are not JSON.
fn error_body(bytes: &[u8]) -> (String, String) {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let text = |k: &str| {
        v.get(k).and_then(Value::as_str).map(|s| s.chars().take(500).collect::<String>()).unwrap_or_default()
    };
    let error = text("error");
    let message = text("message");
    let message = if message.is_empty() { text("error_details") } else { message };
    (error, message)
}

fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF.checked_mul(1u32 << attempt.min(16)).unwrap_or(MAX_BACKOFF).min(MAX_BACKOFF)
}

fn endpoint_name(method: Method, path: &str) -> String {
    format!("{} {path}", method.as_str())
}

/// Ids go into URL paths: refuse anything that could change the path.
fn path_segment<'a>(id: &'a str, what: &str) -> Result<&'a str, VenueError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && id != "."
        && id != "..";
    if ok {
        Ok(id)
    } else {
        Err(VenueError::Invalid(format!(
            "{what} {:?} is not a plain id",
            id.chars().take(40).collect::<String>()
        )))
    }
}

fn dec_str(d: Decimal) -> String {
    d.normalize().to_string()
}

/// Drops candles that had not closed at `now`: the venue includes the forming one.
pub fn drop_forming(mut candles: Vec<Candle>, g: Granularity, now: i64) -> Vec<Candle> {
    candles.retain(|c| c.start.saturating_add(g.seconds()) <= now);
    candles
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Instant;

    /// (method, url, Authorization header) of a request the test server saw.
    type Seen = (String, String, Option<String>);
    /// (status, headers, body) the test server answers with.
    type Canned = (u16, Vec<(&'static str, String)>, String);

    /// A local server answering each request with the next canned response; records requests.
    struct Server {
        port: u16,
        seen: Arc<Mutex<Vec<Seen>>>,
        handle: Option<thread::JoinHandle<()>>,
    }

    impl Server {
        fn start(responses: Vec<Canned>) -> Server {
            let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
            let port = server.server_addr().to_ip().unwrap().port();
            let seen = Arc::new(Mutex::new(Vec::new()));
            let seen2 = seen.clone();
            let handle = thread::spawn(move || {
                for (status, headers, body) in responses {
                    let Ok(Some(mut req)) = server.recv_timeout(Duration::from_secs(5)) else {
                        return;
                    };
                    let auth = req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Authorization"))
                        .map(|h| h.value.to_string());
                    let mut text = String::new();
                    req.as_reader().read_to_string(&mut text).ok();
                    seen2.lock().unwrap().push((req.method().to_string(), req.url().to_string(), auth));
                    let mut resp = tiny_http::Response::from_string(body).with_status_code(status);
                    for (k, v) in headers {
                        resp.add_header(tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap());
                    }
                    req.respond(resp).ok();
                }
            });
            Server { port, seen, handle: Some(handle) }
        }

        fn client(&self, creds: bool) -> RestClient {
            let creds = creds.then(|| {
                let secret = p256::SecretKey::from_slice(&[3u8; 32]).unwrap();
                let pem = secret.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap().to_string();
                Arc::new(Credentials::from_parts("organizations/o/apiKeys/k", &pem).unwrap())
            });
            RestClient::new(Endpoints::local(self.port), creds).with_timeout(Duration::from_secs(2))
        }

        fn finish(mut self) -> Vec<Seen> {
            if let Some(h) = self.handle.take() {
                h.join().unwrap();
            }
            self.seen.lock().unwrap().clone()
        }
    }

    fn ok(body: Value) -> Canned {
        (200, vec![], body.to_string())
    }

    fn accounts_page(currency: &str, cursor: &str) -> Value {
        json!({"accounts":[{"uuid":"u","name":"w","currency":currency,
            "available_balance":{"value":"1.5","currency":currency},
            "hold":{"value":"0","currency":currency},"active":true}],
            "has_next": !cursor.is_empty(), "cursor": cursor, "size": 1})
    }

    #[test]
    fn retries_429_honouring_retry_after_then_succeeds() {
        let server = Server::start(vec![
            (
                429,
                vec![("Retry-After", "0".into())],
                r#"{"error":"RATE_LIMIT_EXCEEDED","message":"slow down"}"#.into(),
            ),
            ok(accounts_page("BTC", "")),
        ]);
        let started = Instant::now();
        let balances = server.client(true).accounts().unwrap();
        assert!(started.elapsed() < Duration::from_millis(200), "Retry-After: 0 means now");
        assert_eq!(balances[0].currency, "BTC");
        let seen = server.finish();
        assert_eq!(seen.len(), 2);
        // Each attempt carries its own token (fresh nonce).
        assert_ne!(seen[0].2, seen[1].2);
        let jwt = seen[1].2.as_deref().unwrap().strip_prefix("Bearer ").unwrap();
        let claims = base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            jwt.split('.').nth(1).unwrap(),
        )
        .unwrap();
        let claims: Value = serde_json::from_slice(&claims).unwrap();
        assert!(claims["uri"].as_str().unwrap().starts_with("GET 127.0.0.1:"));
        assert!(claims["uri"].as_str().unwrap().ends_with("/api/v3/brokerage/accounts"));
    }

    #[test]
    fn gives_up_after_max_retries_with_rate_limited() {
        let limited = || {
            (
                429,
                vec![("Retry-After", "0".into())],
                r#"{"error":"RATE_LIMIT_EXCEEDED","message":""}"#.to_string(),
            )
        };
        let server = Server::start(vec![limited(), limited(), limited()]);
        let err = server.client(true).with_retries(2).accounts().unwrap_err();
        assert_eq!(err, VenueError::RateLimited { retry_after: Some(Duration::ZERO) });
        assert_eq!(server.finish().len(), 3);
    }

    #[test]
    fn accounts_follow_cursors() {
        let server = Server::start(vec![ok(accounts_page("BTC", "page2")), ok(accounts_page("USD", ""))]);
        let balances = server.client(true).accounts().unwrap();
        let currencies: Vec<_> = balances.iter().map(|b| b.currency.as_str()).collect();
        assert_eq!(currencies, ["BTC", "USD"]);
        let seen = server.finish();
        assert!(seen[1].1.contains("cursor=page2"), "{}", seen[1].1);
    }

    #[test]
    fn post_is_not_retried_on_5xx_and_4xx_is_a_refusal() {
        let server = Server::start(vec![
            (503, vec![], r#"{"error":"UNAVAILABLE","message":"later"}"#.into()),
            (400, vec![], r#"{"error":"INVALID_ARGUMENT","message":"bad size"}"#.into()),
        ]);
        let client = server.client(true);
        let order = NewOrder {
            client_order_id: "strata-x-1".into(),
            product_id: "BTC-USD".into(),
            side: model::Side::Buy,
            base_size: Decimal::new(1, 2),
            kind: OrderKind::Market,
        };
        let err = client.create_order(&order).unwrap_err();
        assert!(matches!(err, VenueError::Http { status: 503, .. }), "{err:?}");
        let refused = client.create_order(&order).unwrap();
        assert_eq!(
            refused,
            PlaceOutcome::Refused { error: "INVALID_ARGUMENT".into(), message: "bad size".into() }
        );
        assert_eq!(server.finish().len(), 2, "one request per call");
    }

    #[test]
    fn get_is_retried_on_5xx() {
        let server = Server::start(vec![
            (502, vec![], "bad gateway".into()),
            ok(json!({"order":{"order_id":"o1","product_id":"BTC-USD","side":"SELL",
                "client_order_id":"c1","status":"FILLED","filled_size":"0.5",
                "average_filled_price":"100.5","total_fees":"0.1"}})),
        ]);
        let order = server.client(true).order("o1").unwrap();
        assert_eq!(order.status, model::OrderStatus::Filled);
        assert_eq!(order.average_filled_price, Decimal::new(1005, 1));
        server.finish();
    }

    #[test]
    fn oversized_body_is_malformed_not_a_panic() {
        // 10 MB of valid-looking JSON: refused at the 8 MiB cap.
        let big = format!(r#"{{"accounts":[],"pad":"{}"}}"#, "x".repeat(10 * 1024 * 1024));
        let server = Server::start(vec![(200, vec![], big)]);
        let err = server.client(true).accounts().unwrap_err();
        assert!(matches!(&err, VenueError::Malformed(m) if m.contains("larger than")), "{err:?}");
        server.finish();
    }

    #[test]
    fn unauthenticated_and_missing_credentials() {
        let server = Server::start(vec![(
            401,
            vec![],
            r#"{"error":"UNAUTHENTICATED","message":"jwt expired"}"#.into(),
        )]);
        let err = server.client(true).order("o1").unwrap_err();
        assert!(matches!(&err, VenueError::Unauthenticated(m) if m.contains("jwt expired")));
        server.finish();
        let no_creds = RestClient::new(Endpoints::local(1), None);
        assert!(matches!(no_creds.accounts(), Err(VenueError::Unauthenticated(_))));
    }

    #[test]
    fn hostile_ids_are_refused_before_sending() {
        let client = RestClient::new(Endpoints::local(1), None);
        for id in ["../accounts", "a/b", "", "a?b=c"] {
            assert!(matches!(client.product(id), Err(VenueError::Invalid(_))), "{id}");
        }
    }

    #[test]
    fn connection_refused_is_transport() {
        // Bind then drop to get a port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let client = RestClient::new(Endpoints::local(port), None).with_retries(0);
        let err = client.product("BTC-USD").unwrap_err();
        assert!(err.not_executed(), "{err:?}");
    }

    #[test]
    fn candles_are_oldest_first_and_forming_one_can_be_dropped() {
        let server = Server::start(vec![ok(json!({"candles":[
            {"start":"600","low":"1","high":"3","open":"2","close":"2","volume":"5"},
            {"start":"300","low":"1","high":"3","open":"2","close":"2","volume":"5"},
            {"start":"0","low":"1","high":"3","open":"2","close":"2","volume":"5"}]}))]);
        let client = server.client(false);
        let candles = client.closed_candles("BTC-USD", 0, 600, Granularity::FiveMinute, 700).unwrap();
        let starts: Vec<_> = candles.iter().map(|c| c.start).collect();
        assert_eq!(starts, [0, 300], "600 + 300 > 700: still forming");
        let seen = server.finish();
        assert!(seen[0].1.contains("granularity=FIVE_MINUTE"));
        assert!(seen[0].2.is_none(), "no credentials, no header");
    }

    #[test]
    fn a_post_without_an_answer_is_a_timeout_and_not_resent() {
        use std::io::Read as _;
        // Reads the request, then hangs up without answering: the simulator's
        // `swallow_next_create`.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let mut count = 0;
            listener.set_nonblocking(false).unwrap();
            let (mut s, _) = listener.accept().unwrap();
            count += 1;
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            assert!(n > 0, "the request arrived");
            drop(s);
            // A resend would arrive within the client's lifetime; give it a moment.
            listener.set_nonblocking(true).unwrap();
            thread::sleep(Duration::from_millis(300));
            if listener.accept().is_ok() {
                count += 1;
            }
            count
        });
        let secret = p256::SecretKey::from_slice(&[5u8; 32]).unwrap();
        let pem = secret.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let creds = Arc::new(Credentials::from_parts("k", &pem).unwrap());
        let client = RestClient::new(Endpoints::local(port), Some(creds));
        let order = NewOrder {
            client_order_id: "strata-x-2".into(),
            product_id: "BTC-USD".into(),
            side: model::Side::Sell,
            base_size: Decimal::ONE,
            kind: OrderKind::Limit { price: Decimal::new(10, 0), post_only: true },
        };
        let err = client.create_order(&order).unwrap_err();
        assert!(matches!(err, VenueError::Timeout(_)), "{err:?}");
        assert!(!err.not_executed(), "the venue may have acted");
        assert_eq!(server.join().unwrap(), 1, "a POST is never resent on its own");
    }

    #[test]
    fn candles_split_long_ranges_into_350_bar_windows() {
        let page = |start: i64| {
            ok(
                json!({"candles":[{"start": start.to_string(),"low":"1","high":"1","open":"1","close":"1","volume":"1"}]}),
            )
        };
        let server = Server::start(vec![page(0), page(350 * 60)]);
        // 351 one-minute bars need two requests.
        let candles = server.client(false).candles("BTC-USD", 0, 350 * 60, Granularity::OneMinute).unwrap();
        assert_eq!(candles.len(), 2);
        let seen = server.finish();
        assert_eq!(seen.len(), 2);
        assert!(seen[0].1.contains("start=0&end=20940"), "{}", seen[0].1);
        assert!(seen[1].1.contains("start=21000&end=21000"), "{}", seen[1].1);
    }

    #[test]
    fn rest_host_strips_scheme_and_path() {
        assert_eq!(Endpoints::production().rest_host(), "api.coinbase.com");
        assert_eq!(Endpoints::local(41234).rest_host(), "127.0.0.1:41234");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
