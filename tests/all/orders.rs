//! Realistic orders and the host's risk gate: limit and stop orders, fees,
//! slippage, a gate that binds, short selling, the kill switch; and the
//! ledger checked from the run's files at every bar.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;
use strata_tests::reference::{dec, parse_ts, read_csv};
use strata_tests::*;

const SYMBOLS: [&str; 2] = ["BTC-USD-1d", "ETH-USD-1d"];

fn d(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(str::to_owned).collect();
    lines
        .map(|line| {
            // Only the last column (a free-text reason) may contain quoted commas.
            let mut fields: Vec<String> = line.splitn(header.len(), ',').map(str::to_owned).collect();
            fields.resize(header.len(), String::new());
            header.iter().cloned().zip(fields).collect()
        })
        .collect()
}

/// A two-symbol run with limit entries, stop exits, maker/taker and fixed
/// fees, range slippage and intrabar fills, and risk limits that bind.
fn realistic(extra_risk: &[(&str, &str)], strategy: &str, shorting: bool) -> (Ran, tempfile::TempDir) {
    let dir = tempdir();
    let mut config = ConfigFile::reference(&shared_data())
        .slice("strategy", |s| s.config = strategy.into())
        .slice("sizing", |s| s.config = "fraction = 0.19".into())
        .slice("execution", |s| {
            s.config = "fill = \"intrabar\", taker-fee-bps = 10, maker-fee-bps = 5, fixed-fee = 1, slippage = \"range\", slippage-range-fraction = 0.05".into()
        });
    config.risk = vec![
        ("max-position-fraction".into(), "0.2".into()),
        ("max-gross-exposure".into(), "0.3".into()),
        ("max-daily-loss".into(), "0.02".into()),
    ];
    for (k, v) in extra_risk {
        config.risk.push((k.to_string(), v.to_string()));
    }
    let mut text = config.to_toml();
    if shorting {
        text += "\n[shorting]\nenabled = true\nborrow-bps-per-year = 500\n";
    }
    let path = dir.path().join("run.toml");
    std::fs::write(&path, text).unwrap();
    let out = dir.path().join("run");
    let ran = host(&[
        "run",
        "--symbols",
        &SYMBOLS.join(","),
        "--from",
        "2018-01-01",
        "--to",
        "2021-12-31",
        "--config",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    (ran, dir)
}

const LIMIT_IN_STOP_OUT: &str = "entry-order = \"limit\", entry-offset = 0.005, exit-order = \"stop\", exit-offset = 0.01, time-in-force = \"gtc\"";

/// Rebuilds cash and positions from fills.csv, and checks every row of
/// equity.csv: equity = cash + sum(quantity x close), exactly, and cash as the
/// fills leave it (less borrow costs when there are shorts: `borrowing`).
fn check_ledger_at_every_bar(out: &Path, borrowing: bool) -> usize {
    let closes: BTreeMap<&str, BTreeMap<i64, Decimal>> = SYMBOLS
        .iter()
        .map(|s| {
            (
                *s,
                read_csv(&shared_data().join(format!("{s}.csv")))
                    .into_iter()
                    .map(|b| (b.ts, dec(b.close)))
                    .collect(),
            )
        })
        .collect();
    let fills = rows(&out.join("fills.csv"));
    let mut fills = fills.iter().peekable();
    let (mut cash, mut positions) = (d("10000"), BTreeMap::<String, Decimal>::new());
    let mut checked = 0;
    for row in rows(&out.join("equity.csv")) {
        let ts = parse_ts(&row["timestamp"]);
        while let Some(f) = fills.peek().filter(|f| parse_ts(&f["ts"]) <= ts) {
            let (qty, price, fee) = (d(&f["qty"]), d(&f["price"]), d(&f["fee"]));
            let position = positions.entry(f["symbol"].clone()).or_default();
            if f["side"] == "buy" {
                cash -= qty * price + fee;
                *position += qty;
            } else {
                cash += qty * price - fee;
                *position -= qty;
            }
            fills.next();
        }
        let marked: Decimal = positions
            .iter()
            .map(|(symbol, qty)| {
                let close =
                    closes[symbol.as_str()].range(..=ts).next_back().map(|(_, c)| *c).unwrap_or_default();
                *qty * close
            })
            .sum();
        let (recorded_cash, recorded_equity) = (d(&row["cash"]), d(&row["equity"]));
        if borrowing {
            // Borrow costs of shorts are not fills: they are the only other cash movement.
            assert!(recorded_cash <= cash, "{}: cash {recorded_cash}, fills give {cash}", row["timestamp"]);
        } else {
            assert_eq!(recorded_cash, cash, "cash at {} is not what the fills leave", row["timestamp"]);
        }
        assert_eq!(
            recorded_equity,
            recorded_cash + marked,
            "equity != cash + marked positions at {}",
            row["timestamp"]
        );
        checked += 1;
    }
    assert!(fills.next().is_none(), "fills after the last equity row");
    checked
}

#[test]
fn limit_and_stop_orders_with_costs_and_a_binding_risk_gate_keep_the_ledger_exact() {
    let (ran, dir) = realistic(&[], LIMIT_IN_STOP_OUT, false);
    assert!(ran.ok(), "{ran:#?}");
    let out = dir.path().join("run");

    // cash + marked positions = equity, exactly, at every bar; and cash
    // never moved but by a fill (no borrow costs: long only).
    let bars = check_ledger_at_every_bar(&out, false);
    assert!(bars > 1400, "{bars} equity rows");
    let s = read_summary(&out);
    assert_eq!(s["borrow_paid"], "0");

    let orders = rows(&out.join("orders.csv"));
    let equity: BTreeMap<String, Decimal> = rows(&out.join("equity.csv"))
        .into_iter()
        .map(|r| (r["timestamp"].clone(), d(&r["equity"])))
        .collect();
    let bars_of: BTreeMap<&str, BTreeMap<i64, strata_tests::reference::Bar>> = SYMBOLS
        .iter()
        .map(|s| {
            (*s, read_csv(&shared_data().join(format!("{s}.csv"))).into_iter().map(|b| (b.ts, b)).collect())
        })
        .collect();

    // The gate bound, and every refusal says why.
    let refused: Vec<_> = orders.iter().filter(|o| o["status"] == "refused").collect();
    assert!(
        refused.iter().any(|o| o["reason"].contains("max-gross-exposure")),
        "the gross limit never bound"
    );
    for o in &refused {
        assert!(o["reason"].starts_with("\"risk gate: ") || o["reason"].starts_with("risk gate: "), "{o:?}");
    }
    // Limits and stops both filled, at prices a venue would give.
    let fills = rows(&out.join("fills.csv"));
    let order_of = |id: &str| orders.iter().find(|o| o["id"] == id).unwrap();
    let (mut limits, mut stops) = (0, 0);
    for f in &fills {
        let o = order_of(&f["order_id"]);
        let price = d(&f["price"]);
        let bar = &bars_of[f["symbol"].as_str()][&parse_ts(&f["ts"])];
        assert!(dec(bar.low) <= price && price <= dec(bar.high), "fill outside its bar: {f:?}");
        match o["type"].as_str() {
            "limit" => {
                limits += 1;
                assert!(price <= d(&o["limit_price"]), "a buy limit filled above its limit: {f:?}");
                assert!(d(&f["fee"]) > Decimal::ZERO);
            }
            "stop" => {
                stops += 1;
                assert!(price <= d(&o["stop_price"]), "a sell stop filled above its stop: {f:?}");
            }
            other => panic!("unexpected order type {other}"),
        }
    }
    assert!(limits > 5 && stops > 5, "{limits} limit fills, {stops} stop fills");
    // No entry above the position limit: 20% of equity when the order was made.
    for o in orders.iter().filter(|o| o["side"] == "buy" && o["status"] != "refused") {
        let notional = d(&o["qty"]) * d(&o["limit_price"]);
        let limit = equity[&o["created_ts"]] * d("0.2");
        assert!(notional <= limit, "order {} is {notional}, over 20% of equity ({limit})", o["id"]);
    }
    // Every position's life, in order.
    let mut lives: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in rows(&out.join("positions.csv")) {
        lives.entry(p["position_id"].clone()).or_default().push(p["state"].clone());
    }
    for (id, states) in &lives {
        assert_eq!(states[0], "opened", "position {id}: {states:?}");
        let open_at_end = s["open_positions"].as_array().unwrap().len();
        if states.last().unwrap() != "closed" {
            assert!(open_at_end > 0, "position {id} never closed: {states:?}");
        }
        assert!(states.iter().filter(|s| *s == "closed").count() <= 1);
        assert!(states.windows(2).all(|w| w[0] != w[1]), "position {id} repeats a state: {states:?}");
    }
    assert!(
        lives.values().any(|s| s.contains(&"closing".to_owned()) && s.contains(&"monitoring".to_owned()))
    );
    // The summary says how orders filled and what they cost.
    let model = s["execution"]["fill_model"].as_str().unwrap();
    assert!(
        model.contains("open-low-high-close")
            && model.contains("maker 5 bps")
            && model.contains("plus 1 per order"),
        "{model}"
    );
}

#[test]
fn the_drawdown_kill_switch_closes_everything_and_stops() {
    let (ran, dir) = realistic(&[("max-drawdown", "0.02")], LIMIT_IN_STOP_OUT, false);
    assert_eq!(ran.code, Some(3), "{ran:#?}");
    assert!(ran.stdout.contains("RISK STOP"), "{}", ran.stdout);
    let out = dir.path().join("run");
    let s = read_summary(&out);
    assert_eq!(s["status"], "stopped-by-risk");
    assert!(s["risk_stop"].as_str().unwrap().contains("drawdown kill switch"));
    assert_eq!(s["open_positions"].as_array().unwrap().len(), 0, "positions left open");
    check_ledger_at_every_bar(&out, false);
    // The host closed what was open, at the next bars.
    let orders = rows(&out.join("orders.csv"));
    assert!(
        orders
            .iter()
            .any(|o| o["reason"].contains("host liquidation") && o["reason"].contains("kill switch"))
    );
}

#[test]
fn the_daily_loss_limit_can_close_every_position_and_trading_resumes_the_next_day() {
    let (ran, dir) = realistic(&[("daily-loss-closes", "true")], LIMIT_IN_STOP_OUT, false);
    assert!(ran.ok(), "{ran:#?}");
    let out = dir.path().join("run");
    check_ledger_at_every_bar(&out, false);
    let orders = rows(&out.join("orders.csv"));
    let closes: Vec<_> =
        orders.iter().filter(|o| o["reason"].starts_with("host liquidation: max-daily-loss")).collect();
    assert!(!closes.is_empty(), "no position was closed by the daily-loss limit");
    assert!(closes.iter().all(|o| o["status"] == "filled"), "{closes:?}");
    // Trading goes on: strategy orders fill after the first daily close.
    let first = &closes[0]["created_ts"];
    assert!(
        orders.iter().any(|o| !o["reason"].starts_with("host liquidation")
            && o["status"] == "filled"
            && &o["created_ts"] > first),
        "nothing traded after the first daily close"
    );
    // Long only: no decision on the closing bar sold what the host was closing.
    let mut held: BTreeMap<String, Decimal> = BTreeMap::new();
    for f in rows(&out.join("fills.csv")) {
        let q = held.entry(f["symbol"].clone()).or_default();
        *q += if f["side"] == "buy" { d(&f["qty"]) } else { -d(&f["qty"]) };
        assert!(*q >= Decimal::ZERO, "{} went short at {}", f["symbol"], f["ts"]);
    }
    // Without `daily-loss-closes` the same limit closes nothing.
    let (ran, dir) = realistic(&[], LIMIT_IN_STOP_OUT, false);
    assert!(ran.ok(), "{ran:#?}");
    let plain = rows(&dir.path().join("run").join("orders.csv"));
    assert!(!plain.iter().any(|o| o["reason"].contains("max-daily-loss")), "closed without being asked");
}

#[test]
fn short_selling_is_refused_unless_enabled_and_then_pays_borrow() {
    let short_strategy = "side = \"short\"";
    let (ran, dir) = realistic(&[], short_strategy, false);
    assert!(ran.ok(), "{ran:#?}");
    let s = read_summary(&dir.path().join("run"));
    assert_eq!(s["trade_count"], 0);
    assert!(
        s["refusals"]["short selling is not enabled (the run is long-only; see [shorting])"].as_u64()
            > Some(0)
    );

    let (ran, dir) = realistic(&[], short_strategy, true);
    assert!(ran.ok(), "{ran:#?}");
    let out = dir.path().join("run");
    let s = read_summary(&out);
    assert!(s["trade_count"].as_u64().unwrap() > 3, "{:#}", s["refusals"]);
    assert!(summary_decimal(&s, "borrow_paid") > Decimal::ZERO);
    let trades = std::fs::read_to_string(out.join("trades.csv")).unwrap();
    assert!(trades.lines().skip(1).all(|l| l.contains(",short,")), "{trades}");
    check_ledger_at_every_bar(&out, true);
}

#[test]
fn a_fill_at_an_open_that_lies_halfway_between_two_decimals_is_inside_its_bar() {
    // BTC-USD-1d opens 2015-04-10 at 243.694000244140625 (an f32 value),
    // exactly halfway between the 17-digit decimals ...062 and ...063; that
    // open is also the bar's high. The slice and the host must name it alike,
    // or the host takes the fill for one above the high and halts the run.
    let dir = tempdir();
    let config = ConfigFile::reference(&shared_data())
        .slice("analysis", |s| s.config = "fast = 17, slow = 80".into())
        .slice("sizing", |s| s.config = "fraction = 0.304943".into())
        .write(dir.path());
    let out = dir.path().join("run");
    let ran = host(&[
        "run",
        "--symbols",
        "BTC-USD-1d",
        "--from",
        "2014-09-18",
        "--to",
        "2016-09-16",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ran.ok(), "{ran:#?}");
    let fill = rows(&out.join("fills.csv")).into_iter().find(|f| f["ts"] == "2015-04-10T00:00:00Z");
    let fill = fill.expect("a fill at the open of 2015-04-10");
    assert_eq!(fill["price"], "243.69400024414062", "the same digits as the host's own price of that open");
}
