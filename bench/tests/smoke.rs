//! The benchmark itself, at small sizes: it runs the real host on every
//! scenario, the native floor agrees with the sandboxed chain trade for
//! trade, and the figures it reports add up.

use strata_bench::suite::{self, Options, repo};

#[test]
fn the_benchmark_runs_every_scenario_and_native_matches_wasm() {
    let work = repo().join("target/bench-smoke");
    let _ = std::fs::remove_dir_all(&work);
    let options = Options { runs: 1, quick: true, json: work.join("chain.json"), work };
    let report = suite::run(&options).expect("the benchmark runs");

    assert!(report.agrees(), "native and sandboxed chains made different trades");
    assert_eq!(report.scenarios.len(), 5);
    for s in &report.scenarios {
        assert_eq!(s.bars, s.scenario.symbols as u64 * s.scenario.bars_per_symbol, "{}", s.scenario.name);
        assert!(s.trades > 0, "{}: the reference strategy trades on every series", s.scenario.name);
        assert!(s.wasm_bars_per_second.median > 0.0 && s.native_bars_per_second.median > 0.0);
        assert!(s.peak_rss_mb.median > 1.0, "{}: peak memory is measured", s.scenario.name);
    }
    // The generated series written out as CSV and read back is the same run.
    assert_eq!(report.scenarios[0].trades, report.scenarios[1].trades);
    assert_eq!(report.scenarios[0].final_equity, report.scenarios[1].final_equity);
    // The thread count changes no result.
    assert_eq!(report.scenarios[3].final_equity, report.scenarios[4].final_equity);

    // Slices are called per batch, sizing and execution only when there is
    // work: far fewer boundary crossings than bars.
    let calls = |slice: &str| report.slices.iter().find(|r| r.slice == slice).unwrap().calls_per_bar;
    for batched in ["data", "analysis", "regime", "strategy"] {
        assert!(calls(batched) < 0.01, "{batched}: {} calls per bar", calls(batched));
    }
    assert!(calls("sizing") < 0.2 && calls("execution") < 0.3);

    assert!(
        report.start_up.cold_load_ms.median > report.start_up.warm_load_ms.median,
        "the cache makes start-up faster"
    );
    let text = suite::render(&report);
    for heading in ["End to end", "Where a bar's time goes", "Start-up", "Targets:"] {
        assert!(text.contains(heading), "{heading} missing from:\n{text}");
    }
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    assert_eq!(json["scenarios"][4]["symbols"], 100);
    assert!(json["scenarios"][0]["wasm_bars_per_second"]["median"].as_f64().unwrap() > 0.0);
}
