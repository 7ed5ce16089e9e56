//! `fixed-fraction`: enter with a fixed fraction of equity, exit everything.
//!
//! Entry quantity = floor(fraction x equity / price) to `decimals` places,
//! where price is the signal bar's close. Exits close the whole position.
//! All in exact decimals.

use plugin_sdk::{
    Action, Config, Decimal, Error, Manifest, Param, Result, Sizer, SizingRequest, price_to_decimal,
    rust_decimal::RoundingStrategy,
};

pub struct FixedFraction {
    fraction: Decimal,
    decimals: u32,
}

impl Sizer for FixedFraction {
    fn manifest() -> Manifest {
        Manifest::new("Enters with a fixed fraction of equity, exits the whole position")
            .param(Param::float("fraction", 0.95, "fraction of equity per entry, in (0, 1]"))
            .param(Param::int("decimals", 8, "quantity precision: rounds down to this many decimal places"))
    }

    fn new(config: &Config) -> Result<Self> {
        let raw = config.float("fraction")?;
        let fraction = price_to_decimal(raw)
            .filter(|f| *f > Decimal::ZERO && *f <= Decimal::ONE)
            .ok_or_else(|| Error::new(format!("`fraction` must be in (0, 1], got {raw}")))?;
        let decimals = config.int("decimals")?;
        if !(0..=18).contains(&decimals) {
            return Err(Error::new(format!("`decimals` must be between 0 and 18, got {decimals}")));
        }
        Ok(FixedFraction { fraction, decimals: decimals as u32 })
    }

    fn size(&mut self, r: &SizingRequest) -> Result<Decimal> {
        match r.action {
            Action::ExitLong | Action::ExitShort => Ok(r.position.abs()),
            Action::EnterLong | Action::EnterShort => {
                if r.price <= Decimal::ZERO {
                    return Err(Error::new(format!("cannot size against a price of {}", r.price)));
                }
                if r.equity <= Decimal::ZERO {
                    return Ok(Decimal::ZERO);
                }
                // Checked: a huge equity over a tiny price is an error to
                // report, not a panic.
                let quantity =
                    self.fraction.checked_mul(r.equity).and_then(|v| v.checked_div(r.price)).ok_or_else(
                        || {
                            Error::new(format!(
                                "{} of equity {} at a price of {} is a quantity beyond what a decimal holds",
                                self.fraction, r.equity, r.price
                            ))
                        },
                    )?;
                Ok(quantity.round_dp_with_strategy(self.decimals, RoundingStrategy::ToZero))
            }
        }
    }
}

plugin_sdk::export_sizer!(FixedFraction);

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn request(action: Action, price: &str, equity: &str, position: &str) -> SizingRequest {
        SizingRequest {
            symbol: "BTC-USD".into(),
            action,
            ts: 0,
            price: d(price),
            equity: d(equity),
            cash: d(equity),
            position: d(position),
        }
    }

    fn sizer() -> FixedFraction {
        FixedFraction::new(&Config::defaults(&FixedFraction::manifest())).unwrap()
    }

    #[test]
    fn entry_is_95_percent_of_equity_floored_to_8_places() {
        // 0.95 * 10000 / 30000 = 0.316666..., floored to 0.31666666.
        let q = sizer().size(&request(Action::EnterLong, "30000", "10000", "0")).unwrap();
        assert_eq!(q, d("0.31666666"));
    }

    #[test]
    fn exit_is_the_whole_position() {
        let q = sizer().size(&request(Action::ExitLong, "30000", "10000", "0.31666666")).unwrap();
        assert_eq!(q, d("0.31666666"));
    }

    #[test]
    fn a_quantity_beyond_a_decimal_is_an_error_not_a_panic() {
        // 0.95 x 1e27 / 1e-12 = 9.5e38, past Decimal's 7.9e28.
        let err =
            sizer().size(&request(Action::EnterLong, "0.000000000001", "1000000000000000000000000000", "0"));
        assert!(err.unwrap_err().to_string().contains("beyond what a decimal holds"));
    }

    #[test]
    fn fraction_out_of_range_is_refused() {
        let config = Config::defaults(&FixedFraction::manifest()).with("fraction", 1.5);
        assert!(FixedFraction::new(&config).err().unwrap().to_string().contains("(0, 1]"));
    }
}
