//! The account a backtest trades in: `[account]` in a config.
//!
//! A cash account (the default) never borrows: the risk gate refuses any
//! entry that would take gross exposure above 1x equity, so the only way cash
//! dips below zero is the gap between the close an order was sized and
//! checked on and the next open it fills at (documented in the README). A
//! margin account may borrow up to `max-leverage` times equity and pays
//! `borrow-rate` a year on the cash it owes, accrued bar by bar.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::risk::RiskLimits;

/// Milliseconds in the 365-day year borrow rates are quoted for (the same
/// year as `[shorting]`'s borrow cost).
pub const MS_PER_YEAR: i64 = 365 * 86_400_000;

/// Largest leverage a margin account may ask for; the same bound as the
/// risk gate's fractions.
const MAX_LEVERAGE: i64 = 100;
/// Largest annual borrow rate accepted (1000% a year): anything above is a typo.
const MAX_BORROW_RATE: i64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AccountType {
    /// No borrowing: gross exposure at most 1x equity.
    #[default]
    Cash,
    /// Borrowing up to `max-leverage` x equity, at `borrow-rate` a year.
    Margin,
}

/// `[account]`: what the account may borrow and what borrowing costs.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct AccountSection {
    #[serde(default, rename = "type")]
    pub kind: AccountType,
    /// Largest gross exposure (sum of every position's absolute value) as a
    /// multiple of equity. A cash account's is 1.
    #[serde(default = "one", deserialize_with = "crate::config::exact_decimal")]
    pub max_leverage: Decimal,
    /// Annual interest on negative cash, as a fraction (0.08 is 8%), accrued
    /// per bar for the time elapsed and charged to cash.
    #[serde(default, deserialize_with = "crate::config::exact_decimal")]
    pub borrow_rate: Decimal,
}

fn one() -> Decimal {
    Decimal::ONE
}

impl Default for AccountSection {
    fn default() -> Self {
        AccountSection { kind: AccountType::Cash, max_leverage: Decimal::ONE, borrow_rate: Decimal::ZERO }
    }
}

impl AccountSection {
    /// The most gross exposure the account allows, as a multiple of equity.
    pub fn leverage_cap(&self) -> Decimal {
        match self.kind {
            AccountType::Cash => Decimal::ONE,
            AccountType::Margin => self.max_leverage,
        }
    }

    /// The annual rate charged on negative cash; a cash account pays none
    /// (its only negative cash is the next-open gap, settled like a trade).
    pub fn interest_rate(&self) -> Decimal {
        match self.kind {
            AccountType::Cash => Decimal::ZERO,
            AccountType::Margin => self.borrow_rate,
        }
    }

    /// Every problem with the account and with risk limits that would borrow
    /// more than it allows, each naming its key and how to fix it.
    pub fn problems(&self, risk: &RiskLimits) -> Vec<String> {
        let mut problems = Vec::new();
        let opt_in = "to borrow, opt into a margin account: [account] type = \"margin\", max-leverage = 2, borrow-rate = 0.08";
        match self.kind {
            AccountType::Cash => {
                if self.max_leverage != Decimal::ONE {
                    problems.push(format!(
                        "account.max-leverage = {} needs a margin account (a cash account's is 1); {opt_in}",
                        self.max_leverage.normalize()
                    ));
                }
                if !self.borrow_rate.is_zero() {
                    problems.push(format!(
                        "account.borrow-rate = {} needs a margin account (a cash account never borrows); {opt_in}",
                        self.borrow_rate.normalize()
                    ));
                }
            }
            AccountType::Margin => {
                if self.max_leverage < Decimal::ONE || self.max_leverage > Decimal::from(MAX_LEVERAGE) {
                    problems.push(format!(
                        "account.max-leverage must be between 1 and {MAX_LEVERAGE}, got {}",
                        self.max_leverage.normalize()
                    ));
                }
                if self.borrow_rate < Decimal::ZERO || self.borrow_rate > Decimal::from(MAX_BORROW_RATE) {
                    problems.push(format!(
                        "account.borrow-rate must be an annual fraction between 0 and {MAX_BORROW_RATE} (0.08 is 8%), got {}",
                        self.borrow_rate.normalize()
                    ));
                }
            }
        }
        if !problems.is_empty() {
            // The account itself is wrong: comparing limits with it would
            // only repeat the same mistake.
            return problems;
        }
        let cap = self.leverage_cap();
        let over = |key: &str, value: Option<Decimal>, problems: &mut Vec<String>| {
            if let Some(v) = value.filter(|v| *v > cap) {
                let account = match self.kind {
                    AccountType::Cash => {
                        format!("a cash account cannot borrow (at most 1x equity); {opt_in}")
                    }
                    AccountType::Margin => {
                        format!("over the margin account's max-leverage of {}", cap.normalize())
                    }
                };
                problems.push(format!(
                    "risk.{key} = {} means {}x equity: {account}",
                    v.normalize(),
                    v.normalize()
                ));
            }
        };
        over("max-gross-exposure", risk.max_gross_exposure, &mut problems);
        over("max-position-fraction", risk.max_position_fraction, &mut problems);
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(text: &str) -> AccountSection {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn the_default_is_a_cash_account_that_never_borrows() {
        let a = AccountSection::default();
        assert_eq!(a, account(""));
        assert_eq!(a.leverage_cap(), Decimal::ONE);
        assert_eq!(a.interest_rate(), Decimal::ZERO);
        assert!(a.problems(&RiskLimits::default()).is_empty());
    }

    #[test]
    fn gross_exposure_above_one_needs_a_margin_account() {
        let risk: RiskLimits = toml::from_str("max-gross-exposure = 100").unwrap();
        let problems = AccountSection::default().problems(&risk);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("risk.max-gross-exposure = 100 means 100x equity"), "{problems:?}");
        assert!(problems[0].contains("type = \"margin\""), "{problems:?}");
        let margin = account("type = \"margin\"\nmax-leverage = 2\nborrow-rate = 0.08");
        assert_eq!(margin.leverage_cap(), Decimal::from(2));
        assert_eq!(margin.interest_rate(), Decimal::new(8, 2));
        let problems = margin.problems(&risk);
        assert!(problems[0].contains("over the margin account's max-leverage of 2"), "{problems:?}");
        let risk: RiskLimits = toml::from_str("max-gross-exposure = 2").unwrap();
        assert!(margin.problems(&risk).is_empty());
    }

    #[test]
    fn leverage_and_rate_out_of_range_are_named() {
        let problems = account("type = \"margin\"\nmax-leverage = 0.5\nborrow-rate = -0.01")
            .problems(&RiskLimits::default());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("account.max-leverage"));
        assert!(problems[1].starts_with("account.borrow-rate"));
        let problems = account("borrow-rate = 0.08").problems(&RiskLimits::default());
        assert!(problems[0].starts_with("account.borrow-rate = 0.08 needs a margin account"), "{problems:?}");
    }
}
