//! Optional for any slice: state it exports for the host to persist.

use crate::Result;

/// State a slice keeps that the host cannot rebuild by replaying bars through
/// a fresh instance: for example something read from the clock (which is real
/// in paper mode) or learned from outside the bars.
///
/// Paper mode persists it after every bar it commits and, after a restart,
/// hands it back to a fresh instance once the session's bars have been
/// replayed through it. Most slices need none of this: their state follows
/// from their settings and their bars, and the replay rebuilds it exactly.
///
/// Implement it next to the slice's own trait and add `snapshot` to the
/// export macro, which then also exports the WIT interface `snapshot`:
///
/// ```
/// # struct MyStrategy { learned: f64 }
/// impl plugin_sdk::Snapshot for MyStrategy {
///     fn save(&self) -> plugin_sdk::Result<Vec<u8>> {
///         Ok(self.learned.to_le_bytes().to_vec())
///     }
///     fn restore(&mut self, state: &[u8]) -> plugin_sdk::Result<()> {
///         let bytes = state.try_into().map_err(|_| plugin_sdk::Error::new("expected 8 bytes"))?;
///         self.learned = f64::from_le_bytes(bytes);
///         Ok(())
///     }
/// }
/// // With `impl plugin_sdk::Strategy for MyStrategy` beside it:
/// // plugin_sdk::export_strategy!(MyStrategy, snapshot);
/// ```
pub trait Snapshot {
    /// The slice's state as bytes, taken between bars (at most 16 MiB).
    fn save(&self) -> Result<Vec<u8>>;

    /// Takes back bytes [`save`](Self::save) returned after the bar the
    /// instance has just been replayed to. Return an error to refuse them;
    /// the host then stops with the message rather than trade on them.
    fn restore(&mut self, state: &[u8]) -> Result<()>;
}

/// Implements the `snapshot` export inside an export macro's module.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_snapshot {
    ($kind:ident) => {
        impl exports::strata::plugin::snapshot::Guest for Adapter {
            fn save() -> ::core::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
                $crate::__private::$kind::save_state(&SLOT)
            }
            fn restore(state: ::std::vec::Vec<u8>) -> ::core::result::Result<(), ::std::string::String> {
                $crate::__private::$kind::restore_state(&SLOT, state)
            }
        }
    };
}
