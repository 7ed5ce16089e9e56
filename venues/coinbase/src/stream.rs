//! The market and user WebSocket feeds, each on its own thread, reconnecting on any doubt.
//!
//! A feed that may have lost a message is worth less than one that says so: every reconnect is
//! announced as [`StreamEvent::Gap`] then [`StreamEvent::Connected`], and the consumer
//! reconciles over REST in between. Doubt means a `sequence_num` jump, no message for the
//! silence timeout (heartbeats arrive every second), or a closed socket.

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::auth::Credentials;
use crate::model::{self, At, Candle, VenueOrderUpdate};
use crate::rest::{Endpoints, MAX_BODY_BYTES};

/// Which WebSocket connection an event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamEndpoint {
    /// Candles and heartbeats.
    Market,
    /// The user's order updates and heartbeats.
    User,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// Subscribed (again). Anything between the preceding `Gap` and this may have been missed.
    Connected {
        endpoint: StreamEndpoint,
    },
    /// The connection was dropped or is no longer trusted; a reconnect follows.
    Gap {
        endpoint: StreamEndpoint,
        reason: String,
    },
    /// A candle from the `candles` channel; may be the one still forming (`update` events).
    Candle {
        product_id: String,
        candle: Candle,
    },
    /// An order update from the `user` channel.
    Order(VenueOrderUpdate),
    Heartbeat {
        endpoint: StreamEndpoint,
        counter: u64,
    },
}

/// Settings for the stream threads; [`spawn_stream`] uses the defaults.
#[derive(Debug, Clone)]
pub struct Stream {
    endpoints: Endpoints,
    credentials: Option<Arc<Credentials>>,
    products: Vec<String>,
    silence_timeout: Duration,
    poll_interval: Duration,
    connect_timeout: Duration,
    first_backoff: Duration,
    max_backoff: Duration,
}

