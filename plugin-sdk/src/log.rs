//! Logging to the host.
//!
//! A slice has no stdout or stderr of its own. These functions send structured
//! records to the host, which tags them with the slice, plugin and symbol and
//! writes them to its log. Natively (in `cargo test`) they print to stderr.

/// Severity of a log record.
pub use crate::gen_::strata::plugin::host::LogLevel as Level;

/// Writes a record with key/value fields.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    {
        use crate::gen_::strata::plugin::host::{LogField, log as host_log};
        let fields: Vec<LogField> =
            fields.iter().map(|(k, v)| LogField { key: (*k).to_owned(), value: (*v).to_owned() }).collect();
        host_log(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        eprintln!("[{level:?}] {message} {}", fields.join(" "));
    }
}

/// Writes a debug record.
pub fn debug(message: &str) {
    log(Level::Debug, message, &[]);
}

/// Writes an info record.
pub fn info(message: &str) {
    log(Level::Info, message, &[]);
}

/// Writes a warning.
pub fn warn(message: &str) {
    log(Level::Warn, message, &[]);
}

/// Writes an error record. To fail, return an [`Error`](crate::Error) instead.
pub fn error(message: &str) {
    log(Level::Error, message, &[]);
}
