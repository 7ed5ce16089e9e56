//! `host data`: market data files.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::clock::SimClock;
use crate::config::LoadedConfig;
use crate::fetch::{FetchRequest, Granularity};
use crate::model::{Bar, SliceKind, Symbol};
use crate::session::Session;
use crate::time::{MS_PER_DAY, iso, parse_date, write_iso};

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Write the bars a data slice produces to <OUT>/<SYMBOL>.csv. With the
    /// default config (config/synthetic.toml) this generates the project's
    /// synthetic sample data.
    Export(ExportArgs),
    /// Download candles from Coinbase Exchange's public market data into
    /// <OUT>/<SYMBOL>.csv: pages through the range (300 candles a request),
    /// waits out rate limits, checks every candle, and extends an existing
    /// file instead of fetching it again.
    Fetch(FetchArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// A Coinbase product, for example BTC-USD; also the file's name.
    pub symbol: String,
    /// First day, YYYY-MM-DD (UTC).
    #[arg(long)]
    pub from: String,
    /// Last day, YYYY-MM-DD (UTC), included in full (up to the last finished candle).
    #[arg(long)]
    pub to: String,
    /// Candle size.
    #[arg(long, value_enum, default_value_t = Granularity::Day)]
    pub granularity: Granularity,
    /// Folder to write <SYMBOL>.csv into.
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// The exchange's API [default: $STRATA_COINBASE_URL, else https://api.exchange.coinbase.com].
    #[arg(long)]
    pub base_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Comma-separated symbols.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// Config whose data slice produces the bars [default: config/synthetic.toml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Folder to write <SYMBOL>.csv files into.
    #[arg(long, default_value = "data")]
    pub out: PathBuf,
    /// First day, YYYY-MM-DD.
    #[arg(long)]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD, included in full.
    #[arg(long)]
    pub to: Option<String>,
}

pub fn execute(cmd: DataCommand) -> Result<ExitCode> {
    match cmd {
        DataCommand::Export(args) => export(args),
        DataCommand::Fetch(args) => fetch(args),
    }
}

fn fetch(args: FetchArgs) -> Result<ExitCode> {
    let symbol = Symbol::new(args.symbol.trim()).map_err(anyhow::Error::msg)?;
    let from = parse_date(&args.from).map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let to = parse_date(&args.to).map_err(|e| anyhow::anyhow!("--to: {e}"))? + MS_PER_DAY - 1;
    if from > to {
        anyhow::bail!("--from {} is after --to {}", args.from, args.to);
    }
    let base_url = args
        .base_url
        .or_else(|| std::env::var("STRATA_COINBASE_URL").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "https://api.exchange.coinbase.com".into());
    let file = args.out.join(format!("{symbol}.csv"));
    let request = FetchRequest {
        product: symbol.to_string(),
        granularity: args.granularity,
        from,
        to,
        file: file.clone(),
        base_url,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(i64::MAX);
    let report = crate::fetch::fetch(&request, now)
        .with_context(|| format!("cannot fetch {symbol} candles into {}", file.display()))?;
    let span = match (report.first, report.last) {
        (Some(a), Some(b)) => format!("{} to {}", iso(a), iso(b)),
        _ => "no candles".into(),
    };
    println!(
        "{}: {} {} candles, {span} ({} new, {} already in the file); {} requests, {} rate-limited and retried, {} errors retried",
        file.display(),
        report.kept_rows + report.new_candles,
        args.granularity.name(),
        report.new_candles,
        report.kept_rows,
        report.requests,
        report.rate_limited,
        report.retried_errors
    );
    Ok(ExitCode::SUCCESS)
}

fn export(args: ExportArgs) -> Result<ExitCode> {
    let config_path = super::resolve_config(args.config, "synthetic.toml")?;
    let config = LoadedConfig::read(&config_path)?;
    config.validate()?;
    let start =
        args.from.as_deref().map(parse_date).transpose().map_err(|e| anyhow::anyhow!("--from: {e}"))?;
    let end = args
        .to
        .as_deref()
        .map(|t| parse_date(t).map(|d| d + MS_PER_DAY - 1))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    let session = Session::open(config, &[SliceKind::Data])?;
    let plugin = session.plugin(SliceKind::Data).label();
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    for name in &args.symbols {
        let symbol = Symbol::new(name.trim()).map_err(anyhow::Error::msg)?;
        let clock = SimClock::new();
        let (mut data, source) = session.open_data(&symbol, start, end, &clock)?;
        let path = args.out.join(format!("{symbol}.csv"));
        let file =
            std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        // The label travels with the file: csv-data reports these comment lines
        // as the source, so a backtest on this file says it is synthetic.
        if source.synthetic {
            writeln!(
                out,
                "# SYNTHETIC DATA, not market prices: generated by {plugin} ({})",
                source.description
            )?;
        } else {
            writeln!(out, "# exported by {plugin} from {}", source.description)?;
        }
        writeln!(out, "timestamp,open,high,low,close,volume")?;
        let (mut rows, mut bars, mut line) = (0u64, Vec::<Bar>::new(), String::new());
        loop {
            bars.clear();
            data.next_batch(4096, &mut bars)?;
            if bars.is_empty() {
                break;
            }
            for b in &bars {
                line.clear();
                write_iso(&mut line, b.ts)?;
                writeln!(line, ",{},{},{},{},{}", b.open, b.high, b.low, b.close, b.volume)?;
                out.write_all(line.as_bytes())?;
                rows += 1;
            }
        }
        out.flush()?;
        println!("{}: {rows} bars{}", path.display(), if source.synthetic { " (synthetic)" } else { "" });
    }
    Ok(ExitCode::SUCCESS)
}
