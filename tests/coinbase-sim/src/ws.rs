//! WebSocket feeds `/ws/market` (candles, heartbeats) and `/ws/user` (user, heartbeats).
//! One thread per connection polls its socket with a short read timeout and drains the
//! events the exchange published, so no thread ever blocks the matching engine.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::protocol::Role;
use tungstenite::{Message, WebSocket};

use crate::clock;
use crate::market::{Event, Status};
use crate::server::Shared;
use crate::views;

const POLL: Duration = Duration::from_millis(50);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

struct Conn {
    id: u64,
    tx: Sender<Event>,
    /// A clone of the socket, so `drop_ws` can cut it from another thread.
    stream: TcpStream,
}

/// Fan-out of exchange events to every live connection.
#[derive(Default)]
pub struct Hub {
    conns: Mutex<Vec<Conn>>,
    next_id: AtomicU64,
    /// Fault: the next message on any connection skips one sequence number.
    pub skip_seq: AtomicBool,
}

impl Hub {
    fn register(&self, stream: &TcpStream) -> std::io::Result<(u64, Receiver<Event>)> {
        let (tx, rx) = channel();
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stream = stream.try_clone()?;
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).push(Conn { id, tx, stream });
        Ok((id, rx))
    }

    fn unregister(&self, id: u64) {
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).retain(|c| c.id != id);
    }

    pub fn broadcast(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        for c in conns.iter() {
            for e in &events {
                let _ = c.tx.send(e.clone());
            }
        }
    }

    /// Cuts every connection at the TCP level, with no close frame: what a network drop looks like.
    pub fn drop_all(&self) -> usize {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        for c in conns.iter() {
            crate::http::slam(&c.stream);
        }
        let n = conns.len();
        conns.clear();
        n
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Market,
    User,
}

struct Session {
    endpoint: Endpoint,
    seq: u64,
    heartbeat_counter: u64,
    heartbeats: bool,
    candles: BTreeSet<String>,
    /// `Some` once subscribed to `user`; an empty set means every product.
    user: Option<BTreeSet<String>>,
}

type Ws = WebSocket<TcpStream>;

/// Runs one upgraded connection until it closes. `prefix` is whatever the HTTP reader had
/// already buffered past the handshake.
pub fn run(shared: Arc<Shared>, path: &str, stream: TcpStream, prefix: Vec<u8>) {
    let endpoint = match path {
        "/ws/market" => Endpoint::Market,
        "/ws/user" => Endpoint::User,
        _ => return,
    };
    if stream.set_read_timeout(Some(POLL)).is_err() {
        return;
    }
    let Ok((id, rx)) = shared.hub.register(&stream) else { return };
    let mut ws = WebSocket::from_partially_read(stream, prefix, Role::Server, None);
    let mut s = Session {
        endpoint,
        seq: 0,
        heartbeat_counter: 0,
        heartbeats: false,
        candles: BTreeSet::new(),
        user: None,
    };
    let mut last_heartbeat = Instant::now();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                if let Err(msg) = on_client_message(&shared, &mut ws, &mut s, t.as_str()) {
                    let _ = ws.send(Message::text(json!({"type": "error", "message": msg}).to_string()));
                    let _ = ws.close(None);
                    let _ = ws.flush();
                    break;
                }
            }
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        let mut ok = true;
        while let Ok(ev) = rx.try_recv() {
            ok &= on_event(&shared, &mut ws, &mut s, ev).is_ok();
        }
        if ok && s.heartbeats && last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            last_heartbeat = Instant::now();
            let counter = s.heartbeat_counter;
            s.heartbeat_counter += 1;
            let ev = json!([{"current_time": clock::wall_rfc3339(), "heartbeat_counter": counter}]);
            ok = send(&shared, &mut ws, &mut s, "heartbeats", ev).is_ok();
        }
        if !ok {
            break;
        }
    }
    shared.hub.unregister(id);
}

fn send(
    shared: &Shared,
    ws: &mut Ws,
    s: &mut Session,
    channel: &str,
    events: Value,
) -> tungstenite::Result<()> {
    if shared.hub.skip_seq.swap(false, Ordering::SeqCst) {
        s.seq += 1;
    }
    let msg = json!({"channel": channel, "client_id": "", "timestamp": clock::wall_rfc3339(),
                     "sequence_num": s.seq, "events": events});
    s.seq += 1;
    ws.send(Message::text(msg.to_string()))
}

