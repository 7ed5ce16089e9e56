//! `report.png`: a screenshot of `report.html` taken by headless Chromium.
//!
//! The browser is found on PATH (`chromium`, `chromium-browser`,
//! `google-chrome`) or named by `$STRATA_CHROMIUM`. It runs with a fresh
//! profile, no sandbox (so it works as root in containers), and no background
//! networking; the report itself fetches nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest the browser may take before it is stopped.
const TIMEOUT: Duration = Duration::from_secs(60);
/// Wide enough for the tables, tall enough for the headline, both charts and
/// the monthly returns.
pub const WINDOW: (u32, u32) = (1280, 2000);

#[derive(Debug, thiserror::Error)]
pub enum ScreenshotError {
    #[error(
        "no Chromium found: install Debian's `chromium` package (apt-get install chromium) or set STRATA_CHROMIUM to the browser"
    )]
    NoBrowser,
    #[error("cannot start {browser}: {source}")]
    Start { browser: String, source: std::io::Error },
    #[error("{browser} took longer than {}s and was stopped", TIMEOUT.as_secs())]
    Timeout { browser: String },
    #[error("{browser} wrote no screenshot (exit {status}): {stderr}")]
    Failed { browser: String, status: String, stderr: String },
}

/// The browser to use: `$STRATA_CHROMIUM`, else the first known name on PATH.
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("STRATA_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// Renders `html` and writes a PNG of its first `WINDOW` pixels to `png`.
pub fn screenshot(html: &Path, png: &Path) -> Result<(), ScreenshotError> {
    let browser = find_chromium().ok_or(ScreenshotError::NoBrowser)?;
    let name = browser.display().to_string();
    let profile = std::env::temp_dir().join(format!("strata-chromium-{}", std::process::id()));
    let html = std::path::absolute(html).unwrap_or_else(|_| html.to_owned());
    let _ = std::fs::remove_file(png);
    let mut child = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={},{}", WINDOW.0, WINDOW.1))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| ScreenshotError::Start { browser: name.clone(), source })?;
    // Drained on the side so a chatty browser never blocks on a full pipe.
    let stderr = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        })
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&profile);
                return Err(ScreenshotError::Timeout { browser: name });
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(source) => return Err(ScreenshotError::Start { browser: name, source }),
        }
    };
    let _ = std::fs::remove_dir_all(&profile);
    if status.success() && png.is_file() {
        return Ok(());
    }
    let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
    Err(ScreenshotError::Failed {
        browser: name,
        status: status.code().map_or("by signal".into(), |c| c.to_string()),
        stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
    })
}
