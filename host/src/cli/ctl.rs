//! `host ctl`: operator control of a running live session, over its
//! endpoint on 127.0.0.1 (`[paper] http-port`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Action {
    /// The session's health (as `host status`).
    Status,
    /// Send no new order until `resume` (each is recorded as not sent).
    Pause,
    /// Send orders again.
    Resume,
    /// Cancel every order working at the venue.
    CancelAll,
    /// Cancel every working order, close every position at the venue with a
    /// market order, and pause (`resume` lifts the pause).
    Flatten,
}

#[derive(Debug, Args)]
pub struct CtlArgs {
    pub action: Action,
    /// The session's folder: the endpoint's address is read from its `http.addr`.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn execute(args: CtlArgs) -> Result<ExitCode> {
    let file = args.out.join("http.addr");
    let addr = crate::files::read_text_bounded(&file, 4096, "address file")
        .with_context(|| {
            format!("cannot read {} (is the session running with [paper] http-port set?)", file.display())
        })?
        .trim()
        .to_owned();
    let body = match args.action {
        Action::Status => super::status::get(&addr, "/health")?,
        Action::Pause => post(&addr, "/ctl/pause")?,
        Action::Resume => post(&addr, "/ctl/resume")?,
        Action::CancelAll => post(&addr, "/ctl/cancel-all")?,
        Action::Flatten => post(&addr, "/ctl/flatten")?,
    };
    print!("{body}");
    std::io::stdout().flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A plain HTTP/1.0 POST without a body to the local endpoint; the answer's body.
fn post(addr: &str, path: &str) -> Result<String> {
    let mut stream =
        TcpStream::connect(addr).with_context(|| format!("cannot reach the session at {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n")?;
    let mut text = String::new();
    stream.take(1 << 20).read_to_string(&mut text).with_context(|| format!("no answer from {addr}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.0 202") && !head.starts_with("HTTP/1.1 202") {
        bail!("{addr}{path} answered {}: {}", head.lines().next().unwrap_or_default(), body.trim());
    }
    Ok(body.to_owned())
}