fn on_event(shared: &Shared, ws: &mut Ws, s: &mut Session, ev: Event) -> tungstenite::Result<()> {
    match ev {
        Event::CandleClosed { product_id, candle } if s.candles.contains(&product_id) => {
            let events = json!([{"type": "update", "candles": [views::ws_candle(&product_id, &candle)]}]);
            send(shared, ws, s, "candles", events)
        }
        Event::OrderChanged(o) => match &s.user {
            Some(f) if f.is_empty() || f.contains(&o.product_id) => {
                let events = json!([{"type": "update", "orders": [views::ws_order(&o)]}]);
                send(shared, ws, s, "user", events)
            }
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Handles subscribe/unsubscribe. `Err` is sent to the client as an error, then the socket closes.
fn on_client_message(shared: &Shared, ws: &mut Ws, s: &mut Session, text: &str) -> Result<(), String> {
    let v: Value = serde_json::from_str(text).map_err(|_| "message is not JSON".to_string())?;
    let kind = v["type"].as_str().unwrap_or("");
    let subscribe = match kind {
        "subscribe" => true,
        "unsubscribe" => false,
        _ => return Err(format!("unknown message type {kind:?}")),
    };
    let channel = v["channel"].as_str().ok_or("subscribe needs a channel")?;
    let products: BTreeSet<String> = match &v["product_ids"] {
        Value::Null => BTreeSet::new(),
        Value::Array(a) => a
            .iter()
            .map(|p| p.as_str().map(str::to_string).ok_or("product_ids must be strings"))
            .collect::<Result<_, _>>()?,
        _ => return Err("product_ids must be an array".into()),
    };
    let mut snapshot: Option<(&str, Value)> = None;
    {
        let sim = shared.lock();
        if let Some(p) = products.iter().find(|p| !sim.ex.has_product(p)) {
            return Err(format!("Failed to subscribe: unknown product {p}"));
        }
        match (channel, s.endpoint) {
            ("heartbeats", _) => s.heartbeats = subscribe,
            ("candles", Endpoint::Market) => {
                if subscribe {
                    let candles: Vec<Value> = products
                        .iter()
                        .filter_map(|p| sim.ex.last_closed(p).map(|c| views::ws_candle(p, c)))
                        .collect();
                    s.candles.extend(products.iter().cloned());
                    snapshot = Some(("candles", json!([{"type": "snapshot", "candles": candles}])));
                } else {
                    s.candles.retain(|p| !products.contains(p));
                }
            }
            ("user", Endpoint::User) => {
                if subscribe {
                    let jwt = v["jwt"].as_str().ok_or("user channel needs a jwt")?;
                    shared
                        .verifier
                        .verify(jwt, clock::wall_now(), None)
                        .map_err(|e| format!("authentication failure: {e}"))?;
                    let orders: Vec<Value> = sim
                        .ex
                        .orders()
                        .iter()
                        .filter(|o| o.status == Status::Open)
                        .filter(|o| products.is_empty() || products.contains(&o.product_id))
                        .map(views::ws_order)
                        .collect();
                    s.user = Some(products.clone());
                    snapshot = Some(("user", json!([{"type": "snapshot", "orders": orders}])));
                } else {
                    s.user = None;
                }
            }
            (c, _) => return Err(format!("channel {c:?} is not served on this endpoint")),
        }
    }
    let mut subs = serde_json::Map::new();
    if !s.candles.is_empty() {
        subs.insert("candles".into(), json!(s.candles));
    }
    if s.heartbeats {
        subs.insert("heartbeats".into(), json!(["heartbeats"]));
    }
    if let Some(u) = &s.user {
        subs.insert("user".into(), json!(u));
    }
    let ack = json!([{"subscriptions": subs}]);
    send(shared, ws, s, "subscriptions", ack).map_err(|e| e.to_string())?;
    if let Some((channel, events)) = snapshot {
        send(shared, ws, s, channel, events).map_err(|e| e.to_string())?;
    }
    Ok(())
}
