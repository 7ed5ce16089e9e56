//! The operator's endpoint on 127.0.0.1: `/health` (JSON) and `/metrics`
//! (Prometheus text), served from the status the loop keeps current.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{Context, Result};
use serde_json::json;

use super::status::SharedStatus;

/// A running server; dropping it stops it.
pub struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves on 127.0.0.1:`port` (0: any free port) and writes the address to
/// `<out>/http.addr`, where `host status` and scripts find it.
pub fn serve(port: u16, status: SharedStatus, out: &Path) -> Result<Server> {
    let server = tiny_http::Server::http(("127.0.0.1", port))
        .map_err(|e| anyhow::anyhow!("cannot serve /health on 127.0.0.1:{port} ([paper] http-port): {e}"))?;
    let server = Arc::new(server);
    let addr: SocketAddr = server.server_addr().to_ip().context("the endpoint has no IP address")?;
    std::fs::write(out.join("http.addr"), format!("{addr}\n"))
        .with_context(|| format!("cannot write {}", out.join("http.addr").display()))?;
    tracing::info!("health and metrics on http://{addr}/health and /metrics");
    let serving = Arc::clone(&server);
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for request in serving.incoming_requests() {
                let (code, body, content_type) = if *request.method() == tiny_http::Method::Post {
                    command(request.url(), &status)
                } else {
                    respond(request.url(), &status)
                };
                let header =
                    tiny_http::Header::from_bytes("Content-Type", content_type).expect("valid header");
                let response =
                    tiny_http::Response::from_string(body).with_status_code(code).with_header(header);
                let _ = request.respond(response);
            }
        })
        .context("cannot start the endpoint's thread")?;
    Ok(Server { server, thread: Some(thread) })
}

/// `POST /ctl/<command>`: queued for the loop, which applies it between bars.
fn command(url: &str, status: &SharedStatus) -> (u16, String, &'static str) {
    let name = url.split('?').next().unwrap_or_default().strip_prefix("/ctl/").unwrap_or_default();
    let Some(command) = super::status::OperatorCommand::parse(name) else {
        return (
            404,
            "not found: POST /ctl/pause, /ctl/resume, /ctl/cancel-all or /ctl/flatten\n".into(),
            "text/plain",
        );
    };
    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
    if !s.live {
        return (
            409,
            "operator commands act on a live session's venue orders; this is a paper session\n".into(),
            "text/plain",
        );
    }
    s.commands.push(command);
    (202, format!("{{\"queued\": \"{name}\"}}\n"), "application/json")
}

fn respond(url: &str, status: &SharedStatus) -> (u16, String, &'static str) {
    let status = status.lock().expect("status").clone();
    match url.split('?').next().unwrap_or_default() {
        "/health" => {
            let body = json!({
                "state": status.state,
                "safe_mode": status.safe_mode,
                "symbols": status.symbols,
                "last_bar": status.last_bar,
                "bars": status.bars_per_symbol,
                "cash": status.cash.normalize().to_string(),
                "equity": status.equity.normalize().to_string(),
                "drawdown": status.drawdown.normalize().to_string(),
                "orders": status.orders,
                "fills": status.fills,
                "slices": status.slices,
                "faults": status.faults,
                "feed": status.feed,
                "config_generation": status.config_generation,
                "reloads": {
                    "applied": status.reloads_applied,
                    "refused": status.reloads_refused,
                    "loading": status.reload_loading,
                    "last": status.last_reload,
                },
                "resumed_bars": status.resumed_bars,
                "snapshots": status.snapshots,
                "restored": status.restored,
                "live": status.live,
                "paused": status.paused,
            });
            (200, serde_json::to_string_pretty(&body).unwrap_or_default() + "\n", "application/json")
        }
        "/metrics" => (200, super::metrics::render(&status), "text/plain; version=0.0.4"),
        _ => (404, "not found: try /health or /metrics\n".into(), "text/plain"),
    }
}
