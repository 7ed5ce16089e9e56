//! Wires the pieces: one loopback port serves REST and both WebSocket paths, one thread per
//! connection, one mutex around the exchange so every request sees a consistent account.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;

use crate::auth::JwtVerifier;
use crate::faults::Faults;
use crate::http::{self, Reply, Response};
use crate::market::Exchange;
use crate::ws::Hub;
use crate::{rest, ws};

/// Everything behind the lock.
pub struct Sim {
    pub ex: Exchange,
    pub faults: Faults,
    /// Stable account uuids per currency, minted on first sight.
    pub account_ids: BTreeMap<String, String>,
}

pub struct Shared {
    sim: Mutex<Sim>,
    pub verifier: JwtVerifier,
    pub hub: Hub,
}

impl Shared {
    /// A panicking request thread must not wedge the simulator, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, Sim> {
        self.sim.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends what the exchange did to WS subscribers; called with the lock held so that
    /// subscribers see events in the order they happened.
    pub fn publish(&self, sim: &mut Sim) {
        self.hub.broadcast(sim.ex.take_events());
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
}

impl Running {
    /// The one line printed on stdout for whoever started us.
    pub fn banner(&self) -> String {
        let p = self.addr.port();
        json!({"rest": format!("http://127.0.0.1:{p}"),
               "ws_market": format!("ws://127.0.0.1:{p}/ws/market"),
               "ws_user": format!("ws://127.0.0.1:{p}/ws/user")})
        .to_string()
    }
}

/// Binds an ephemeral loopback port and serves in background threads.
pub fn start(verifier: JwtVerifier, ex: Exchange, bar_ms: Option<u64>) -> std::io::Result<Running> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        sim: Mutex::new(Sim { ex, faults: Faults::default(), account_ids: BTreeMap::new() }),
        verifier,
        hub: Hub::default(),
    });
    let s = shared.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let s = s.clone();
            std::thread::spawn(move || connection(s, stream));
        }
    });
    if let Some(ms) = bar_ms {
        let s = shared.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_millis(ms.max(1)));
                let mut sim = s.lock();
                let done = sim.ex.advance().is_err();
                s.publish(&mut sim);
                if done {
                    eprintln!("coinbase-sim: candle data exhausted; the bar timer stops");
                    return;
                }
            }
        });
    }
    Ok(Running { addr, shared })
}

fn connection(shared: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let req = match http::read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let r = Response::json(400, &json!({"error": "INVALID_ARGUMENT", "message": e}));
                let _ = http::write_response(&mut writer, &r, false);
                return;
            }
        };
        let upgrade = req.header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if upgrade && req.path.starts_with("/ws/") {
            let (Some(key), "/ws/market" | "/ws/user") = (req.header("sec-websocket-key"), req.path.as_str())
            else {
                let r = Response::json(
                    404,
                    &json!({"error": "NOT_FOUND", "message": "no such WebSocket endpoint"}),
                );
                let _ = http::write_response(&mut writer, &r, false);
                return;
            };
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            if writer.write_all(head.as_bytes()).and_then(|_| writer.flush()).is_err() {
                return;
            }
            let prefix = reader.buffer().to_vec();
            ws::run(shared, &req.path, writer, prefix);
            return;
        }
        let keep_alive = !req.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        match rest::handle(&shared, &req) {
            Reply::Send(r) => {
                if http::write_response(&mut writer, &r, keep_alive).is_err() || !keep_alive {
                    return;
                }
            }
            Reply::Swallow => {
                http::slam(&writer);
                return;
            }
            Reply::Stall(hold) => {
                std::thread::sleep(hold);
                http::slam(&writer);
                return;
            }
        }
    }
}
