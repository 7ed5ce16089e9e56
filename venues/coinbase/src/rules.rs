//! Product rules applied before an order leaves the host, so the venue never sees an order it
//! would reject for size or tick, and client order ids that are stable across restarts.

use rust_decimal::{Decimal, RoundingStrategy};
use sha2::{Digest, Sha256};

use crate::auth::hex;
use crate::model::{Product, Side};

/// Why an order cannot be sent as asked. `Display` names the rule and the numbers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    #[error("{product}: trading is disabled")]
    TradingDisabled { product: String },
    #[error("{product}: product is cancel-only")]
    CancelOnly { product: String },
    #[error("{product}: product is limit-only; market orders are refused")]
    LimitOnly { product: String },
    #[error("{product}: product is post-only; only post-only limit orders are accepted")]
    PostOnly { product: String },
    #[error("{product}: base size {size} rounds to zero at base_increment {increment}")]
    ZeroSize { product: String, size: Decimal, increment: Decimal },
    #[error("{product}: limit price {price} is not positive")]
    BadPrice { product: String, price: Decimal },
    #[error("{product}: base size {size} is below base_min_size {min}")]
    BelowMinSize { product: String, size: Decimal, min: Decimal },
    #[error("{product}: base size {size} is above base_max_size {max}")]
    AboveMaxSize { product: String, size: Decimal, max: Decimal },
    #[error("{product}: notional {notional} (size {size} x price {price}) is below quote_min_size {min}")]
    BelowMinNotional { product: String, size: Decimal, price: Decimal, notional: Decimal, min: Decimal },
    #[error("{product}: notional {notional} (size {size} x price {price}) is above quote_max_size {max}")]
    AboveMaxNotional { product: String, size: Decimal, price: Decimal, notional: Decimal, max: Decimal },
    #[error(
        "{product}: no price to check quote_min_size/quote_max_size against (market order and no product price)"
    )]
    NoReferencePrice { product: String },
}

/// Rounds an order to `product`'s increments and checks it against its limits.
///
/// The size is rounded down to `base_increment` (never trade more than asked). A limit price is
/// rounded to `quote_increment` away from the market, down for buys and up for sells, so the
/// order stays as passive as asked. Notional limits use the limit price, or `product.price` for
/// market orders. Returns the rounded `(base_size, limit_price)`.
pub fn round_to_rules(
    product: &Product,
    side: Side,
    base_size: Decimal,
    limit_price: Option<Decimal>,
) -> Result<(Decimal, Option<Decimal>), RuleViolation> {
    let name = || product.id.clone();
    if product.trading_disabled {
        return Err(RuleViolation::TradingDisabled { product: name() });
    }
    if product.cancel_only {
        return Err(RuleViolation::CancelOnly { product: name() });
    }
    if limit_price.is_none() && product.limit_only {
        return Err(RuleViolation::LimitOnly { product: name() });
    }
    if limit_price.is_none() && product.post_only {
        return Err(RuleViolation::PostOnly { product: name() });
    }

    let size = round_to(base_size, product.base_increment, RoundingStrategy::ToZero);
    if size <= Decimal::ZERO {
        return Err(RuleViolation::ZeroSize {
            product: name(),
            size: base_size,
            increment: product.base_increment,
        });
    }
    let price = match limit_price {
        None => None,
        Some(p) => {
            let strategy = match side {
                Side::Buy => RoundingStrategy::ToNegativeInfinity,
                Side::Sell => RoundingStrategy::ToPositiveInfinity,
            };
            let rounded = round_to(p, product.quote_increment, strategy);
            if rounded <= Decimal::ZERO {
                return Err(RuleViolation::BadPrice { product: name(), price: p });
            }
            Some(rounded)
        }
    };

    if size < product.base_min_size {
        return Err(RuleViolation::BelowMinSize { product: name(), size, min: product.base_min_size });
    }
    // A zero maximum means the venue set none.
    if product.base_max_size > Decimal::ZERO && size > product.base_max_size {
        return Err(RuleViolation::AboveMaxSize { product: name(), size, max: product.base_max_size });
    }

    let has_notional_rules = product.quote_min_size > Decimal::ZERO || product.quote_max_size > Decimal::ZERO;
    if has_notional_rules {
        let reference = price.or(product.price.filter(|p| *p > Decimal::ZERO));
        let Some(reference) = reference else {
            return Err(RuleViolation::NoReferencePrice { product: name() });
        };
        let notional = size.checked_mul(reference).unwrap_or(Decimal::MAX);
        if notional < product.quote_min_size {
            return Err(RuleViolation::BelowMinNotional {
                product: name(),
                size,
                price: reference,
                notional,
                min: product.quote_min_size,
            });
        }
        if product.quote_max_size > Decimal::ZERO && notional > product.quote_max_size {
            return Err(RuleViolation::AboveMaxNotional {
                product: name(),
                size,
                price: reference,
                notional,
                max: product.quote_max_size,
            });
        }
    }
    Ok((size.normalize(), price.map(|p| p.normalize())))
}

