//! Live mode: paper mode's loop (the same chain, risk gate, ledger, state
//! database, audit log, `/health`, reload and kill switch) with two things
//! swapped: bars come from the venue's closed candles, and every chain's
//! execution slot routes orders to the venue (`router`), which the host signs
//! with a key no slice can reach.
//!
//! What live mode adds around the loop:
//! - Start: the key is loaded (from the file or variable `[live]` names;
//!   never logged or written anywhere), each symbol's product rules fetched,
//!   and for a new session the venue's balances recorded as its baseline.
//! - Resume: after the replay rebuilt the session from its journal, and
//!   before any new decision, the venue's balances must equal the baseline
//!   plus what the ledger did (`reconcile`), else the session refuses to trade.
//! - Stop: working orders are cancelled at the venue, or left (`on-stop`).
//! - Host liquidations (the drawdown kill switch, the skip-symbol and
//!   safe-mode fault policies, `host ctl flatten`) are market orders the host
//!   sends through the router, journalled like any order; the ledger changes
//!   by the venue's fills only.

pub mod config;
mod feed;
mod reconcile;
pub(crate) mod router;

use std::collections::{BTreeMap, VecDeque};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rust_decimal::Decimal;
use strata_coinbase::{Credentials, Endpoints, Product, RestClient};

use crate::config::LoadedConfig;
use crate::model::{Symbol, Timestamp};
use crate::paper::store::Store;
pub use config::{LiveSection, OnStop};
pub use feed::VenueFeed;
pub use reconcile::Baseline;
use router::{JournalRecord, Venue, VenueState};

/// What the command line says about a live session.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Live data; orders built, checked and logged, never sent.
    pub dry_run: bool,
    /// Confirms real orders without asking (unattended runs).
    pub yes: bool,
}

/// A live session's connection to its venue.
pub struct LiveSession {
    pub venue: Arc<Venue>,
    pub client: Arc<RestClient>,
    pub credentials: Arc<Credentials>,
    pub settings: LiveSection,
    pub options: LiveOptions,
    pub newest_closed: Arc<Mutex<BTreeMap<Symbol, Timestamp>>>,
    pub products: BTreeMap<Symbol, Product>,
    pub baseline: Baseline,
}

/// The venue's key, from where `[live]` says it is.
fn credentials(config: &LoadedConfig) -> Result<Credentials> {
    let live = &config.config.live;
    let file = config.path.display();
    match (&live.key_file, &live.key_env) {
        (Some(path), None) => {
            Credentials::from_key_file(path).map_err(|e| anyhow::anyhow!("live.key-file: {e}"))
        }
        (None, Some(var)) => Credentials::from_env(var).map_err(|e| anyhow::anyhow!("live.key-env: {e}")),
        (None, None) => bail!(
            "live mode needs the venue's API key, and {file} names none: set [live] key-file = \"PATH\" \
             (the CDP API key file Coinbase lets you download, JSON with \"name\" and \"privateKey\") or \
             key-env = \"VARIABLE\" (the same JSON in an environment variable). Or try paper mode, which needs no key"
        ),
        (Some(_), Some(_)) => bail!("{file}: [live] gives both key-file and key-env; keep one"),
    }
}

/// What a live session on a spot venue cannot do yet, refused before anything
/// is sent. Spot has no borrowing. (The host's own liquidations, from the
/// fault policies and the drawdown kill switch, are market orders through
/// the router in live mode, so every policy and risk limit runs.)
fn refuse_what_live_cannot_do(config: &LoadedConfig) -> Result<()> {
    let c = &config.config;
    let mut problems = Vec::new();
    if c.shorting.enabled {
        problems.push("shorting.enabled: Coinbase spot cannot sell what the account does not hold");
    }
    if c.account.kind == crate::account::AccountType::Margin {
        problems.push("account.type = \"margin\": Coinbase spot does not lend; use \"cash\"");
    }
    if problems.is_empty() {
        return Ok(());
    }
    bail!("{}: live mode cannot run this config yet:\n  {}", config.path.display(), problems.join("\n  "))
}

