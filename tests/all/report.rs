//! What a run tells its reader: the metrics in summary.json (checked against
//! an independent computation from the run's own CSV files and the data),
//! report.html rendered by headless Chromium (charts drawn, no console
//! output), the screenshot, and the output modes for people and scripts.

use std::path::{Path, PathBuf};
use std::process::Command;

use rust_decimal::Decimal;
use strata_tests::*;

fn run_into(out: &Path, symbols: &str, extra: &[&str]) -> PathBuf {
    let config = ConfigFile::reference(&shared_data()).write(out);
    let run_dir = out.join("run");
    let (config, run) = (config.display().to_string(), run_dir.display().to_string());
    let mut args = vec!["run", "--symbols", symbols, "--config", &config, "--out", &run];
    args.extend(extra);
    let ran = host(&args);
    assert!(ran.ok(), "{ran:#?}");
    run_dir
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Days since the epoch of `2014-09-18T00:00:00Z` or `2014-09-18`.
pub(crate) fn day_number(ts: &str) -> f64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let mut days = days_from_civil(n(0..4), n(5..7), n(8..10)) as f64;
    if ts.len() >= 19 {
        days += (n(11..13) * 3600 + n(14..16) * 60 + n(17..19)) as f64 / 86_400.0;
    }
    days
}

/// (day, equity) rows of equity.csv.
fn equity_rows(run: &Path) -> Vec<(f64, f64)> {
    let text = std::fs::read_to_string(run.join("equity.csv")).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (day_number(f[0]), f[2].parse().unwrap())
        })
        .collect()
}