/// `value` rounded to a multiple of `increment`; unchanged when the increment is not positive.
fn round_to(value: Decimal, increment: Decimal, strategy: RoundingStrategy) -> Decimal {
    if increment <= Decimal::ZERO {
        return value;
    }
    match value.checked_div(increment) {
        Some(steps) => steps.round_dp_with_strategy(0, strategy).checked_mul(increment).unwrap_or(value),
        None => value,
    }
}

/// Coinbase documents no length limit for `client_order_id` on Create Order; we stay well
/// inside the 64 characters other venues allow, so ids can move between venues.
pub const CLIENT_ORDER_ID_MAX: usize = 64;

/// A client order id that is the same every time for the same session and host order id, so a
/// resent order after a timeout or a restart maps onto the order already on the venue.
/// Shape: `strata-<first 12 hex of sha256(session)>-<host_order_id>`, at most 40 chars.
pub fn client_order_id(session: &str, host_order_id: u64) -> String {
    let digest = Sha256::digest(session.as_bytes());
    format!("strata-{}-{host_order_id}", &hex(&digest[..6]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn btc() -> Product {
        Product {
            id: "BTC-USD".into(),
            base: "BTC".into(),
            quote: "USD".into(),
            base_increment: d("0.00000001"),
            quote_increment: d("0.01"),
            base_min_size: d("0.00001"),
            base_max_size: d("3400"),
            quote_min_size: d("1"),
            quote_max_size: d("150000000"),
            trading_disabled: false,
            post_only: false,
            limit_only: false,
            cancel_only: false,
            price: Some(d("50000")),
        }
    }

    #[test]
    fn rounds_size_down_and_price_away_from_the_market() {
        // (side, size, price) -> (size, price)
        let cases = [
            (Side::Buy, "0.123456789", Some("50000.019"), "0.12345678", Some("50000.01")),
            (Side::Sell, "0.123456789", Some("50000.011"), "0.12345678", Some("50000.02")),
            (Side::Buy, "0.01", None, "0.01", None),
            // Already on the grid: unchanged.
            (Side::Sell, "1", Some("49999.99"), "1", Some("49999.99")),
        ];
        for (side, size, price, want_size, want_price) in cases {
            let got = round_to_rules(&btc(), side, d(size), price.map(d)).unwrap();
            assert_eq!(got, (d(want_size), want_price.map(d)), "{side} {size} {price:?}");
        }
    }

    #[test]
    fn violations_name_the_rule_and_numbers() {
        let p = btc();
        let cases: Vec<(Product, Decimal, Option<Decimal>, &str)> = vec![
            (p.clone(), d("0.000000001"), None, "rounds to zero"),
            (p.clone(), d("0.000005"), None, "below base_min_size 0.00001"),
            (p.clone(), d("3401"), Some(d("1")), "above base_max_size 3400"),
            // 0.00002 BTC at 40000 = 0.8 USD < 1 USD minimum.
            (p.clone(), d("0.00002"), Some(d("40000")), "below quote_min_size 1"),
            (p.clone(), d("3000"), Some(d("60000")), "above quote_max_size"),
            (Product { price: None, ..p.clone() }, d("0.1"), None, "no price"),
            (Product { limit_only: true, ..p.clone() }, d("0.1"), None, "limit-only"),
            (Product { trading_disabled: true, ..p.clone() }, d("0.1"), None, "disabled"),
            (Product { cancel_only: true, ..p.clone() }, d("0.1"), Some(d("1")), "cancel-only"),
        ];
        for (product, size, price, expect) in cases {
            let err = round_to_rules(&product, Side::Buy, size, price).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(expect), "{text:?} should contain {expect:?}");
            assert!(text.starts_with("BTC-USD"), "{text}");
        }
    }

    #[test]
    fn notional_uses_rounded_size() {
        // 0.0000299 rounds to 0.00002989; at 33500 that is 1.001... >= 1: allowed.
        let (size, _) = round_to_rules(&btc(), Side::Buy, d("0.0000298999"), Some(d("33500"))).unwrap();
        assert_eq!(size, d("0.00002989"));
    }

    #[test]
    fn client_order_id_is_stable_and_short() {
        let a = client_order_id("session-2026-12-03", 42);
        assert_eq!(a, client_order_id("session-2026-12-03", 42));
        assert_ne!(a, client_order_id("session-2026-12-04", 42));
        assert!(a.starts_with("strata-") && a.ends_with("-42"));
        // sha256("abc") starts ba7816bf8f01: pins the format across releases.
        assert_eq!(client_order_id("abc", 7), "strata-ba7816bf8f01-7");
        assert!(client_order_id("x", u64::MAX).len() <= CLIENT_ORDER_ID_MAX);
    }
}
