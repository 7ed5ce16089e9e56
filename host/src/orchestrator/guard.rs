//! The host's last line of defence: a panic in the run path is a bug (every
//! value from outside is checked where it enters), but if one happens the
//! run must still leave its files and a `failed` summary, not exit 101.

use super::RunError;

/// Runs `run` (a backtest, or one paper step), turning a panic (a bug in the host: nothing from outside
/// should reach one) into a run error, so the run's files and summary.json
/// are still written with status `failed` and the exit code is 1 like any
/// failed run, not 101 with nothing written. The panic's message and place
/// go into the error instead of the default hook's output.
pub fn guarded<T>(run: impl FnOnce() -> Result<T, RunError>) -> Result<T, RunError> {
    use std::sync::{Arc, Mutex};
    let caught: Arc<Mutex<Option<String>>> = Arc::default();
    let previous_hook = std::panic::take_hook();
    let sink = Arc::clone(&caught);
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        if let Ok(mut slot) = sink.lock() {
            slot.get_or_insert(format!("{message}{place}"));
        }
    }));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
    std::panic::set_hook(previous_hook);
    outcome.unwrap_or_else(|_| {
        let what =
            caught.lock().ok().and_then(|mut slot| slot.take()).unwrap_or_else(|| "(no message)".into());
        Err(RunError::Internal(what))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_the_run_becomes_a_run_error_naming_it() {
        let result = guarded(|| -> Result<(), RunError> { panic!("unforeseen {}", 42) });
        let message = result.unwrap_err().to_string();
        assert!(message.contains("unforeseen 42") && message.contains("guard.rs"), "{message}");
        // An error the run returns passes through unchanged.
        let again = guarded(|| Err::<(), _>(RunError::Internal("plain error".into())));
        assert_eq!(
            again.unwrap_err().to_string(),
            "internal error of the host (please report it): plain error"
        );
    }
}
