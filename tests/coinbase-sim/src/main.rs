//! `coinbase-sim keygen --out FILE` | `coinbase-sim serve --key FILE --candles P=CSV[,..] ...`
//! | `coinbase-sim jwt --key FILE [--uri URI]`

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::ExitCode;
use std::str::FromStr;

use coinbase_sim::auth::ApiKey;
use coinbase_sim::market::{Exchange, Series};
use coinbase_sim::server;
use rust_decimal::Decimal;

const USAGE: &str = "usage:
  coinbase-sim keygen --out FILE
  coinbase-sim jwt --key FILE [--uri 'GET 127.0.0.1:PORT/api/v3/brokerage/accounts']
  coinbase-sim serve --key FILE --candles BTC-USD=PATH.csv[,ETH-USD=PATH2.csv] --warm N
                     --balances USD=100000,BTC=0 [--taker-bps 60] [--maker-bps 40] [--bar-ms MS]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("keygen") => keygen(&args[1..]),
        Some("serve") => serve(&args[1..]),
        Some("jwt") => jwt(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("coinbase-sim: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--name value` pairs; every flag takes a value and may appear once.
fn flags(args: &[String], allowed: &[&str]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .filter(|n| allowed.contains(n))
            .ok_or_else(|| format!("unexpected argument {a:?}\n{USAGE}"))?;
        let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
        if out.insert(name.to_string(), value.clone()).is_some() {
            return Err(format!("--{name} given twice"));
        }
    }
    Ok(out)
}

fn keygen(args: &[String]) -> Result<(), String> {
    let f = flags(args, &["out"])?;
    let out = f.get("out").ok_or("keygen needs --out FILE")?;
    let text = ApiKey::generate().to_key_file()?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut file = opts.open(out).map_err(|e| format!("failed to create {out}: {e}"))?;
    // `mode` only applies to new files; tighten an existing one too.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("failed to chmod {out}: {e}"))?;
    }
    file.write_all(text.as_bytes()).map_err(|e| format!("failed to write {out}: {e}"))
}

/// Prints a fresh JWT, for poking the simulator with curl (no `--uri`: a WebSocket token).
fn jwt(args: &[String]) -> Result<(), String> {
    let f = flags(args, &["key", "uri"])?;
    let path = f.get("key").ok_or("jwt needs --key FILE")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("failed to read {path}: {e}"))?;
    let key = ApiKey::from_key_file(&text).map_err(|e| format!("{path}: {e}"))?;
    println!("{}", key.sign_jwt(f.get("uri").map(String::as_str), coinbase_sim::clock::wall_now()));
    Ok(())
}

fn pairs(spec: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    spec.split(',')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("{what}: {kv:?} is not NAME=VALUE"))
        })
        .collect()
}

fn bps(f: &BTreeMap<String, String>, name: &str, default: u32) -> Result<Decimal, String> {
    let v = match f.get(name) {
        Some(s) => Decimal::from_str(s).map_err(|_| format!("--{name} {s:?} is not a number"))?,
        None => Decimal::from(default),
    };
    if v < Decimal::ZERO || v > Decimal::from(10_000) {
        return Err(format!("--{name} must be between 0 and 10000"));
    }
    Ok(v)
}

fn serve(args: &[String]) -> Result<(), String> {
    let f = flags(args, &["key", "candles", "warm", "balances", "taker-bps", "maker-bps", "bar-ms"])?;
    let key_path = f.get("key").ok_or("serve needs --key FILE")?;
    let key_text =
        std::fs::read_to_string(key_path).map_err(|e| format!("failed to read {key_path}: {e}"))?;
    let key = ApiKey::from_key_file(&key_text).map_err(|e| format!("{key_path}: {e}"))?;

    let mut series = Vec::new();
    for (product, path) in pairs(f.get("candles").ok_or("serve needs --candles PRODUCT=CSV")?, "--candles")? {
        let text = std::fs::read_to_string(&path).map_err(|e| format!("failed to read {path}: {e}"))?;
        series.push((product, Series::from_csv(&text).map_err(|e| format!("{path}: {e}"))?));
    }
    let warm: usize =
        f.get("warm").ok_or("serve needs --warm N")?.parse().map_err(|_| "--warm must be a count")?;
    let mut balances = BTreeMap::new();
    for (ccy, amt) in pairs(f.get("balances").map_or("", String::as_str), "--balances")? {
        let v = Decimal::from_str(&amt).map_err(|_| format!("--balances: {amt:?} is not a decimal"))?;
        balances.insert(ccy, v);
    }
    let bar_ms = match f.get("bar-ms") {
        Some(s) => Some(s.parse::<u64>().map_err(|_| "--bar-ms must be milliseconds")?),
        None => None,
    };
    let ex = Exchange::new(series, warm, balances, bps(&f, "taker-bps", 60)?, bps(&f, "maker-bps", 40)?)?;
    let running = server::start(key.verifier(), ex, bar_ms).map_err(|e| format!("failed to bind: {e}"))?;

    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", running.banner()).and_then(|_| out.flush()).map_err(|e| e.to_string())?;
    drop(out);
    // Serve until whoever started us closes our stdin (or dies, which closes it too).
    let mut sink = [0u8; 256];
    let mut stdin = std::io::stdin().lock();
    while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
    Ok(())
}
