//! The one rule for turning wire prices into exact decimals.

use std::str::FromStr;

use rust_decimal::Decimal;

/// The exact decimal a price on the wire stands for: the shortest decimal that
/// converts back to the same `f64` (`101.5` -> `101.5`, `0.1` -> `0.1`), with
/// Ryu's choice when two such decimals are equally close (the `f64` lies
/// exactly halfway: `243.694000244140625` -> `243.69400024414062`).
///
/// The host uses the same rule, so a fill at a bar's open that an execution
/// slice reports and the host's own check of that open agree to the last digit.
/// Returns `None` for NaN, infinities and values beyond `Decimal`'s range.
pub fn price_to_decimal(price: f64) -> Option<Decimal> {
    if !price.is_finite() {
        return None;
    }
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(price);
    let decimal = if text.contains('e') { Decimal::from_scientific(text) } else { Decimal::from_str(text) };
    decimal.ok().map(|d| d.normalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    // The halfway literal is the f64's exact binary value, written out in full on purpose.
    #[allow(clippy::excessive_precision)]
    fn shortest_round_trip() {
        let cases = [
            (101.5, "101.5"),
            (0.1, "0.1"),
            (456.8599853515625, "456.8599853515625"),
            (1e-7, "0.0000001"),
            (43_000.0, "43000"),
            // Exactly halfway between ...062 and ...063: Ryu's pick, as the host's.
            (243.694000244140625, "243.69400024414062"),
        ];
        for (price, want) in cases {
            assert_eq!(price_to_decimal(price).unwrap().to_string(), want, "price {price}");
        }
    }

    #[test]
    fn rejects_non_finite() {
        assert_eq!(price_to_decimal(f64::NAN), None);
        assert_eq!(price_to_decimal(f64::INFINITY), None);
    }
}