/// (first close, last close) of a shared data file.
fn first_and_last_close(file: &str) -> (f64, f64) {
    let text = std::fs::read_to_string(shared_data().join(file)).unwrap();
    let closes: Vec<f64> =
        text.lines().skip(1).map(|l| l.split(',').nth(4).unwrap().parse().unwrap()).collect();
    (closes[0], closes[closes.len() - 1])
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn dec(v: &serde_json::Value, key: &str) -> Decimal {
    v[key].as_str().unwrap_or_else(|| panic!("{key} missing in {v}")).parse().unwrap()
}

/// Summary figures are rounded to 4 decimal places.
fn assert_near(got: f64, want: f64, what: &str) {
    assert!((got - want).abs() <= 1.5e-4, "{what}: summary says {got}, independent computation {want}");
}

#[test]
fn reference_run_metrics_match_an_independent_computation() {
    let out = tempdir();
    let run = run_into(out.path(), "BTC-USD-1d", &[]);
    let summary = read_summary(&run);
    let m = &summary["metrics"]["portfolio"];

    // Return figures from equity.csv: BTC-USD-1d has every day, so 365.25 bars a year.
    let rows = equity_rows(&run);
    let start = 10_000.0;
    let years = (rows[rows.len() - 1].0 - rows[0].0) / 365.25;
    let per_year = (rows.len() - 1) as f64 / years;
    assert_near(
        summary["metrics"]["conventions"]["periods_per_year"].as_f64().unwrap(),
        365.25,
        "bars per year",
    );
    let last = rows[rows.len() - 1].1;
    assert_near(num(m, "total_return_pct"), (last / start - 1.0) * 100.0, "total return");
    let cagr = (last / start).powf(1.0 / years) - 1.0;
    assert_near(num(m, "cagr_pct"), cagr * 100.0, "CAGR");
    let returns: Vec<f64> = rows.windows(2).map(|w| w[1].1 / w[0].1 - 1.0).collect();
    let mean = returns.iter().sum::<f64>() / returns.len() as f64;
    let var = returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (returns.len() - 1) as f64;
    assert_near(num(m, "volatility_pct"), var.sqrt() * per_year.sqrt() * 100.0, "volatility");
    assert_near(num(m, "sharpe"), mean / var.sqrt() * per_year.sqrt(), "Sharpe");
    let downside = (returns.iter().map(|r| r.min(0.0).powi(2)).sum::<f64>() / returns.len() as f64).sqrt();
    assert_near(num(m, "sortino"), mean / downside * per_year.sqrt(), "Sortino");
    let (mut peak, mut max_dd) = (start, 0.0f64);
    for (_, e) in &rows {
        peak = peak.max(*e);
        max_dd = max_dd.max(1.0 - e / peak);
    }
    assert_near(num(m, "max_drawdown_pct"), max_dd * 100.0, "max drawdown");
    assert_near(num(m, "calmar"), cagr / max_dd, "Calmar");
    assert!(num(m, "longest_drawdown_days") >= num(&m["max_drawdown_episode"], "duration_days"));

    // Trade figures from trades.csv, to the last decimal where they are sums.
    let trades = read_trades(&run);
    let wins: Vec<Decimal> = trades.iter().map(|t| t.pnl).filter(|p| *p > Decimal::ZERO).collect();
    let losses: Vec<Decimal> = trades.iter().map(|t| t.pnl).filter(|p| *p < Decimal::ZERO).collect();
    assert_eq!(m["trades"].as_u64().unwrap() as usize, trades.len());
    assert_eq!(m["trades"], summary["trade_count"]);
    assert_eq!(
        (m["wins"].as_u64().unwrap() as usize, m["losses"].as_u64().unwrap() as usize),
        (wins.len(), losses.len())
    );
    assert_near(num(m, "win_rate_pct"), wins.len() as f64 / trades.len() as f64 * 100.0, "win rate");
    let gross_profit: Decimal = wins.iter().sum();
    let gross_loss: Decimal = losses.iter().sum();
    assert_eq!(dec(m, "gross_profit"), gross_profit);
    assert_eq!(dec(m, "gross_loss"), gross_loss);
    let pf: f64 = (gross_profit / -gross_loss).to_string().parse().unwrap();
    assert_near(num(m, "profit_factor"), pf, "profit factor");
    assert_eq!(dec(m, "average_win"), (gross_profit / Decimal::from(wins.len())).round_dp(8));
    // No position is open at the end, so every fee belongs to a round trip.
    let fees: Decimal = trades.iter().map(|t| t.fees).sum();
    assert_eq!(dec(m, "fees_paid"), fees);
    assert_eq!(dec(m, "fees_paid"), summary_decimal(&summary, "fees_paid"));

    // Exposure: a position is open at the close of every day from its entry
    // fill up to the day before its exit fill (exits fill at the open).
    let held_days: f64 = trades.iter().map(|t| day_number(&t.exit_ts) - day_number(&t.entry_ts)).sum();
    assert_near(num(m, "exposure_pct"), held_days / rows.len() as f64 * 100.0, "exposure");
    let notional: Decimal = trades.iter().map(|t| t.qty * (t.entry_price + t.exit_price)).sum();
    assert_eq!(dec(m, "traded_notional"), notional);
    let mean_equity = rows.iter().map(|r| r.1).sum::<f64>() / rows.len() as f64;
    let turnover = notional.to_string().parse::<f64>().unwrap() / mean_equity;
    assert_near(num(m, "turnover"), turnover, "turnover");

    // Buy and hold from the data file itself.
    let (first, last_close) = first_and_last_close("BTC-USD-1d.csv");
    let bench = &summary["metrics"]["benchmark"];
    assert_near(num(bench, "total_return_pct"), (last_close / first - 1.0) * 100.0, "buy-and-hold return");
    // One symbol: its sleeve is the portfolio.
    let sym = &summary["metrics"]["symbols"][0];
    assert_eq!(sym["symbol"], "BTC-USD-1d");
    assert_eq!(sym["total_return_pct"], m["total_return_pct"]);
    assert_eq!(sym["sharpe"], m["sharpe"]);
}

#[test]
fn two_symbols_split_into_sleeves_that_add_up() {
    let out = tempdir();
    let run = run_into(out.path(), "BTC-USD-1d,ETH-USD-1d", &[]);
    let summary = read_summary(&run);
    let metrics = &summary["metrics"];
    let symbols = metrics["symbols"].as_array().unwrap();
    assert_eq!(symbols.len(), 2);
    let trades = read_trades(&run);
    for s in symbols {
        let name = s["symbol"].as_str().unwrap();
        assert_eq!(dec(s, "allocation"), Decimal::from(5000), "{name}");
        let mine: Vec<_> = trades.iter().filter(|t| t.symbol == name).collect();
        assert_eq!(s["trades"].as_u64().unwrap() as usize, mine.len(), "{name}");
        assert_eq!(dec(s, "net_pnl"), mine.iter().map(|t| t.pnl).sum::<Decimal>(), "{name}");
        // The sleeve's own buy and hold, from the data file.
        let (first, last) = first_and_last_close(&format!("{name}.csv"));
        assert_near(num(&s["benchmark"], "total_return_pct"), (last / first - 1.0) * 100.0, name);
    }
    // Sleeves add up: fees and traded notional per symbol sum to the portfolio's.
    let sum = |key: &str| symbols.iter().map(|s| dec(s, key)).sum::<Decimal>();
    assert_eq!(sum("fees_paid"), dec(&metrics["portfolio"], "fees_paid"));
    assert_eq!(sum("traded_notional"), dec(&metrics["portfolio"], "traded_notional"));
    // The sleeves' final values add up to the final equity: stake x (1 + return).
    let final_equity: f64 = summary["final_equity"].as_str().unwrap().parse().unwrap();
    let sleeves: f64 = symbols.iter().map(|s| 5000.0 * (1.0 + num(s, "total_return_pct") / 100.0)).sum();
    assert!((sleeves - final_equity).abs() < 0.01 * 2.0, "sleeves {sleeves} vs equity {final_equity}");
    // Equal-weight buy and hold: half in each, ETH's half held from its own first close.
    let (b0, b1) = first_and_last_close("BTC-USD-1d.csv");
    let (e0, e1) = first_and_last_close("ETH-USD-1d.csv");
    let want = (0.5 * b1 / b0 + 0.5 * e1 / e0 - 1.0) * 100.0;
    assert_near(num(&metrics["benchmark"], "total_return_pct"), want, "portfolio buy-and-hold");
}

/// The DOM after scripts ran, and every console message the page produced.
struct Rendered {
    dom: String,
    console: Vec<String>,
}

fn chromium() -> PathBuf {
    let found = std::env::var_os("STRATA_CHROMIUM").map(PathBuf::from).or_else(|| {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path).map(|d| d.join("chromium")).find(|p| p.is_file())
    });
    found.expect("Chromium is missing: ./scripts/test.sh installs Debian's chromium package")
}

