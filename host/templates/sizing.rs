//! `{{name}}`: {{description}}.
//!
//! Enters with a fixed fraction of the cash on hand (not of equity), rounded
//! down to `decimals` places, and exits with the whole position.

use plugin_sdk::{Action, Config, Decimal, Error, Manifest, Param, Result, Sizer, SizingRequest};
use plugin_sdk::rust_decimal::RoundingStrategy;

pub struct {{type}} {
    fraction: Decimal,
    decimals: u32,
}

impl Sizer for {{type}} {
    fn manifest() -> Manifest {
        Manifest::new("{{description}}")
            .param(Param::float("fraction", 0.5, "fraction of cash to spend on an entry"))
            .param(Param::int("decimals", 8, "decimal places the quantity is rounded down to"))
    }

    fn new(config: &Config) -> Result<Self> {
        let fraction = config.float("fraction")?;
        if !(fraction > 0.0 && fraction <= 1.0) {
            return Err(Error::new(format!("`fraction` must be above 0 and at most 1, got {fraction}")));
        }
        let decimals = config.int("decimals")?;
        if !(0..=18).contains(&decimals) {
            return Err(Error::new(format!("`decimals` must be between 0 and 18, got {decimals}")));
        }
        // Money is exact decimal: convert the float setting by its shortest form.
        let fraction = plugin_sdk::price_to_decimal(fraction).ok_or_else(|| Error::new("bad `fraction`"))?;
        Ok({{type}} { fraction, decimals: decimals as u32 })
    }

    fn size(&mut self, request: &SizingRequest) -> Result<Decimal> {
        match request.action {
            Action::ExitLong | Action::ExitShort => Ok(request.position.abs()),
            Action::EnterLong | Action::EnterShort => {
                if request.price <= Decimal::ZERO || request.cash <= Decimal::ZERO {
                    return Ok(Decimal::ZERO); // zero means: do not trade
                }
                Ok((self.fraction * request.cash / request.price)
                    .round_dp_with_strategy(self.decimals, RoundingStrategy::ToZero))
            }
        }
    }
}

plugin_sdk::export_sizer!({{type}});

#[cfg(test)]
mod tests {
    use super::*;
    use plugin_sdk::testing::sizing_request;

    fn sizer() -> {{type}} {
        {{type}}::new(&Config::defaults(&{{type}}::manifest())).unwrap()
    }

    #[test]
    fn enters_with_half_the_cash_rounded_down() {
        let request = sizing_request(Action::EnterLong, "30000", "12000", "10000", "0");
        // 0.5 * 10000 / 30000 = 0.1666..., rounded down to 8 places.
        assert_eq!(sizer().size(&request).unwrap(), "0.16666666".parse::<Decimal>().unwrap());
    }

    #[test]
    fn exits_with_the_whole_position() {
        let request = sizing_request(Action::ExitLong, "30000", "12000", "2000", "0.25");
        assert_eq!(sizer().size(&request).unwrap(), "0.25".parse::<Decimal>().unwrap());
    }
}
