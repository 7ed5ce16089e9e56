//! End-to-end over loopback: the server runs in-process, the test speaks raw HTTP and
//! WebSocket with JWTs it signs itself, as the host's client would.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::auth::ApiKey;
use crate::market::{Exchange, Series};
use crate::server;

const DATA: &str = "/work/shared/data/BTC-USD-1h.csv";
const WARM: usize = 10;

/// Sends one request; `None` when the server closed the connection without answering.
fn call(
    addr: SocketAddr,
    key: Option<&ApiKey>,
    method: &str,
    target: &str,
    body: Option<Value>,
) -> Option<(u16, String, Value)> {
    let host = format!("127.0.0.1:{}", addr.port());
    let path = target.split('?').next().unwrap_or(target);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(k) = key {
        let jwt = k.sign_jwt(Some(&format!("{method} {host}{path}")), crate::clock::wall_now());
        head.push_str(&format!("Authorization: Bearer {jwt}\r\n"));
    }
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(format!("{head}\r\n{body}").as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    if resp.is_empty() {
        return None;
    }
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    Some((status, head.to_string(), serde_json::from_str(body).unwrap_or(Value::Null)))
}

fn dec(v: &Value) -> Decimal {
    Decimal::from_str(v.as_str().unwrap()).unwrap()
}

type Client = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn ws_next(ws: &mut Client, channel: &str) -> Value {
    loop {
        let m = ws.read().unwrap();
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v["channel"] == channel {
            return v;
        }
    }
}

#[test]
fn order_round_trip_over_http_and_ws() {
    let series = Series::from_csv(&std::fs::read_to_string(DATA).unwrap()).unwrap();
    let open = series.candles[WARM].open;
    let key = ApiKey::generate();
    let balances = BTreeMap::from([("USD".to_string(), Decimal::from(100_000))]);
    let ex =
        Exchange::new(vec![("BTC-USD".into(), series)], WARM, balances, Decimal::from(60), Decimal::from(40))
            .unwrap();
    let running = server::start(key.verifier(), ex, None).unwrap();
    let addr = running.addr;
    let banner: Value = serde_json::from_str(&running.banner()).unwrap();
    assert_eq!(banner["ws_user"], format!("ws://127.0.0.1:{}/ws/user", addr.port()));

    // Authentication: none, and a token signed by another key, are both refused.
    let (st, _, body) = call(addr, None, "GET", "/api/v3/brokerage/accounts", None).unwrap();
    assert_eq!((st, body["error"].as_str()), (401, Some("UNAUTHENTICATED")));
    let mut impostor = ApiKey::generate();
    impostor.name = key.name.clone();
    assert_eq!(call(addr, Some(&impostor), "GET", "/api/v3/brokerage/accounts", None).unwrap().0, 401);

    let (st, _, p) = call(addr, Some(&key), "GET", "/api/v3/brokerage/products/BTC-USD", None).unwrap();
    assert_eq!((st, dec(&p["price"])), (200, open));
    assert_eq!(call(addr, Some(&key), "GET", "/api/v3/brokerage/products/NOPE-USD", None).unwrap().0, 404);

    // Candles: newest first; the forming one is open-only.
    let (st, _, c) = call(
        addr,
        Some(&key),
        "GET",
        "/api/v3/brokerage/products/BTC-USD/candles?granularity=ONE_HOUR",
        None,
    )
    .unwrap();
    assert_eq!(st, 200);
    let c = c["candles"].as_array().unwrap().clone();
    assert_eq!(c.len(), WARM + 1);
    assert_eq!((dec(&c[0]["high"]), dec(&c[0]["volume"])), (open, Decimal::ZERO));
    assert!(c[0]["start"].as_str().unwrap() > c[1]["start"].as_str().unwrap());
    assert_eq!(
        call(addr, Some(&key), "GET", "/api/v3/brokerage/products/BTC-USD/candles?granularity=ONE_DAY", None)
            .unwrap()
            .0,
        400
    );

    // The user channel refuses a token from another key with an error message.
    let mut bad = tungstenite::connect(banner["ws_user"].as_str().unwrap()).unwrap().0;
    let sub = json!({"type": "subscribe", "channel": "user", "jwt": impostor.sign_jwt(None, crate::clock::wall_now())});
    bad.send(tungstenite::Message::text(sub.to_string())).unwrap();
    let err: Value = serde_json::from_str(bad.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(err["type"], "error");

    let mut ws = tungstenite::connect(banner["ws_user"].as_str().unwrap()).unwrap().0;
    let sub = json!({"type": "subscribe", "channel": "user", "product_ids": ["BTC-USD"], "jwt": key.sign_jwt(None, crate::clock::wall_now())});
    ws.send(tungstenite::Message::text(sub.to_string())).unwrap();
    assert_eq!(ws_next(&mut ws, "subscriptions")["sequence_num"], 0);
    let snap = ws_next(&mut ws, "user");
    assert_eq!(
        (snap["sequence_num"].as_u64(), snap["events"][0]["type"].as_str()),
        (Some(1), Some("snapshot"))
    );

    let order = json!({"client_order_id": "c-1", "product_id": "BTC-USD", "side": "BUY",
                       "order_configuration": {"market_market_ioc": {"base_size": "0.01"}}});
    let (st, _, placed) =
        call(addr, Some(&key), "POST", "/api/v3/brokerage/orders", Some(order.clone())).unwrap();
    assert_eq!((st, placed["success"].as_bool()), (200, Some(true)), "{placed}");
    let id = placed["success_response"]["order_id"].as_str().unwrap().to_string();
    // A retry with the same client_order_id is answered with the same order.
    let (_, _, again) = call(addr, Some(&key), "POST", "/api/v3/brokerage/orders", Some(order)).unwrap();
    assert_eq!(again["success_response"]["order_id"], id.as_str());
    let update = ws_next(&mut ws, "user");
    assert_eq!(update["events"][0]["orders"][0]["status"], "OPEN");

    let (st, _, adv) = call(addr, None, "POST", "/sim/advance", Some(json!({"bars": 1}))).unwrap();
    assert_eq!((st, adv["advanced"].as_u64()), (200, Some(1)));
    let filled = ws_next(&mut ws, "user");
    assert_eq!(filled["events"][0]["orders"][0]["status"], "FILLED");

    let (_, _, fills) = call(
        addr,
        Some(&key),
        "GET",
        &format!("/api/v3/brokerage/orders/historical/fills?order_ids={id}"),
        None,
    )
    .unwrap();
    let f = &fills["fills"][0];
    assert_eq!((dec(&f["price"]), dec(&f["size"])), (open, Decimal::from_str("0.01").unwrap()));
    // Commission is 60 bps of the notional.
    assert_eq!(
        dec(&f["commission"]),
        open * Decimal::from_str("0.01").unwrap() * Decimal::from_str("0.006").unwrap()
    );

    // Faults: a rate limit answers 429 with Retry-After; a swallowed create still books the order.
    call(addr, None, "POST", "/sim/faults", Some(json!({"rate_limit_next": 1, "swallow_next_create": true})))
        .unwrap();
    let (st, head, _) = call(addr, Some(&key), "GET", "/api/v3/brokerage/accounts", None).unwrap();
    assert_eq!(st, 429);
    assert!(head.contains("Retry-After: 1"));
    let order = json!({"client_order_id": "c-2", "product_id": "BTC-USD", "side": "SELL",
                       "order_configuration": {"limit_limit_gtc": {"base_size": "0.01", "limit_price": "1000000.00", "post_only": true}}});
    assert!(call(addr, Some(&key), "POST", "/api/v3/brokerage/orders", Some(order)).is_none());
    let (_, _, open_orders) =
        call(addr, Some(&key), "GET", "/api/v3/brokerage/orders/historical/batch?order_status=OPEN", None)
            .unwrap();
    assert_eq!(open_orders["orders"][0]["client_order_id"], "c-2");

    // Malformed input is a 400, not a crash.
    let (st, _, _) =
        call(addr, Some(&key), "POST", "/api/v3/brokerage/orders", Some(json!("nonsense"))).unwrap();
    assert_eq!(st, 400);
    let (_, _, acct) = call(addr, None, "GET", "/sim/account", None).unwrap();
    assert_eq!(dec(&acct["balances"]["BTC"]), Decimal::from_str("0.01").unwrap());
    assert_eq!(dec(&acct["holds"]["BTC"]), Decimal::from_str("0.01").unwrap());
}

/// Reads until a message on `channel`, counting sequence gaps on the way.
struct Feed {
    ws: Client,
    last: Option<u64>,
    gaps: u32,
}

impl Feed {
    fn next(&mut self, channel: &str) -> Value {
        loop {
            let m = self.ws.read().unwrap();
            let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
            let seq = v["sequence_num"].as_u64().unwrap();
            if self.last.is_some_and(|l| seq != l + 1) {
                self.gaps += 1;
            }
            self.last = Some(seq);
            if v["channel"] == channel {
                return v;
            }
        }
    }
}

#[test]
fn faults_and_market_feed() {
    // Opens 100, 110, 120, 130, 140; warm 1, so the sim starts with bar 1 (open 110) forming.
    let csv = "timestamp,open,high,low,close,volume\n\
        2020-01-01T00:00:00Z,100,105,95,110,1\n2020-01-01T01:00:00Z,110,115,100,120,1\n\
        2020-01-01T02:00:00Z,120,125,118,130,1\n2020-01-01T03:00:00Z,130,135,128,140,1\n\
        2020-01-01T04:00:00Z,140,145,138,141,1\n";
    let key = ApiKey::generate();
    let balances =
        BTreeMap::from([("USD".to_string(), Decimal::from(10_000)), ("BTC".to_string(), Decimal::ONE)]);
    let ex = Exchange::new(
        vec![("BTC-USD".into(), Series::from_csv(csv).unwrap())],
        1,
        balances,
        Decimal::from(60),
        Decimal::from(40),
    )
    .unwrap();
    let running = server::start(key.verifier(), ex, None).unwrap();
    let addr = running.addr;
    let api = |method: &str, path: &str, body: Option<Value>| {
        call(addr, Some(&key), method, &format!("/api/v3/brokerage{path}"), body)
    };
    let sim =
        |path: &str, body: Value| call(addr, None, "POST", &format!("/sim/{path}"), Some(body)).unwrap();

    let url = format!("ws://127.0.0.1:{}/ws/market", addr.port());
    let mut feed = Feed { ws: tungstenite::connect(&url).unwrap().0, last: None, gaps: 0 };
    for channel in ["heartbeats", "candles"] {
        let sub = json!({"type": "subscribe", "channel": channel, "product_ids": ["BTC-USD"]});
        feed.ws.send(tungstenite::Message::text(sub.to_string())).unwrap();
    }
    assert_eq!(feed.next("subscriptions")["sequence_num"], 0);
    let snapshot = feed.next("candles");
    assert_eq!(snapshot["events"][0]["candles"][0]["open"], "100");
    feed.next("heartbeats");

    // A skipped sequence number, then the bar-1 candle closes on the feed.
    sim("faults", json!({"skip_ws_seq": true}));
    sim("advance", json!({"bars": 1}));
    let update = feed.next("candles");
    assert_eq!(
        (update["events"][0]["type"].as_str(), update["events"][0]["candles"][0]["close"].as_str()),
        (Some("update"), Some("120"))
    );
    assert_eq!(feed.gaps, 1);

    // Partial fill: half at bar 2's open, the rest at bar 3's.
    sim("faults", json!({"partial_fill_next": "0.5"}));
    let buy = json!({"client_order_id": "p", "product_id": "BTC-USD", "side": "BUY",
                     "order_configuration": {"market_market_ioc": {"base_size": "1"}}});
    let id = api("POST", "/orders", Some(buy)).unwrap().2["order_id"].as_str().unwrap().to_string();
    sim("advance", json!({}));
    let o = api("GET", &format!("/orders/historical/{id}"), None).unwrap().2;
    assert_eq!(
        (o["order"]["status"].as_str(), o["order"]["filled_size"].as_str()),
        (Some("OPEN"), Some("0.5"))
    );
    sim("advance", json!({"bars": 1}));
    let o = api("GET", &format!("/orders/historical/{id}"), None).unwrap().2;
    assert_eq!(
        (o["order"]["status"].as_str(), o["order"]["average_filled_price"].as_str()),
        (Some("FILLED"), Some("125"))
    );

    // Cancel races fill: the cancel answers failure and the order is FILLED.
    let sell = json!({"client_order_id": "s", "product_id": "BTC-USD", "side": "SELL",
                      "order_configuration": {"limit_limit_gtc": {"base_size": "0.5", "limit_price": "150.00", "post_only": true}}});
    let sid = api("POST", "/orders", Some(sell)).unwrap().2["order_id"].as_str().unwrap().to_string();
    sim("faults", json!({"cancel_races_fill": true}));
    let r = api("POST", "/orders/batch_cancel", Some(json!({"order_ids": [sid]}))).unwrap().2;
    assert_eq!(r["results"][0]["success"], false);
    let fills = api("GET", &format!("/orders/historical/fills?order_ids={sid}"), None).unwrap().2;
    assert_eq!(fills["fills"][0]["price"], "150");

    // Rejection fault and balance drift.
    sim(
        "faults",
        json!({"reject_next": {"count": 1, "error": "INSUFFICIENT_FUND", "message": "no"}, "balance_drift": {"USD": "-5"}}),
    );
    let buy = json!({"client_order_id": "r", "product_id": "BTC-USD", "side": "BUY",
                     "order_configuration": {"market_market_ioc": {"base_size": "0.1"}}});
    let r = api("POST", "/orders", Some(buy)).unwrap().2;
    assert_eq!(
        (r["success"].as_bool(), r["error_response"]["error"].as_str()),
        (Some(false), Some("INSUFFICIENT_FUND"))
    );
    let acct = call(addr, None, "GET", "/sim/account", None).unwrap().2;
    // 10000 - (60 + 65) * 1.006 buy - 5 drift + 75 * 0.996 sell (maker fee 40 bps).
    assert_eq!(dec(&acct["balances"]["USD"]), Decimal::from_str("9943.95").unwrap());

    // Data runs out: bar 4 is forming and has no successor.
    assert_eq!(sim("advance", json!({"bars": 1})).0, 409);

    // drop_ws cuts the socket with no close frame.
    sim("faults", json!({"drop_ws": true}));
    let err = loop {
        match feed.ws.read() {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(!matches!(err, tungstenite::Error::ConnectionClosed), "expected an abrupt close, got {err}");
}