fn render(html: &Path) -> Rendered {
    let profile = tempdir();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    Rendered {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        // Chromium logs every console call and uncaught error as `...:CONSOLE...] "message"`.
        console: stderr.lines().filter(|l| l.contains(":CONSOLE")).map(str::to_owned).collect(),
    }
}

/// Asserts the page logged nothing and every chart has drawn lines.
fn check_renders(html: &Path) -> Result<String, String> {
    let page = render(html);
    if !page.console.is_empty() {
        return Err(format!("console output: {:?}", page.console));
    }
    let charts = page.dom.matches("<svg class=\"chart\"").count();
    if charts == 0 {
        return Err("no charts in the page".into());
    }
    let drawn = format!("data-charts-rendered=\"{charts}\"");
    if !page.dom.contains(&drawn) {
        return Err(format!("not every chart drew its lines (want {drawn})"));
    }
    Ok(page.dom)
}

#[test]
fn the_render_check_catches_script_errors_and_empty_charts() {
    let dir = tempdir();
    let broken = dir.path().join("broken.html");
    std::fs::write(&broken, "<!DOCTYPE html><html><body><script>notDefined();</script></body></html>")
        .unwrap();
    let err = check_renders(&broken).unwrap_err();
    assert!(err.contains("notDefined"), "{err}");
    // A real report whose equity line lost its points.
    let out = tempdir();
    let run = run_into(out.path(), "BTC-USD-1d", &["--from", "2024-01-01", "--quiet"]);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let start = html.find("<path class=\"line\" data-series=\"strategy\" d=\"").unwrap();
    let d_start = html[start..].find(" d=\"").unwrap() + start + 4;
    let d_end = html[d_start..].find('"').unwrap() + d_start;
    let empty = dir.path().join("empty.html");
    std::fs::write(&empty, format!("{}{}", &html[..d_start], &html[d_end..])).unwrap();
    let err = check_renders(&empty).unwrap_err();
    assert!(err.contains("not every chart drew"), "{err}");
}

