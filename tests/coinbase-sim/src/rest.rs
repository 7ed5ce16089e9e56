//! REST routes: the Coinbase subset under `/api/v3/brokerage` (JWT-checked) and the
//! simulator's own controls under `/sim/` (open; the socket is loopback-only).

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::clock;
use crate::faults::FaultRequest;
use crate::http::{Reply, Request, Response};
use crate::market::{NewOrder, OrderKind, Placed, Side, Status, rules, split_product};
use crate::server::{Shared, Sim};
use crate::views::{self, d};

const PREFIX: &str = "/api/v3/brokerage/";
/// Coinbase's cap on candles per request.
const MAX_CANDLES: i64 = 350;
const DEFAULT_PAGE: usize = 100;
/// Largest balance magnitude drift may produce (1e20).
const MAX_BALANCE: Decimal = Decimal::from_parts(1_661_992_960, 1_808_227_885, 5, false, 0);
const MAX_PAGE: usize = 1000;

fn send(status: u16, v: Value) -> Reply {
    Reply::Send(Response::json(status, &v))
}

fn error(status: u16, code: &str, message: impl Into<String>) -> Reply {
    send(status, json!({"error": code, "message": message.into()}))
}

fn bad_request(message: impl Into<String>) -> Reply {
    error(400, "INVALID_ARGUMENT", message)
}

pub fn handle(shared: &Shared, req: &Request) -> Reply {
    if let Some(rest) = req.path.strip_prefix("/sim/") {
        return sim_route(shared, req, rest);
    }
    let Some(rest) = req.path.strip_prefix(PREFIX) else {
        return error(404, "NOT_FOUND", format!("no route {}", req.path));
    };
    // Get Server Time is public on Coinbase: no JWT. The venue's clock is the sim's.
    if req.method == "GET" && rest == "time" {
        let now = shared.lock().ex.now();
        return send(
            200,
            json!({"iso": clock::format(now), "epochSeconds": now.to_string(), "epochMillis": (now * 1000).to_string()}),
        );
    }
    if let Err(why) = authenticate(shared, req) {
        return error(401, "UNAUTHENTICATED", why);
    }
    let mut sim = shared.lock();
    if sim.faults.take_rate_limit() {
        let mut r =
            Response::json(429, &json!({"error": "RATE_LIMIT_EXCEEDED", "message": "Too many requests"}));
        r.extra_headers.push(("Retry-After", "1".into()));
        return Reply::Send(r);
    }
    let segs: Vec<&str> = rest.split('/').collect();
    let reply = match (req.method.as_str(), segs.as_slice()) {
        ("GET", ["products", id]) => product(&sim, id),
        ("GET", ["products", id, "candles"]) => candles(&sim, id, req),
        ("GET", ["accounts"]) => accounts(&mut sim, req),
        ("POST", ["orders"]) => return create_order(shared, &mut sim, req),
        ("POST", ["orders", "batch_cancel"]) => batch_cancel(&mut sim, req),
        ("GET", ["orders", "historical", "batch"]) => list_orders(&sim, req),
        ("GET", ["orders", "historical", "fills"]) => list_fills(&sim, req),
        ("GET", ["orders", "historical", id]) => match sim.ex.order(id) {
            Some(o) => send(200, json!({"order": views::order(o)})),
            None => error(404, "NOT_FOUND", format!("order {id} not found")),
        },
        _ => error(404, "NOT_FOUND", format!("no route {} {}", req.method, req.path)),
    };
    shared.publish(&mut sim);
    reply
}

/// Checks `Authorization: Bearer <jwt>` with `uri = "<METHOD> <Host><path>"`, as Coinbase does.
fn authenticate(shared: &Shared, req: &Request) -> Result<(), String> {
    let auth = req.header("authorization").ok_or("missing Authorization header")?;
    let token = auth.strip_prefix("Bearer ").ok_or("Authorization must be \"Bearer <jwt>\"")?;
    let host = req.header("host").ok_or("missing Host header")?;
    let uri = format!("{} {}{}", req.method, host, req.path);
    shared.verifier.verify(token.trim(), clock::wall_now(), Some(&uri))
}

