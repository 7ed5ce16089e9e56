//! `host run --mode paper`: the options only paper mode reads, and turning
//! the command line into a session's options.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

use super::run::{RunArgs, parse_range, parse_symbols};
use crate::paper::{FeedChoice, Options};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Feed {
    /// Play `<data-dir>/<SYMBOL>.csv` as if live, at `--speed`.
    Replay,
    /// Poll Coinbase Exchange's public candles (`[paper]` in the config).
    Coinbase,
}

#[derive(Debug, Args)]
pub struct PaperArgs {
    /// Paper mode: where bars come from.
    #[arg(long, value_enum, default_value_t = Feed::Replay)]
    pub feed: Feed,
    /// Paper mode, replay feed: bar time per real time, `3600x` (an hour of
    /// bars per second) or `max` (as fast as the host goes).
    #[arg(long, default_value = "3600x")]
    pub speed: String,
    /// Paper and live mode: the state database [default: beside the run folder, `<out>.db`].
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Live mode: live data, orders built, checked against the venue's rules
    /// and logged, never sent (the config's execution slice simulates fills).
    #[arg(long)]
    pub dry_run: bool,
    /// Live mode: confirm real orders without being asked (unattended runs).
    #[arg(long)]
    pub yes: bool,
}

/// `3600x` -> 3600.0; `max` -> None.
pub fn parse_speed(text: &str) -> Result<Option<f64>> {
    if text == "max" {
        return Ok(None);
    }
    let number = text.strip_suffix('x').unwrap_or(text);
    match number.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(Some(v)),
        _ => bail!("--speed {text}: expected a positive factor like 3600x, or max"),
    }
}

pub fn execute(args: RunArgs) -> Result<ExitCode> {
    let live = args.mode == super::run::Mode::Live;
    if !live && (args.paper.dry_run || args.paper.yes) {
        bail!("--dry-run and --yes are live mode's: add --mode live");
    }
    let symbols = parse_symbols(&args.symbols)?;
    let (from, to) = parse_range(args.from.as_deref(), args.to.as_deref())?;
    let config = super::resolve_config(args.config.clone(), "default.toml")?;
    let out = args.out.clone().unwrap_or_else(|| {
        let names = symbols.iter().take(3).map(|s| s.as_str()).collect::<Vec<_>>().join("_");
        PathBuf::from("runs").join(format!("{}-{names}", if live { "live" } else { "paper" }))
    });
    let state = args.paper.state.clone().unwrap_or_else(|| out.with_extension("db"));
    let feed = match args.paper.feed {
        _ if live => {
            if from.is_some() || to.is_some() || args.paper.feed != Feed::Replay {
                bail!("live mode reads the venue's candles from now: --from, --to and --feed do not apply");
            }
            FeedChoice::Venue
        }
        Feed::Replay => FeedChoice::Replay { speed: parse_speed(&args.paper.speed)?, from, to },
        Feed::Coinbase => {
            if from.is_some() || to.is_some() {
                bail!("--from and --to apply to the replay feed; the coinbase feed starts from now");
            }
            FeedChoice::Coinbase
        }
    };
    crate::paper::run(Options {
        symbols,
        config,
        data_dir: args.data_dir.clone().or_else(|| std::env::var_os("STRATA_DATA_DIR").map(PathBuf::from)),
        slice_overrides: args.slices.clone(),
        out,
        state,
        feed,
        live: live.then_some(crate::live::LiveOptions { dry_run: args.paper.dry_run, yes: args.paper.yes }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_are_factors_or_max() {
        assert_eq!(parse_speed("3600x").unwrap(), Some(3600.0));
        assert_eq!(parse_speed("2.5").unwrap(), Some(2.5));
        assert_eq!(parse_speed("max").unwrap(), None);
        assert!(parse_speed("0x").is_err());
        assert!(parse_speed("fast").is_err());
    }
}