/// Pixels of `report.png` within a small distance of an RGB colour.
fn count_pixels(png: &Path, rgb: [u8; 3]) -> (u32, u32, usize) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let near = buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|px| px.iter().zip(rgb).all(|(a, b)| (*a as i32 - b as i32).abs() <= 24))
        .count();
    (info.width, info.height, near)
}

#[test]
fn reference_report_renders_in_chromium_with_its_screenshot() {
    let out = tempdir();
    let run = run_into(out.path(), "BTC-USD-1d", &["--screenshot"]);
    let summary = read_summary(&run);
    let html_path = run.join("report.html");
    let html = std::fs::read_to_string(&html_path).unwrap();
    // Self-contained: nothing is fetched from anywhere. (URLs may appear as
    // text: the run's config, shown in full, has paper mode's feed address.)
    for remote in ["src=\"", "<link", "href=\"http", "url(", "@import", "fetch(", "XMLHttpRequest"] {
        assert!(!html.contains(remote), "report.html refers to {remote}");
    }
    let dom = check_renders(&html_path).unwrap_or_else(|e| panic!("{e}"));
    assert!(dom.contains("id=\"equity-chart\"") && dom.contains("data-rendered=\"yes\""));
    // The headline figures are the summary's.
    let m = &summary["metrics"]["portfolio"];
    let total = format!("{}%", group(num(m, "total_return_pct").round() as i64));
    assert!(dom.contains(&total), "headline lacks total return {total}");
    assert!(dom.contains(&format!("{:.2}", num(m, "sharpe"))));
    // Monthly table: every year of the data; trades table: every round trip.
    for year in 2014..=2025 {
        assert!(dom.contains(&format!("<tr><th>{year}</th>")), "monthly returns lack {year}");
    }
    let trades_table = &dom[dom.find("id=\"trades\"").unwrap()..];
    let trades_table = &trades_table[..trades_table.find("</table>").unwrap()];
    assert_eq!(trades_table.matches("<tr><td>").count(), read_trades(&run).len());
    // Inputs: each component's hash, the fill rule, the data grant.
    for (_, slice) in summary["slices"].as_object().unwrap() {
        assert!(dom.contains(slice["sha256"].as_str().unwrap()));
    }
    assert!(dom.contains(summary["execution"]["fill_model"].as_str().unwrap()));
    assert!(dom.contains("read /data = "));

    // The screenshot shows both lines in their colours.
    let (w, h, strategy) = count_pixels(&run.join("report.png"), [0x1f, 0x6f, 0xeb]);
    let (_, _, benchmark) = count_pixels(&run.join("report.png"), [0x9a, 0x67, 0x00]);
    assert_eq!((w, h), (1280, 2000));
    assert!(strategy > 1000 && benchmark > 1000, "strategy {strategy} px, buy-and-hold {benchmark} px");
}

