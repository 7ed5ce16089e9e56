//! The venue's account against the ledger.
//!
//! A session trades part of an account that may hold more. So the host
//! records the venue's balances when the session starts (the baseline) and
//! afterwards expects, for every currency the session touches,
//! baseline + what the ledger did + fills the venue made that the ledger has
//! not seen yet (orders in flight). A difference beyond the tolerance means
//! something outside the session moved the account, or a fill went missing:
//! the session refuses to trade and says which currency, by how much.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use strata_coinbase::{Product, RestClient, Side as VenueSide};

use super::LiveSession;
use crate::model::Symbol;
use crate::portfolio::Ledger;

/// The venue's balances when the session started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The quote currency every symbol of the session trades in.
    pub quote: String,
    /// Total (available + on hold) per currency the session touches.
    pub balances: BTreeMap<String, Decimal>,
    pub start_cash: Decimal,
}

impl Baseline {
    pub fn from_json(text: &str) -> Result<Self> {
        Ok(serde_json::from_str(text)?)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the account; a session may not start with more cash than the
    /// account has available (a dry run only warns).
    pub fn take(
        client: &RestClient,
        products: &BTreeMap<Symbol, Product>,
        start_cash: Decimal,
        dry_run: bool,
    ) -> Result<Self> {
        let quote = products.values().next().map(|p| p.quote.clone()).unwrap_or_default();
        let accounts = client.accounts().context("reading the venue's balances")?;
        let mut balances = BTreeMap::new();
        let mut available = Decimal::ZERO;
        let currencies = std::iter::once(quote.as_str())
            .chain(products.values().map(|p| p.base.as_str()))
            .collect::<Vec<_>>();
        for currency in currencies {
            let (total, free) = accounts.iter().filter(|a| a.currency == currency).fold(
                (Decimal::ZERO, Decimal::ZERO),
                |(t, f), a| {
                    (t.saturating_add(a.available).saturating_add(a.hold), f.saturating_add(a.available))
                },
            );
            balances.insert(currency.to_owned(), total);
            if currency == quote {
                available = free;
            }
        }
        if available < start_cash {
            let message = format!(
                "the venue account has {} {quote} available and run.start-cash is {}: lower start-cash or fund the account",
                available.normalize(),
                start_cash.normalize()
            );
            if !dry_run {
                bail!("{message}");
            }
            tracing::warn!("dry run: {message}");
        }
        Ok(Baseline { quote, balances, start_cash })
    }
}

/// Compares the venue's account with what the session expects.
pub fn check(session: &LiveSession, ledger: &Ledger, symbols: &[Symbol]) -> Result<()> {
    if session.options.dry_run {
        return Ok(());
    }
    let baseline = &session.baseline;
    let mut expected: BTreeMap<String, Decimal> = baseline.balances.clone();
    let add = |map: &mut BTreeMap<String, Decimal>, currency: &str, amount: Decimal| -> Result<()> {
        let entry = map.entry(currency.to_owned()).or_default();
        *entry = entry.checked_add(amount).context("a balance beyond what a decimal holds")?;
        Ok(())
    };
    let cash_change =
        ledger.cash().checked_sub(baseline.start_cash).context("a balance beyond what a decimal holds")?;
    add(&mut expected, &baseline.quote, cash_change)?;
    for (i, symbol) in symbols.iter().enumerate() {
        let product = &session.products[symbol];
        add(&mut expected, &product.base, ledger.position(i))?;
    }
    // Fills the venue made that the ledger has not seen yet.
    let in_flight =
        super::router::in_flight(&session.venue).context("asking the venue about orders in flight")?;
    let mut notes = Vec::new();
    for flight in &in_flight {
        let product = &session.products[&flight.symbol];
        for fill in &flight.unreported {
            let notional = fill.price.checked_mul(fill.size).context("a fill beyond what a decimal holds")?;
            let (base, quote) = match fill.side {
                VenueSide::Buy => (fill.size, -(notional + fill.commission)),
                VenueSide::Sell => (-fill.size, notional - fill.commission),
            };
            add(&mut expected, &product.base, base)?;
            add(&mut expected, &baseline.quote, quote)?;
        }
        notes.push(format!(
            "order {} ({}) is in flight with {} fill(s) the ledger has not applied yet",
            flight.order_id,
            flight.client_order_id,
            flight.unreported.len()
        ));
    }
    let accounts = session.client.accounts().context("reading the venue's balances")?;
    let mut problems = Vec::new();
    for (currency, want) in &expected {
        let have = accounts
            .iter()
            .filter(|a| &a.currency == currency)
            .fold(Decimal::ZERO, |t, a| t.saturating_add(a.available).saturating_add(a.hold));
        let tolerance = if currency == &baseline.quote {
            session.settings.balance_tolerance
        } else {
            session
                .products
                .values()
                .find(|p| &p.base == currency)
                .map(|p| p.base_increment)
                .unwrap_or_default()
        };
        let off = have - want;
        if off.abs() > tolerance {
            problems.push(format!(
                "{currency}: the venue holds {} (available and on hold), the session expects {} \
                 (its baseline {} plus what its ledger did), off by {} (tolerance {})",
                have.normalize(),
                want.normalize(),
                baseline.balances.get(currency).copied().unwrap_or_default().normalize(),
                off.normalize(),
                tolerance.normalize()
            ));
        }
    }
    for note in &notes {
        tracing::info!("reconcile: {note}");
    }
    if !problems.is_empty() {
        bail!(
            "the venue's account disagrees with the session's ledger, so the session will not trade:\n  {}\n\
             Something outside this session moved the account (a manual trade, a transfer), or a fill was lost. \
             Check the account's fills at the venue; to trade from the account as it is now, start a new session \
             (a new --state database), which takes the venue's balances as its baseline",
            problems.join("\n  ")
        );
    }
    tracing::info!(
        "reconciled with the venue: balances as the ledger expects, {} order(s) in flight",
        in_flight.len()
    );
    Ok(())
}
