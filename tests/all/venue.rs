//! Execution algorithms (`strata:plugin/venue`): an execution slice that
//! works each order by placing child orders at the host's venue. In a
//! backtest the venue is the simulator the config names; the fills are the
//! venue's, checked here against the data file, and a slice cannot place
//! more than it was given, fill its own orders, or reach another order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rust_decimal::Decimal;
use strata_tests::reference::{dec, parse_ts, read_csv};
use strata_tests::*;

const SYMBOL: &str = "BTC-USD-1d";

/// The reference chain, its orders worked by `plugin` at the reference simulator.
fn with_algorithm(plugin: &str, settings: &str) -> ConfigFile {
    ConfigFile::reference(&shared_data()).slice("execution", |s| {
        s.plugin = component(plugin);
        s.config = settings.into();
        s.extra.push(format!(
            "venue = {{ plugin = {:?}, config = {{ fill = \"next-open\", taker-fee-bps = 10 }} }}",
            component("sim-execution").display().to_string()
        ));
    })
}

fn run(config: &ConfigFile, dir: &Path, name: &str) -> (Ran, PathBuf) {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).unwrap();
    let path = config.write(&sub);
    let out = sub.join("run");
    let ran = host(&[
        "run",
        "--symbols",
        SYMBOL,
        "--config",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    (ran, out)
}

/// A CSV file's rows as maps from column to text (no quoted commas in these columns).
fn csv_rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    lines
        .map(|l| {
            let mut fields: Vec<String> = l.splitn(header.len(), ',').map(str::to_owned).collect();
            fields.resize(header.len(), String::new());
            header.iter().map(|h| h.to_string()).zip(fields).collect()
        })
        .collect()
}

fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

#[test]
fn a_twap_algorithm_splits_each_order_into_children_the_simulated_venue_fills_at_later_opens() {
    let dir = tempdir();
    let config = with_algorithm("twap-execution", "slices = 4, interval-bars = 1");
    let (ran, out) = run(&config, dir.path(), "twap");
    assert!(ran.ok(), "{}", ran.stderr);

    let bars = read_csv(&shared_data().join(format!("{SYMBOL}.csv")));
    let index: BTreeMap<i64, usize> = bars.iter().enumerate().map(|(i, b)| (b.ts, i)).collect();
    let orders = csv_rows(&out.join("orders.csv"));
    let fills = csv_rows(&out.join("fills.csv"));
    let filled: Vec<_> = orders.iter().filter(|o| o["status"] == "filled").collect();
    assert!(filled.len() >= 10, "too few orders to tell: {}", filled.len());
    for order in &filled {
        let mine: Vec<_> = fills.iter().filter(|f| f["order_id"] == order["id"]).collect();
        assert_eq!(mine.len(), 4, "order {} has {} fills, not 4 children", order["id"], mine.len());
        // Children of Q/4 rounded down to 8 decimals; the last takes the rest.
        let qty = d(&order["qty"]);
        let slice =
            (qty / Decimal::from(4)).round_dp_with_strategy(8, rust_decimal::RoundingStrategy::ToZero);
        let made_on = index[&parse_ts(&order["created_ts"])];
        for (n, fill) in mine.iter().enumerate() {
            let expected_qty = if n == 3 { qty - slice * Decimal::from(3) } else { slice };
            assert_eq!(d(&fill["qty"]), expected_qty, "child {} of order {}", n + 1, order["id"]);
            // Child n is placed on bar t+n and fills at the open of bar t+n+1.
            let bar = &bars[made_on + n + 1];
            assert_eq!(parse_ts(&fill["ts"]), bar.ts, "child {} of order {}", n + 1, order["id"]);
            let price = d(&fill["price"]);
            assert_eq!(price, dec(bar.open), "child {} of order {} at the open", n + 1, order["id"]);
            assert_eq!(d(&fill["fee"]), price * expected_qty * Decimal::from(10) / Decimal::from(10_000));
        }
        let total: Decimal = mine.iter().map(|f| d(&f["qty"])).sum();
        assert_eq!(total, qty, "order {}", order["id"]);
        assert_eq!(parse_ts(&order["closed_ts"]), bars[made_on + 4].ts, "closed with its last child");
    }
    let summary = read_summary(&out);
    let model = summary["fill_model"]["BTC-USD-1d"].as_str().or(summary["fill_model"].as_str());
    let text = summary.to_string();
    assert!(
        text.contains("TWAP: each order split into 4 child orders") && text.contains("at the venue: "),
        "the summary names the algorithm and the venue's fill model: {model:?}"
    );

    let venue = &summary["slices"]["execution"]["venue"];
    assert_eq!(venue["name"], "sim-execution", "summary.json names the simulated venue: {summary:#}");
    assert_eq!(venue["sha256"].as_str().map(str::len), Some(64), "{venue:#}");
    assert_eq!(venue["settings"]["taker-fee-bps"], 10.0, "{venue:#}");

    // Deterministic: the same inputs give the same orders and fills, byte for byte.
    let (again, out2) = run(&config, dir.path(), "again");
    assert!(again.ok(), "{}", again.stderr);
    for file in ["orders.csv", "fills.csv", "trades.csv", "equity.csv"] {
        assert_eq!(
            std::fs::read(out.join(file)).unwrap(),
            std::fs::read(out2.join(file)).unwrap(),
            "{file} differs between two identical runs"
        );
    }
}