fn group(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[test]
fn same_run_same_report_except_the_timing_line() {
    let (a, b) = (tempdir(), tempdir());
    let strip = |dir: &Path| {
        let html =
            std::fs::read_to_string(run_into(dir, "BTC-USD-1d,ETH-USD-1d", &["--quiet"]).join("report.html"))
                .unwrap();
        let html = html.replace(&dir.display().to_string(), "<dir>");
        html.lines().filter(|l| !l.contains("id=\"timing\"")).collect::<Vec<_>>().join("\n")
    };
    let (x, y) = (strip(a.path()), strip(b.path()));
    assert!(x == y, "report.html differs between identical runs");
    assert!(x.contains("By symbol") && x.contains("ETH-USD-1d"));
}

#[test]
fn long_runs_keep_the_report_small() {
    let out = tempdir();
    // 54,666 hourly bars (37,386 + 17,280) and over a thousand round trips.
    let run = run_into(out.path(), "BTC-USD-1h,ETH-USDT-binance-1h", &["--quiet"]);
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let summary = read_summary(&run);
    assert_eq!(summary["bars"], 54_666);
    for path in html.split("<path class=\"line\"").skip(1) {
        let d = &path[path.find(" d=\"").unwrap()..];
        let points = d[..d[4..].find('"').unwrap()].matches(['M', 'L']).count();
        assert!(points > 500 && points <= 2_000, "{points} points in a chart line");
    }
    let trades = read_trades(&run).len();
    assert!(trades > 1_000, "{trades}");
    assert!(html.contains(&format!("{} more round trips: see trades.csv", group(trades as i64 - 1_000))));
    assert!(html.len() < 600 * 1024, "report.html is {} bytes", html.len());
    check_renders(&run.join("report.html")).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn quiet_and_json_are_for_scripts() {
    let out = tempdir();
    let config = ConfigFile::reference(&shared_data()).write(out.path());
    let config = config.display().to_string();
    let dir = |name: &str| out.path().join(name).display().to_string();
    let (q, j, p) = (dir("quiet"), dir("json"), dir("plain"));
    let quiet = host(&["run", "--symbols", "BTC-USD-1d", "--config", &config, "--out", &q, "--quiet"]);
    assert!(quiet.ok() && quiet.stdout.is_empty() && quiet.stderr.is_empty(), "{quiet:#?}");
    let json = host(&["run", "--symbols", "BTC-USD-1d", "--config", &config, "--out", &j, "--json"]);
    assert!(json.ok(), "{json:#?}");
    let printed: serde_json::Value = serde_json::from_str(&json.stdout).expect("stdout is the summary JSON");
    assert_eq!(printed, read_summary(Path::new(&j)));
    // Piped output is plain text: no progress bar, no terminal escapes.
    let plain = host(&["run", "--symbols", "BTC-USD-1d", "--config", &config, "--out", &p]);
    assert!(plain.ok() && plain.stdout.starts_with("Backtest of BTC-USD-1d"), "{plain:#?}");
    assert!(!plain.stdout.contains('\u{1b}') && !plain.stderr.contains('\u{1b}'));
    // The summary ends with where to look: the run's folder and its report.
    let report = Path::new(&p).join("report.html");
    assert!(plain.stdout.contains(&format!("  report        {}\n", report.display())), "{}", plain.stdout);
    assert!(report.is_file());
    let both = host(&["run", "--symbols", "BTC-USD-1d", "--config", &config, "--quiet", "--json"]);
    both.assert_fails_with(&["--quiet", "--json"]);
}

#[test]
fn a_terminal_gets_a_progress_bar() {
    let out = tempdir();
    let config = ConfigFile::reference(&shared_data()).write(out.path());
    let run = out.path().join("run");
    // `script` gives the host a pseudo-terminal, as a person's shell would.
    let command = format!(
        "{} run --symbols BTC-USD-1h --config {} --out {}",
        host_bin().display(),
        config.display(),
        run.display()
    );
    let ran = Command::new("script").args(["-qec", &command, "/dev/null"]).output().expect("run script");
    let text = String::from_utf8_lossy(&ran.stdout);
    assert!(ran.status.success(), "{text}");
    assert!(
        text.contains("bars/s") && text.contains("ETA") && text.contains('%'),
        "no progress bar in:\n{text}"
    );
    assert!(text.contains("Backtest of BTC-USD-1h"), "{text}");
}
