//! `host status`: what a running paper session's endpoint says.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The session's endpoint, `http://127.0.0.1:PORT` (or `127.0.0.1:PORT`).
    #[arg(long, conflicts_with = "out")]
    pub url: Option<String>,
    /// The session's folder: the address is read from its `http.addr`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print `/metrics` (Prometheus text) instead of `/health`.
    #[arg(long)]
    pub metrics: bool,
}

pub fn execute(args: StatusArgs) -> Result<ExitCode> {
    let addr = match (&args.url, &args.out) {
        (Some(url), _) => url.trim_start_matches("http://").trim_end_matches('/').to_owned(),
        (None, Some(out)) => {
            let file = out.join("http.addr");
            crate::files::read_text_bounded(&file, 4096, "address file")
                .with_context(|| {
                    format!(
                        "cannot read {} (is the session running with [paper] http-port set?)",
                        file.display()
                    )
                })?
                .trim()
                .to_owned()
        }
        (None, None) => bail!("say which session: --url http://127.0.0.1:PORT or --out RUN_FOLDER"),
    };
    let path = if args.metrics { "/metrics" } else { "/health" };
    let body = get(&addr, path)?;
    print!("{body}");
    std::io::stdout().flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Largest answer `host status` reads from a session's port.
const MAX_ANSWER_BYTES: u64 = 16 << 20;

/// A plain HTTP/1.0 GET to a local endpoint; the answer's body.
pub fn get(addr: &str, path: &str) -> Result<String> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot reach the session at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    // /health and /metrics are a few KiB; whatever answers on the port is
    // read up to a bound, not to its end.
    stream
        .take(MAX_ANSWER_BYTES)
        .read_to_string(&mut text)
        .with_context(|| format!("no answer from {addr}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("{addr}{path} answered {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}