#[test]
fn one_child_per_order_at_the_simulator_trades_exactly_as_the_simulator_alone() {
    let dir = tempdir();
    let (alone, alone_out) = run(&ConfigFile::reference(&shared_data()), dir.path(), "alone");
    assert!(alone.ok(), "{}", alone.stderr);
    let (algo, algo_out) =
        run(&with_algorithm("twap-execution", "slices = 1, interval-bars = 1"), dir.path(), "algo");
    assert!(algo.ok(), "{}", algo.stderr);
    for file in ["orders.csv", "fills.csv", "trades.csv", "equity.csv"] {
        assert_eq!(
            std::fs::read_to_string(alone_out.join(file)).unwrap(),
            std::fs::read_to_string(algo_out.join(file)).unwrap(),
            "{file}: the venue's fills of one child per order must be the simulator's fills"
        );
    }
}

fn hostile(attack: &str) -> (Ran, PathBuf, tempfile::TempDir) {
    let dir = tempdir();
    let config = with_algorithm("hostile-venue", &format!("attack = \"{attack}\""))
        .slice("execution", |s| s.extra.push("limits.deadline-ms = 300".into()));
    let (ran, out) = run(&config, dir.path(), attack);
    (ran, out, dir)
}

#[test]
fn the_host_refuses_children_beyond_the_order_orders_it_never_gave_and_fills_the_slice_made_up() {
    let (ran, out, _dir) = hostile("oversize");
    ran.assert_fails_with(&[
        "execution slice hostile-venue 0.1.0",
        "symbol BTC-USD-1d",
        "more than parent order 2 has left to place",
    ]);
    // The honest first order filled at the venue; nothing of the second did.
    let fills = csv_rows(&out.join("fills.csv"));
    assert!(!fills.is_empty() && fills.iter().all(|f| f["order_id"] == "1"), "{fills:?}");

    let (ran, _out, _dir) = hostile("foreign");
    ran.assert_fails_with(&["hostile-venue 0.1.0", "order 3 is not a working parent order"]);

    let (ran, out, _dir) = hostile("own-fill");
    ran.assert_fails_with(&[
        "hostile-venue 0.1.0",
        "reported a fill of order 2 itself",
        "gets its fills from the venue",
    ]);
    let fills = csv_rows(&out.join("fills.csv"));
    assert!(
        fills.iter().all(|f| f["order_id"] == "1" && f["price"] != "1"),
        "a made-up fill was booked: {fills:?}"
    );

    // Another chain's children, or ids never given, are not there to query.
    let (ran, _out, _dir) = hostile("probe");
    assert!(ran.ok() && !ran.stderr.contains("FOUND-FOREIGN-CHILDREN"), "{}", ran.stderr);

    // Time at the venue extends a call's deadline; a slice spinning on it does not.
    let (ran, _out, _dir) = hostile("spin");
    ran.assert_fails_with(&["hostile-venue 0.1.0", "ran past its deadline of 300 ms"]);
}

#[test]
fn an_algorithm_without_a_venue_and_a_venue_without_an_algorithm_are_named_in_the_config() {
    let dir = tempdir();
    let no_venue = ConfigFile::reference(&shared_data()).slice("execution", |s| {
        s.plugin = component("twap-execution");
        s.config = String::new();
    });
    let (ran, out) = run(&no_venue, dir.path(), "no-venue");
    ran.assert_fails_with(&[
        "slices.execution: twap-execution 0.1.0 works orders through strata:plugin/venue",
        "[slices.execution.venue]",
    ]);
    assert!(!out.join("orders.csv").exists(), "a refused config runs nothing");

    let needless = ConfigFile::reference(&shared_data()).slice("execution", |s| {
        s.extra.push(format!("venue = {{ plugin = {:?} }}", component("sim-execution").display().to_string()))
    });
    run(&needless, dir.path(), "needless").0.assert_fails_with(&[
        "slices.execution.venue: sim-execution 0.1.0 fills orders itself",
        "remove [slices.execution.venue]",
    ]);

    let bad_setting = with_algorithm("twap-execution", "").slice("execution", |s| {
        s.extra = vec![format!(
            "venue = {{ plugin = {:?}, config = {{ fil = \"next-open\" }} }}",
            component("sim-execution").display().to_string()
        )]
    });
    run(&bad_setting, dir.path(), "bad-setting")
        .0
        .assert_fails_with(&["slices.execution.venue.config.fil: sim-execution 0.1.0 has no setting `fil`"]);
}