/// What can be checked before a session writes anything: the config runs
/// in live mode, and its key is there and readable.
pub fn preflight(config: &LoadedConfig, options: &LiveOptions) -> Result<()> {
    if !options.dry_run {
        refuse_what_live_cannot_do(config)?;
    }
    credentials(config).map(drop)
}

impl LiveSession {
    /// Connects to the venue and checks what a session needs before it
    /// starts: the key works, every symbol trades, one quote currency, and
    /// (for a new session) the account holds the start cash.
    pub fn connect(
        config: &LoadedConfig,
        symbols: &[Symbol],
        options: LiveOptions,
        store: &Store,
    ) -> Result<Self> {
        let settings = config.config.live.clone();
        if !options.dry_run {
            refuse_what_live_cannot_do(config)?;
        }
        let credentials = Arc::new(credentials(config)?);
        let endpoints = Endpoints {
            rest: settings.rest_url.clone(),
            ws_market: settings.ws_market_url.clone(),
            ws_user: settings.ws_user_url.clone(),
        };
        let client = Arc::new(
            RestClient::new(endpoints, Some(Arc::clone(&credentials)))
                .with_timeout(Duration::from_secs_f64(settings.request_timeout_s)),
        );
        let mut products = BTreeMap::new();
        for symbol in symbols {
            let product = client
                .product(symbol.as_str())
                .with_context(|| format!("asking {} for the product {symbol}", settings.rest_url))?;
            if product.trading_disabled || product.cancel_only {
                bail!(
                    "{symbol} does not trade at the venue now (trading disabled or cancel-only): the session cannot start"
                );
            }
            products.insert(symbol.clone(), product);
        }
        let quotes: std::collections::BTreeSet<&str> = products.values().map(|p| p.quote.as_str()).collect();
        if quotes.len() > 1 {
            bail!(
                "the symbols are quoted in {}: a session's ledger has one cash balance, so its symbols share one quote currency",
                quotes.into_iter().collect::<Vec<_>>().join(", ")
            );
        }
        let session = match store.meta("live_session")? {
            Some(id) => id,
            None => {
                let id = new_session_id(store.path());
                store.set_meta("live_session", &id)?;
                id
            }
        };
        let start_cash = config.config.run.start_cash;
        let baseline = match store.meta("live_baseline")? {
            Some(text) => Baseline::from_json(&text).with_context(|| {
                format!("the venue baseline in {} cannot be read", store.path().display())
            })?,
            None => {
                let baseline = Baseline::take(&client, &products, start_cash, options.dry_run)?;
                store.set_meta("live_baseline", &baseline.to_json())?;
                baseline
            }
        };
        let newest_closed = Arc::new(Mutex::new(BTreeMap::new()));
        let intents = store.path().with_extension("intents.jsonl");
        let venue = Venue::new(VenueState {
            client: Arc::clone(&client),
            session,
            dry_run: options.dry_run,
            granularity_ms: i64::from(settings.granularity_s) * 1000,
            max_bar_age: settings.max_bar_age,
            products: products.clone(),
            newest_closed: Arc::clone(&newest_closed),
            replay: BTreeMap::new(),
            journal: Vec::new(),
            routed: BTreeMap::new(),
            pending: router::read_intents(&intents)?,
            intents,
            sent: 0,
            refused: 0,
            paused: false,
        });
        Ok(LiveSession { venue, client, credentials, settings, options, newest_closed, products, baseline })
    }

