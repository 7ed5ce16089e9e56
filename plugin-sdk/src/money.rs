//! The one rule for turning wire prices into exact decimals.

use std::str::FromStr;

use rust_decimal::Decimal;

/// The exact decimal a price on the wire stands for: the shortest decimal that
/// converts back to the same `f64` (`101.5` -> `101.5`, `0.1` -> `0.1`).
///
/// The host uses the same rule, so a fill at a bar's open that an execution
/// slice reports and the host's own check of that open agree to the last digit.
/// Returns `None` for NaN, infinities and values beyond `Decimal`'s range.
pub fn price_to_decimal(price: f64) -> Option<Decimal> {
    if !price.is_finite() {
        return None;
    }
    // `{}` prints the shortest round-trip representation, never in exponent form.
    Decimal::from_str(&format!("{price}")).or_else(|_| Decimal::from_scientific(&format!("{price:e}"))).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_round_trip() {
        let cases = [
            (101.5, "101.5"),
            (0.1, "0.1"),
            (456.8599853515625, "456.8599853515625"),
            (1e-7, "0.0000001"),
            (43_000.0, "43000"),
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
