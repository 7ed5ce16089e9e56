//! The error a slice returns to the host.

use std::fmt;

/// A failure reported by a slice. The host shows the message prefixed with the
/// plugin's name and version, and applies the run's fault policy.
///
/// Any `std::error::Error` converts into it, so `?` works on parse errors and
/// the like; [`Error::new`] makes one from a message.
pub struct Error(String);

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error with this message. Say what is wrong and with which input:
    /// "`fast` (30) must be less than `slow` (10)".
    pub fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl<E: std::error::Error> From<E> for Error {
    fn from(err: E) -> Self {
        Error(err.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<Error> for String {
    fn from(err: Error) -> String {
        err.0
    }
}