    /// Hands the committed journal to the router, for the restart's replay.
    pub fn load_journal(&self, store: &Store) -> Result<()> {
        let mut replay: BTreeMap<Symbol, VecDeque<JournalRecord>> = BTreeMap::new();
        for (n, line) in store.venue_journal()?.iter().enumerate() {
            let record: JournalRecord = serde_json::from_str(line).with_context(|| {
                format!("venue journal record {} in {} cannot be read", n + 1, store.path().display())
            })?;
            let symbol = Symbol::new(&record.symbol)
                .map_err(|e| anyhow::anyhow!("venue journal record {}: {e}", n + 1))?;
            replay.entry(symbol).or_default().push_back(record);
        }
        let mut state = self.venue.lock();
        // Orders the journal holds were answered; the rest of the intents were
        // sent (or about to be) when the last process stopped.
        for records in replay.values() {
            for r in records {
                if let router::Call::Submit { order_id, .. } = r.call {
                    state.pending.remove(&order_id);
                }
            }
        }
        state.replay = replay;
        Ok(())
    }

    /// The journal records of the step about to be committed, as stored.
    pub fn journal_lines(&self) -> Vec<String> {
        self.venue.take_journal().iter().map(|r| serde_json::to_string(r).unwrap_or_default()).collect()
    }

    /// Asks before the first real order of a session, unless `--yes` or a dry run.
    pub fn confirm(&self, symbols: &[Symbol], start_cash: Decimal) -> Result<()> {
        if self.options.dry_run || self.options.yes {
            return Ok(());
        }
        let names = symbols.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
        let what = format!(
            "this session places real orders on {} for {names}, with up to {} {} of the account",
            self.settings.rest_url,
            start_cash.normalize(),
            self.baseline.quote
        );
        if !std::io::stdin().is_terminal() {
            bail!("{what}: pass --yes to confirm an unattended run, or --dry-run to send none");
        }
        eprint!("{what}.\nType yes to go on: ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer).context("reading the confirmation")?;
        if answer.trim() != "yes" {
            bail!("not confirmed: nothing was sent");
        }
        Ok(())
    }

    /// Before the first new decision of a resumed session: the venue's
    /// account must be what the baseline and the ledger say it is.
    pub fn reconcile(&self, ledger: &crate::portfolio::Ledger, symbols: &[Symbol]) -> Result<()> {
        reconcile::check(self, ledger, symbols)
    }

    /// What `summary.json` says about the venue (nothing secret: the key's
    /// location is in the config, its material nowhere).
    pub fn summary(&self) -> serde_json::Value {
        let (sent, refused) = self.venue.counts();
        let state = self.venue.lock();
        serde_json::json!({
            "name": self.settings.venue,
            "rest_url": self.settings.rest_url,
            "session": state.session,
            "dry_run": self.options.dry_run,
            "paused": state.paused,
            "orders_sent_by_this_process": sent,
            "orders_not_sent_or_refused_by_this_process": refused,
            "baseline": self.baseline,
        })
    }

    /// Cancels the orders still working at the venue (a stop with `on-stop = "cancel"`).
    pub fn cancel_working(&self) {
        if self.options.dry_run {
            return;
        }
        let working = self.venue.working_venue_orders();
        if working.is_empty() {
            return;
        }
        let ids: Vec<String> = working.iter().map(|(_, id)| id.clone()).collect();
        match self.client.cancel_orders(&ids) {
            Ok(results) => {
                for r in results {
                    if r.success {
                        tracing::warn!("stopping: cancelled order {} at the venue", r.order_id);
                    } else {
                        tracing::warn!(
                            "stopping: order {} was not cancelled: {}",
                            r.order_id,
                            r.failure_reason
                        );
                    }
                }
            }
            Err(e) => tracing::error!("stopping: cannot cancel the working orders {ids:?} at the venue: {e}"),
        }
    }
}

/// A session's id, in every client order id it sends: unique per state
/// database, stable across its restarts (it is stored there).
fn new_session_id(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let seed = format!("{}:{}:{}", now.as_nanos(), std::process::id(), path.display());
    Sha256::digest(seed.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
}