impl Stream {
    pub fn new(endpoints: &Endpoints, credentials: Option<Arc<Credentials>>, products: Vec<String>) -> Self {
        Stream {
            endpoints: endpoints.clone(),
            credentials,
            products,
            silence_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(250),
            // Also bounds how long `stop` can go unnoticed while a connect or handshake hangs.
            connect_timeout: Duration::from_secs(5),
            first_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Reconnect when no message arrived for this long. Default 10 s.
    pub fn silence_timeout(mut self, t: Duration) -> Self {
        self.silence_timeout = t;
        self
    }

    /// Reconnect backoff: `first`, doubling up to `max`. Default 250 ms to 5 s.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// Starts one thread per endpoint (user only with credentials). The returned handle joins
    /// them; it finishes once `stop` is set or `tx`'s receiver is gone. `stop` is seen within
    /// 250 ms while connected or backing off, and within the 5 s connect timeout while a
    /// connect or handshake hangs.
    pub fn spawn(self, tx: Sender<StreamEvent>, stop: Arc<AtomicBool>) -> JoinHandle<()> {
        thread::spawn(move || {
            let shared = Arc::new(self);
            let mut feeds = vec![(StreamEndpoint::Market, shared.endpoints.ws_market.clone())];
            if shared.credentials.is_some() {
                feeds.push((StreamEndpoint::User, shared.endpoints.ws_user.clone()));
            }
            let mut handles = Vec::new();
            for (endpoint, url) in feeds {
                let (shared, tx, stop) = (shared.clone(), tx.clone(), stop.clone());
                let spawned = thread::Builder::new()
                    .name(format!("coinbase-ws-{endpoint:?}").to_lowercase())
                    .spawn(move || run_feed(&shared, endpoint, &url, &tx, &stop));
                match spawned {
                    Ok(h) => handles.push(h),
                    Err(e) => tracing::error!(?endpoint, "cannot start stream thread: {e}"),
                }
            }
            for h in handles {
                if h.join().is_err() {
                    tracing::error!("a Coinbase stream thread panicked");
                }
            }
        })
    }
}

/// Runs the market feed (candles, heartbeats) and, with credentials, the user feed (user,
/// heartbeats) until `stop` is set. See [`Stream`] to change timeouts.
pub fn spawn_stream(
    endpoints: &Endpoints,
    credentials: Option<Arc<Credentials>>,
    products: Vec<String>,
    tx: Sender<StreamEvent>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    Stream::new(endpoints, credentials, products).spawn(tx, stop)
}

type Socket = WebSocket<MaybeTlsStream<TcpStream>>;

enum SessionEnd {
    /// Stop was requested or nobody listens any more.
    Stop,
    /// Connection lost or untrusted; `received` tells whether it ever delivered data.
    Lost { reason: String, received: bool },
}

fn run_feed(cfg: &Stream, endpoint: StreamEndpoint, url: &str, tx: &Sender<StreamEvent>, stop: &AtomicBool) {
    let mut backoff = cfg.first_backoff;
    while !stop.load(Ordering::Relaxed) {
        match connect(url, cfg) {
            Err(reason) => tracing::warn!(?endpoint, "Coinbase WebSocket connect failed: {reason}"),
            Ok(mut ws) => match session(cfg, endpoint, &mut ws, tx, stop) {
                SessionEnd::Stop => {
                    ws.close(None).ok();
                    ws.flush().ok();
                    return;
                }
                SessionEnd::Lost { reason, received } => {
                    tracing::warn!(?endpoint, "Coinbase WebSocket gap: {reason}");
                    ws.close(None).ok();
                    if tx.send(StreamEvent::Gap { endpoint, reason }).is_err() {
                        return;
                    }
                    // A connection that worked for a while earns a quick reconnect.
                    if received {
                        backoff = cfg.first_backoff;
                    }
                }
            },
        }
        sleep_unless_stopped(backoff, stop);
        backoff = (backoff * 2).min(cfg.max_backoff);
    }
}

fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) {
    let until = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Opens the socket ourselves so connect and handshake have timeouts (tungstenite's
/// `connect` has none), then lowers the read timeout to the stop-poll interval.
fn connect(url: &str, cfg: &Stream) -> Result<Socket, String> {
    let request = url.into_client_request().map_err(|e| format!("bad URL {url}: {e}"))?;
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in {url}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = uri.port_u16().unwrap_or(if uri.scheme_str() == Some("wss") { 443 } else { 80 });
    let addrs = (host.as_str(), port).to_socket_addrs().map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last_err = format!("no address for {host}");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, cfg.connect_timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last_err = format!("{addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or(last_err)?;
    let io = |e: std::io::Error| e.to_string();
    tcp.set_nodelay(true).map_err(io)?;
    tcp.set_read_timeout(Some(cfg.connect_timeout)).map_err(io)?;
    tcp.set_write_timeout(Some(cfg.connect_timeout)).map_err(io)?;
    let handle = tcp.try_clone().map_err(io)?;
    // Same cap as REST bodies: a hostile frame cannot make us buffer more.
    let limit = MAX_BODY_BYTES as usize;
    let config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let (ws, _) = tungstenite::client_tls_with_config(request, tcp, Some(config), None)
        .map_err(|e| format!("handshake with {url}: {e}"))?;
    handle.set_read_timeout(Some(cfg.poll_interval)).map_err(io)?;
    Ok(ws)
}

fn channels(endpoint: StreamEndpoint) -> [&'static str; 2] {
    match endpoint {
        StreamEndpoint::Market => ["candles", "heartbeats"],
        StreamEndpoint::User => ["user", "heartbeats"],
    }
}

fn session(
    cfg: &Stream,
    endpoint: StreamEndpoint,
    ws: &mut Socket,
    tx: &Sender<StreamEvent>,
    stop: &AtomicBool,
) -> SessionEnd {
    for channel in channels(endpoint) {
        let mut msg = json!({
            "type": "subscribe",
            "product_ids": cfg.products,
            "channel": channel,
        });
        if let (Some(c), Some(map)) = (&cfg.credentials, msg.as_object_mut()) {
            map.insert("jwt".into(), Value::String(c.ws_jwt()));
        }
        if let Err(e) = ws.send(Message::text(msg.to_string())) {
            return SessionEnd::Lost {
                reason: format!("subscribe to {channel} failed: {e}"),
                received: false,
            };
        }
    }
    if tx.send(StreamEvent::Connected { endpoint }).is_err() {
        return SessionEnd::Stop;
    }
    tracing::info!(?endpoint, "Coinbase WebSocket subscribed");

    let mut tracker = Tracker::default();
    let mut last_message = Instant::now();
    let lost =
        |reason: String, tracker: &Tracker| SessionEnd::Lost { reason, received: tracker.next_seq.is_some() };
    loop {
        if stop.load(Ordering::Relaxed) {
            return SessionEnd::Stop;
        }
        match ws.read() {
            Ok(Message::Text(text)) => {
                last_message = Instant::now();
                match handle_text(endpoint, text.as_str(), &mut tracker, tx) {
                    Handled::Ok => {}
                    Handled::Gap(reason) => return lost(reason, &tracker),
                    Handled::ReceiverGone => return SessionEnd::Stop,
                }
            }
            Ok(Message::Close(_)) => return lost("closed by the server".into(), &tracker),
            // Pings, pongs and binary frames show the link is alive; tungstenite answers pings.
            Ok(_) => last_message = Instant::now(),
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                if last_message.elapsed() >= cfg.silence_timeout {
                    let secs = cfg.silence_timeout.as_secs_f64();
                    return lost(format!("no message for {secs} s"), &tracker);
                }
            }
            Err(e) => return lost(format!("read failed: {e}"), &tracker),
        }
    }
}

#[derive(Default)]
struct Tracker {
    /// The `sequence_num` the next message must carry; `None` before the first.
    next_seq: Option<u64>,
}

enum Handled {
    Ok,
    Gap(String),
    ReceiverGone,
}

fn handle_text(
    endpoint: StreamEndpoint,
    text: &str,
    tracker: &mut Tracker,
    tx: &Sender<StreamEvent>,
) -> Handled {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        tracing::warn!(?endpoint, "Coinbase WebSocket sent a non-JSON message; ignored");
        return Handled::Ok;
    };
    if let Some(seq) = v.get("sequence_num").and_then(Value::as_u64) {
        if let Some(expected) = tracker.next_seq
            && seq != expected
        {
            return Handled::Gap(format!("sequence_num {seq} where {expected} was expected"));
        }
        tracker.next_seq = Some(seq.saturating_add(1));
    }
    if v.get("type").and_then(Value::as_str) == Some("error") {
        let message = v.get("message").and_then(Value::as_str).unwrap_or("");
        let message: String = message.chars().take(200).collect();
        tracing::error!(?endpoint, "Coinbase WebSocket error: {message}");
        return Handled::Ok;
    }
    let channel = v.get("channel").and_then(Value::as_str).unwrap_or("");
    let events = v.get("events").and_then(Value::as_array);
    let mut out = Vec::new();
    for event in events.into_iter().flatten() {
        match channel {
            "heartbeats" => {
                let counter = match event.get("heartbeat_counter") {
                    Some(Value::Number(n)) => n.as_u64(),
                    Some(Value::String(s)) => s.parse().ok(),
                    _ => None,
                };
                match counter {
                    Some(counter) => out.push(StreamEvent::Heartbeat { endpoint, counter }),
                    None => tracing::warn!(?endpoint, "heartbeat without heartbeat_counter"),
                }
            }
            "candles" if endpoint == StreamEndpoint::Market => {
                let list = event.get("candles").and_then(Value::as_array);
                for (i, c) in list.into_iter().flatten().enumerate() {
                    let path = format!("events[].candles[{i}]");
                    let at = At { endpoint: "ws candles", path: &path };
                    match at
                        .str(c, "product_id")
                        .and_then(|p| Ok((p.to_string(), model::parse_candle(&at, c)?)))
                    {
                        Ok((product_id, candle)) => out.push(StreamEvent::Candle { product_id, candle }),
                        Err(e) => tracing::warn!("ignored candle: {e}"),
                    }
                }
            }
            "user" if endpoint == StreamEndpoint::User => {
                let list = event.get("orders").and_then(Value::as_array);
                for (i, o) in list.into_iter().flatten().enumerate() {
                    let path = format!("events[].orders[{i}]");
                    let at = At { endpoint: "ws user", path: &path };
                    match model::parse_order_update(&at, o) {
                        Ok(update) => out.push(StreamEvent::Order(update)),
                        Err(e) => tracing::warn!("ignored order update: {e}"),
                    }
                }
            }
            // `subscriptions` acknowledgements and channels we did not ask for.
            _ => {}
        }
    }
    for event in out {
        if tx.send(event).is_err() {
            return Handled::ReceiverGone;
        }
    }
    Handled::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    fn msg(seq: u64, channel: &str, events: Value) -> Message {
        Message::text(
            json!({"channel": channel, "client_id": "", "timestamp": "2026-12-03T00:00:00Z",
                "sequence_num": seq, "events": events})
            .to_string(),
        )
    }

    fn next(rx: &mpsc::Receiver<StreamEvent>) -> StreamEvent {
        rx.recv_timeout(Duration::from_secs(3)).expect("event")
    }

    #[test]
    fn subscribes_parses_and_reconnects_on_a_sequence_gap() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            // First connection: two subscribes, a heartbeat, a candle, a bad candle, a gap.
            let (tcp, _) = listener.accept().unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            let mut subs = Vec::new();
            for _ in 0..2 {
                let m = ws.read().unwrap();
                subs.push(serde_json::from_str::<Value>(m.to_text().unwrap()).unwrap());
            }
            ws.send(msg(0, "subscriptions", json!([{"subscriptions": {}}]))).unwrap();
            ws.send(msg(1, "heartbeats", json!([{"current_time": "x", "heartbeat_counter": 7}]))).unwrap();
            ws.send(msg(
                2,
                "candles",
                json!([{"type": "update", "candles": [
                {"start": "300", "high": "3", "low": "1", "open": "2", "close": "2.5",
                 "volume": "10", "product_id": "BTC-USD"},
                {"start": "300", "high": "3", "low": "1", "open": "2", "close": "2.5",
                 "volume": "-10", "product_id": "BTC-USD"}]}]),
            ))
            .unwrap();
            ws.send(Message::text(r#"{"type":"mystery"}"#)).unwrap();
            ws.send(msg(5, "heartbeats", json!([{"heartbeat_counter": 8}]))).unwrap();
            // Second connection: proves the resubscribe.
            let (tcp, _) = listener.accept().unwrap();
            let mut ws2 = tungstenite::accept(tcp).unwrap();
            for _ in 0..2 {
                ws2.read().unwrap();
            }
            ws2.send(msg(0, "heartbeats", json!([{"heartbeat_counter": "9"}]))).unwrap();
            // Hold the socket open until the client leaves.
            while ws2.read().is_ok() {}
            subs
        });

        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = spawn_stream(&Endpoints::local(port), None, vec!["BTC-USD".into()], tx, stop.clone());
        let market = StreamEndpoint::Market;
        assert_eq!(next(&rx), StreamEvent::Connected { endpoint: market });
        assert_eq!(next(&rx), StreamEvent::Heartbeat { endpoint: market, counter: 7 });
        match next(&rx) {
            StreamEvent::Candle { product_id, candle } => {
                assert_eq!(product_id, "BTC-USD");
                assert_eq!(candle.start, 300);
            }
            other => panic!("expected a candle, got {other:?}"),
        }
        // The negative-volume candle is dropped, the unknown message ignored, then the jump.
        match next(&rx) {
            StreamEvent::Gap { endpoint, reason } => {
                assert_eq!(endpoint, market);
                assert!(reason.contains("sequence_num 5"), "{reason}");
            }
            other => panic!("expected a gap, got {other:?}"),
        }
        assert_eq!(next(&rx), StreamEvent::Connected { endpoint: market });
        assert_eq!(next(&rx), StreamEvent::Heartbeat { endpoint: market, counter: 9 });
        let stopped = Instant::now();
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
        assert!(stopped.elapsed() < Duration::from_millis(800), "stop is prompt");

        let subs = server.join().unwrap();
        assert_eq!(subs[0]["type"], "subscribe");
        assert_eq!(subs[0]["channel"], "candles");
        assert_eq!(subs[1]["channel"], "heartbeats");
        assert_eq!(subs[0]["product_ids"], json!(["BTC-USD"]));
        assert!(subs[0].get("jwt").is_none(), "no credentials, no jwt");
    }

    #[test]
    // The closure's error type is tungstenite's, not ours to shrink.
    #[allow(clippy::result_large_err)]
    fn with_credentials_both_feeds_subscribe_with_a_jwt() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let mut seen = Vec::new();
            let mut sockets = Vec::new();
            for _ in 0..2 {
                let (tcp, _) = listener.accept().unwrap();
                let mut path = String::new();
                let mut ws =
                    tungstenite::accept_hdr(tcp, |req: &tungstenite::handshake::server::Request, resp| {
                        path = req.uri().path().to_string();
                        Ok(resp)
                    })
                    .unwrap();
                for _ in 0..2 {
                    let m = ws.read().unwrap();
                    let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
                    seen.push((path.clone(), v));
                }
                sockets.push(ws);
            }
            seen
        });
        let secret = p256::SecretKey::from_slice(&[4u8; 32]).unwrap();
        let pem = secret.to_sec1_pem(p256::pkcs8::LineEnding::LF).unwrap();
        let creds = Arc::new(Credentials::from_parts("k", &pem).unwrap());
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = spawn_stream(&Endpoints::local(port), Some(creds), vec![], tx, stop.clone());
        // The server hangs up after reading, so a Gap may come between the two Connected.
        let mut connected = Vec::new();
        while connected.len() < 2 {
            if let StreamEvent::Connected { endpoint } = next(&rx) {
                connected.push(endpoint);
            }
        }
        connected.sort_by_key(|e| *e == StreamEndpoint::User);
        assert_eq!(connected, [StreamEndpoint::Market, StreamEndpoint::User]);
        let mut seen = server.join().unwrap();
        seen.sort_by(|a, b| (&a.0, a.1["channel"].as_str()).cmp(&(&b.0, b.1["channel"].as_str())));
        let summary: Vec<(String, String)> =
            seen.iter().map(|(p, v)| (p.clone(), v["channel"].as_str().unwrap().to_string())).collect();
        assert_eq!(
            summary,
            [
                ("/ws/market".to_string(), "candles".to_string()),
                ("/ws/market".into(), "heartbeats".into()),
                ("/ws/user".into(), "heartbeats".into()),
                ("/ws/user".into(), "user".into()),
            ]
        );
        for (_, v) in &seen {
            assert_eq!(v["jwt"].as_str().unwrap().split('.').count(), 3);
        }
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
    }

    #[test]
    fn silence_is_a_gap() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            let mut ws = tungstenite::accept(tcp).unwrap();
            // Read the subscribes, then say nothing until the client gives up.
            while ws.read().is_ok() {}
        });
        let (tx, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let handle = Stream::new(&Endpoints::local(port), None, vec![])
            .silence_timeout(Duration::from_millis(400))
            .spawn(tx, stop.clone());
        assert!(matches!(next(&rx), StreamEvent::Connected { .. }));
        match next(&rx) {
            StreamEvent::Gap { reason, .. } => assert!(reason.contains("no message"), "{reason}"),
            other => panic!("expected a gap, got {other:?}"),
        }
        stop.store(true, Ordering::Relaxed);
        handle.join().unwrap();
        server.join().unwrap();
    }

    #[test]
    fn user_updates_parse() {
        let (tx, rx) = mpsc::channel();
        let mut tracker = Tracker::default();
        let text = json!({"channel": "user", "sequence_num": 3, "events": [{"type": "update",
            "orders": [{"order_id": "o1", "client_order_id": "c1", "cumulative_quantity": "0.5",
            "leaves_quantity": "0", "avg_price": "100", "total_fees": "0.05", "status": "FILLED",
            "product_id": "BTC-USD", "order_side": "BUY", "order_type": "Market"},
            {"order_id": "o2", "status": "OPEN"}]}]})
        .to_string();
        assert!(matches!(handle_text(StreamEndpoint::User, &text, &mut tracker, &tx), Handled::Ok));
        match rx.try_recv().unwrap() {
            StreamEvent::Order(u) => {
                assert_eq!(u.order_id, "o1");
                assert_eq!(u.status, model::OrderStatus::Filled);
                assert_eq!(u.cumulative_quantity, rust_decimal::Decimal::new(5, 1));
            }
            other => panic!("{other:?}"),
        }
        assert!(rx.try_recv().is_err(), "o2 lacks product_id and is dropped");
        assert_eq!(tracker.next_seq, Some(4));
    }
}