fn product(sim: &Sim, id: &str) -> Reply {
    let (Some((base, quote)), Some(price)) = (split_product(id), sim.ex.price(id)) else {
        return error(404, "NOT_FOUND", format!("product {id} not found"));
    };
    send(
        200,
        json!({
            "product_id": id, "price": d(price),
            "base_increment": d(rules::BASE_INCREMENT), "quote_increment": d(rules::QUOTE_INCREMENT),
            "base_min_size": d(rules::BASE_MIN_SIZE), "base_max_size": d(rules::BASE_MAX_SIZE),
            "quote_min_size": d(rules::QUOTE_MIN_SIZE), "quote_max_size": d(rules::QUOTE_MAX_SIZE),
            "status": "online", "trading_disabled": false, "is_disabled": false, "post_only": false,
            "limit_only": false, "cancel_only": false, "product_type": "SPOT",
            "base_currency_id": base, "quote_currency_id": quote,
            "base_name": base, "quote_name": quote,
        }),
    )
}

fn granularity_name(secs: i64) -> Option<&'static str> {
    Some(match secs {
        60 => "ONE_MINUTE",
        300 => "FIVE_MINUTE",
        900 => "FIFTEEN_MINUTE",
        1800 => "THIRTY_MINUTE",
        3600 => "ONE_HOUR",
        7200 => "TWO_HOUR",
        21_600 => "SIX_HOUR",
        86_400 => "ONE_DAY",
        _ => return None,
    })
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Every value of a filter, whether repeated (`a=1&a=2`) or comma-separated (`a=1,2`).
fn multi(pairs: &[(String, String)], name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == name || k == &format!("{name}[]"))
        .flat_map(|(_, v)| v.split(','))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn int_param(pairs: &[(String, String)], name: &str) -> Result<Option<i64>, Reply> {
    match param(pairs, name) {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| bad_request(format!("{name} must be an integer"))),
    }
}

fn candles(sim: &Sim, id: &str, req: &Request) -> Reply {
    if !sim.ex.has_product(id) {
        return error(404, "NOT_FOUND", format!("product {id} not found"));
    }
    let q = req.query_pairs();
    let g = sim.ex.granularity;
    let want = granularity_name(g).unwrap_or("UNKNOWN_GRANULARITY");
    match param(&q, "granularity") {
        Some(name) if name == want => {}
        Some(name) => {
            return bad_request(format!("granularity {name} is not served: the data is {want} ({g} s)"));
        }
        None => return bad_request(format!("granularity is required ({want})")),
    }
    let (start, end) = match (int_param(&q, "start"), int_param(&q, "end")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    let end = end.unwrap_or_else(|| sim.ex.now());
    let start = start.unwrap_or(end.saturating_sub(g.saturating_mul(MAX_CANDLES - 1)));
    if start > end {
        return bad_request("start must not be after end");
    }
    if end.checked_sub(start).is_none_or(|span| span / g > MAX_CANDLES) {
        return bad_request(format!("number of candles requested should be less than {MAX_CANDLES}"));
    }
    let limit = match int_param(&q, "limit") {
        Ok(l) => l.unwrap_or(MAX_CANDLES).clamp(1, MAX_CANDLES) as usize,
        Err(r) => return r,
    };
    let list: Vec<Value> =
        sim.ex.candles(id, start, end).iter().rev().take(limit).map(views::candle).collect();
    send(200, json!({"candles": list}))
}

/// Offset-cursor paging: the cursor is opaque to clients, an index to us.
fn page<T: Clone>(items: &[T], q: &[(String, String)]) -> Result<(Vec<T>, bool, String), Reply> {
    let limit = int_param(q, "limit")?.map_or(DEFAULT_PAGE, |l| l.clamp(1, MAX_PAGE as i64) as usize);
    let from = match param(q, "cursor") {
        None | Some("") => 0,
        Some(c) => c.parse::<usize>().map_err(|_| bad_request("cursor is not one this server issued"))?,
    };
    let from = from.min(items.len());
    let to = (from + limit).min(items.len());
    let has_next = to < items.len();
    Ok((items[from..to].to_vec(), has_next, if has_next { to.to_string() } else { String::new() }))
}

fn accounts(sim: &mut Sim, req: &Request) -> Reply {
    let q = req.query_pairs();
    let currencies: Vec<String> = sim.ex.balances.keys().cloned().collect();
    let mut all = Vec::new();
    for ccy in currencies {
        let uuid = sim.account_ids.entry(ccy.clone()).or_insert_with(crate::auth::uuid_v4).clone();
        let hold = sim.ex.hold(&ccy);
        let available = sim.ex.available(&ccy);
        all.push(json!({
            "uuid": uuid, "name": format!("{ccy} Wallet"), "currency": ccy,
            "available_balance": {"value": d(available), "currency": ccy},
            "default": false, "active": true, "type": if ccy == "USD" { "ACCOUNT_TYPE_FIAT" } else { "ACCOUNT_TYPE_CRYPTO" },
            "ready": true, "hold": {"value": d(hold), "currency": ccy},
        }));
    }
    match page(&all, &q) {
        Ok((items, has_next, cursor)) => {
            let size = items.len();
            send(200, json!({"accounts": items, "has_next": has_next, "cursor": cursor, "size": size}))
        }
        Err(r) => r,
    }
}

fn parse_body(req: &Request) -> Result<Value, Reply> {
    serde_json::from_slice(&req.body).map_err(|e| bad_request(format!("body is not JSON: {e}")))
}

fn dec_field(v: &Value, name: &str) -> Result<Decimal, Reply> {
    let s = v[name].as_str().ok_or_else(|| bad_request(format!("{name} must be a decimal string")))?;
    Decimal::from_str(s).map_err(|_| bad_request(format!("{name} {s:?} is not a decimal this venue accepts")))
}

fn parse_order(v: &Value) -> Result<NewOrder, Reply> {
    let text = |name: &str| {
        v[name].as_str().map(str::to_string).ok_or_else(|| bad_request(format!("{name} is required")))
    };
    let client_order_id = text("client_order_id")?;
    if client_order_id.is_empty() || client_order_id.len() > 128 {
        return Err(bad_request("client_order_id must be 1 to 128 characters"));
    }
    let product_id = text("product_id")?;
    let side = match text("side")?.as_str() {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        other => return Err(bad_request(format!("side {other:?} must be BUY or SELL"))),
    };
    let cfg =
        v["order_configuration"].as_object().ok_or_else(|| bad_request("order_configuration is required"))?;
    let (kind, base_size) = match (cfg.get("market_market_ioc"), cfg.get("limit_limit_gtc")) {
        (Some(m), None) if cfg.len() == 1 => {
            if m.get("quote_size").is_some() {
                return Err(bad_request("the simulator supports market_market_ioc with base_size only"));
            }
            (OrderKind::Market, dec_field(m, "base_size")?)
        }
        (None, Some(l)) if cfg.len() == 1 => {
            let post_only = match &l["post_only"] {
                Value::Null => false,
                Value::Bool(b) => *b,
                _ => return Err(bad_request("post_only must be a boolean")),
            };
            let price = dec_field(l, "limit_price")?;
            (OrderKind::Limit { price, post_only }, dec_field(l, "base_size")?)
        }
        _ => {
            return Err(bad_request(
                "order_configuration must hold exactly one of market_market_ioc, limit_limit_gtc",
            ));
        }
    };
    Ok(NewOrder { client_order_id, product_id, side, kind, base_size })
}

fn failure(error: &str, message: &str, preview: &str) -> Value {
    json!({"success": false, "failure_reason": "UNKNOWN_FAILURE_REASON", "order_id": "",
           "error_response": {"error": error, "message": message, "error_details": message,
                              "preview_failure_reason": preview}})
}

fn create_order(shared: &Shared, sim: &mut Sim, req: &Request) -> Reply {
    let parsed = parse_body(req).and_then(|v| parse_order(&v));
    let swallow = std::mem::take(&mut sim.faults.swallow_next_create);
    let stall = sim.faults.stall_next_create.take();
    let reply = match parsed {
        Err(r) => r,
        Ok(new) => match sim.faults.take_reject() {
            Some(r) => send(200, failure(&r.error, &r.message, "UNKNOWN_PREVIEW_FAILURE_REASON")),
            None => {
                let (product_id, side, coid) =
                    (new.product_id.clone(), new.side, new.client_order_id.clone());
                match sim.ex.place(new) {
                    Ok(Placed::Created(id) | Placed::Existing(id)) => send(
                        200,
                        json!({"success": true, "order_id": id, "success_response": {
                            "order_id": id, "product_id": product_id, "side": side.as_str(), "client_order_id": coid},
                            "order_configuration": sim.ex.order(&id).map(views::order_configuration)}),
                    ),
                    Err(rej) => send(200, failure(&rej.error, &rej.message, &rej.preview_failure_reason)),
                }
            }
        },
    };
    shared.publish(sim);
    match stall {
        Some(secs) => Reply::Stall(std::time::Duration::from_secs(secs)),
        None if swallow => Reply::Swallow,
        None => reply,
    }
}

fn batch_cancel(sim: &mut Sim, req: &Request) -> Reply {
    let v = match parse_body(req) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let Some(ids) = v["order_ids"].as_array() else {
        return bad_request("order_ids must be an array");
    };
    let race = std::mem::take(&mut sim.faults.cancel_races_fill);
    let mut results = Vec::new();
    for id in ids {
        let Some(id) = id.as_str() else {
            return bad_request("order_ids must be strings");
        };
        if race {
            // The fill lands first; the cancel then finds nothing open.
            sim.ex.fill_now(id);
        }
        results.push(match sim.ex.cancel(id) {
            Ok(()) => {
                json!({"success": true, "failure_reason": "UNKNOWN_CANCEL_FAILURE_REASON", "order_id": id})
            }
            Err(reason) => json!({"success": false, "failure_reason": reason, "order_id": id}),
        });
    }
    send(200, json!({"results": results}))
}

fn list_orders(sim: &Sim, req: &Request) -> Reply {
    let q = req.query_pairs();
    let statuses = multi(&q, "order_status");
    let products = multi(&q, "product_ids");
    let ids = multi(&q, "order_ids");
    let side = param(&q, "order_side");
    // Newest first, as Coinbase lists them.
    let all: Vec<Value> = sim
        .ex
        .orders()
        .iter()
        .rev()
        .filter(|o| statuses.is_empty() || statuses.iter().any(|s| s == o.status.as_str()))
        .filter(|o| products.is_empty() || products.contains(&o.product_id))
        .filter(|o| ids.is_empty() || ids.contains(&o.order_id))
        .filter(|o| side.is_none_or(|s| s == o.side.as_str()))
        .map(views::order)
        .collect();
    match page(&all, &q) {
        Ok((items, has_next, cursor)) => {
            send(200, json!({"orders": items, "has_next": has_next, "cursor": cursor}))
        }
        Err(r) => r,
    }
}

fn list_fills(sim: &Sim, req: &Request) -> Reply {
    let q = req.query_pairs();
    let orders = multi(&q, "order_ids");
    let products = multi(&q, "product_ids");
    let since = match param(&q, "start_sequence_timestamp") {
        None | Some("") => None,
        Some(t) => match clock::parse(t) {
            Some(k) => Some(k),
            None => return bad_request("start_sequence_timestamp must be RFC3339 UTC"),
        },
    };
    let all: Vec<Value> = sim
        .ex
        .fills()
        .iter()
        .rev()
        .filter(|f| orders.is_empty() || orders.contains(&f.order_id))
        .filter(|f| products.is_empty() || products.contains(&f.product_id))
        .filter(|f| since.is_none_or(|s| f.sequence_key() >= s))
        .map(views::fill)
        .collect();
    match page(&all, &q) {
        Ok((items, has_next, cursor)) => {
            send(200, json!({"fills": items, "has_next": has_next, "cursor": cursor}))
        }
        Err(r) => r,
    }
}

fn sim_route(shared: &Shared, req: &Request, rest: &str) -> Reply {
    match (req.method.as_str(), rest) {
        ("POST", "advance") => {
            let bars = if req.body.iter().all(u8::is_ascii_whitespace) {
                1
            } else {
                match parse_body(req) {
                    Ok(v) => match &v["bars"] {
                        Value::Null => 1,
                        b => match b.as_u64() {
                            Some(n) if n <= 1_000_000 => n,
                            _ => return bad_request("bars must be a count up to 1000000"),
                        },
                    },
                    Err(r) => return r,
                }
            };
            let mut sim = shared.lock();
            let mut advanced = 0;
            while advanced < bars && sim.ex.advance().is_ok() {
                advanced += 1;
                // Per bar, so subscribers see each candle close with its own fills.
                shared.publish(&mut sim);
            }
            let now = sim.ex.now();
            if advanced < bars {
                return send(
                    409,
                    json!({"error": "NO_MORE_DATA", "message": "candle data exhausted",
                                        "now": now, "advanced": advanced}),
                );
            }
            send(200, json!({"now": now, "advanced": advanced}))
        }
        ("POST", "faults") => {
            let f = match FaultRequest::parse(&req.body) {
                Ok(f) => f,
                Err(e) => return bad_request(e),
            };
            let mut sim = shared.lock();
            // Validate the drift before touching anything, so a bad body changes nothing.
            for (ccy, amt) in &f.balance_drift {
                let cur = sim.ex.balances.get(ccy).copied().unwrap_or_default();
                // Bounded well inside Decimal's range so later fills cannot overflow.
                if cur.checked_add(*amt).is_none_or(|b| b.abs() > MAX_BALANCE) {
                    return bad_request(format!(
                        "balance_drift.{ccy} would put the balance beyond {MAX_BALANCE}"
                    ));
                }
            }
            for (ccy, amt) in f.balance_drift {
                *sim.ex.balances.entry(ccy).or_default() += amt;
            }
            if let Some(r) = f.reject_next {
                sim.faults.reject_next = Some(r);
            }
            if let Some(n) = f.rate_limit_next {
                sim.faults.rate_limit_next = n;
            }
            if let Some(p) = f.partial_fill_next {
                sim.ex.partial_fill_next = Some(p);
            }
            if let Some(b) = f.swallow_next_create {
                sim.faults.swallow_next_create = b;
            }
            if let Some(secs) = f.stall_next_create {
                sim.faults.stall_next_create = Some(secs);
            }
            if let Some(b) = f.cancel_races_fill {
                sim.faults.cancel_races_fill = b;
            }
            if f.skip_ws_seq {
                shared.hub.skip_seq.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            let dropped = if f.drop_ws { shared.hub.drop_all() } else { 0 };
            let mut armed = sim.faults.to_json();
            armed["partial_fill_next"] = json!(sim.ex.partial_fill_next.map(d));
            armed["ws_connections_dropped"] = json!(dropped);
            send(200, armed)
        }
        ("GET", "account") => {
            let sim = shared.lock();
            let balances: serde_json::Map<String, Value> =
                sim.ex.balances.iter().map(|(k, v)| (k.clone(), json!(d(*v)))).collect();
            let holds: serde_json::Map<String, Value> =
                sim.ex.balances.keys().map(|k| (k.clone(), json!(d(sim.ex.hold(k))))).collect();
            let orders: Vec<Value> = sim.ex.orders().iter().map(views::order).collect();
            let fills: Vec<Value> = sim.ex.fills().iter().map(views::fill).collect();
            let open = sim.ex.orders().iter().filter(|o| o.status == Status::Open).count();
            send(
                200,
                json!({"now": sim.ex.now(), "balances": balances, "holds": holds,
                             "open_orders": open, "orders": orders, "fills": fills}),
            )
        }
        _ => error(404, "NOT_FOUND", format!("no route {} {}", req.method, req.path)),
    }
}
