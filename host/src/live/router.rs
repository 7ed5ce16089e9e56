//! Order routing to the venue: the execution slot of every chain in a live
//! session.
//!
//! The host holds the venue's key and signs every request; no slice sees a
//! key, a socket or the venue's answers beyond the fills and refusals
//! reported here. Every call's outcome is journalled and committed with the
//! step it belongs to, so a restart's replay (which rebuilds the session
//! from its first bar, as in paper mode) gets exactly the answers the venue
//! gave, without asking again; the first call past the journal asks the
//! venue. An order's `client_order_id` is derived from the session and the
//! host's order id, so re-sending it after a timeout or a crash gets the
//! order the venue already has, never a second one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use strata_coinbase::{
    NewOrder, OrderKind, OrderStatus as VenueStatus, PlaceOutcome, Product, RestClient, VenueError,
};

use crate::excerpt::excerpt;
use crate::model::{Bar, Fill, Order, OrderEvent, OrderId, OrderType, Side, SliceKind, Symbol, Timestamp};
use crate::slice::{ExecutionSlice, Failure, Slice, SliceError, SliceHealth, SliceLabel, SliceResult};
use crate::time::iso;

/// How many times an order request that got no answer is sent again (with
/// the same client order id, so the venue cannot take it twice).
const CREATE_ATTEMPTS: u32 = 3;

/// One call of the execution slot and what came of it, as committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    pub symbol: String,
    pub call: Call,
    pub events: Vec<EventRecord>,
    /// The venue's id of the order a `submit` placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub venue_order_id: Option<String>,
    /// The ledger's quantity of the order a `submit` placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity: Option<String>,
    /// Orders this call found finished at the venue (nothing more to report).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<u64>,
    /// The fills this call reported, as `<host order id>:<venue trade id>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fill_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Call {
    Submit { order_id: u64, bar_ts: Timestamp },
    OnBar { bar_ts: Timestamp },
    Cancel { order_id: u64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum EventRecord {
    Filled { order_id: u64, ts: Timestamp, price: String, quantity: String, fee: String },
    Cancelled { order_id: u64, reason: String },
    Rejected { order_id: u64, reason: String },
}

impl EventRecord {
    #[cfg(test)]
    fn of(event: &OrderEvent) -> Self {
        let s = |d: Decimal| d.normalize().to_string();
        match event {
            OrderEvent::Filled(f) => EventRecord::Filled {
                order_id: f.order_id.0,
                ts: f.ts,
                price: s(f.price),
                quantity: s(f.quantity),
                fee: s(f.fee),
            },
            OrderEvent::Cancelled { order_id, reason } => {
                EventRecord::Cancelled { order_id: order_id.0, reason: reason.clone() }
            }
            OrderEvent::Rejected { order_id, reason } => {
                EventRecord::Rejected { order_id: order_id.0, reason: reason.clone() }
            }
        }
    }

    fn event(&self) -> Result<OrderEvent, String> {
        let d = |what: &str, t: &str| t.parse::<Decimal>().map_err(|_| format!("journal: bad {what} {t:?}"));
        Ok(match self {
            EventRecord::Filled { order_id, ts, price, quantity, fee } => OrderEvent::Filled(Fill {
                order_id: OrderId(*order_id),
                ts: *ts,
                price: d("price", price)?,
                quantity: d("quantity", quantity)?,
                fee: d("fee", fee)?,
            }),
            EventRecord::Cancelled { order_id, reason } => {
                OrderEvent::Cancelled { order_id: OrderId(*order_id), reason: reason.clone() }
            }
            EventRecord::Rejected { order_id, reason } => {
                OrderEvent::Rejected { order_id: OrderId(*order_id), reason: reason.clone() }
            }
        })
    }
}

/// An order the router sent (or is about to send).
#[derive(Debug, Clone)]
pub struct Routed {
    pub symbol: Symbol,
    pub client_order_id: String,
    pub venue_order_id: Option<String>,
    /// What the ledger's order asks for (the venue's may be rounded down).
    pub quantity: Decimal,
    pub reported: Decimal,
    pub fill_ids: BTreeSet<String>,
    pub finished: bool,
}

/// What every chain's execution slot shares: the venue client, the
/// products' rules, the journal, and the orders sent.
pub struct Venue {
    pub(crate) state: Mutex<VenueState>,
}

pub(crate) struct VenueState {
    pub client: Arc<RestClient>,
    pub session: String,
    pub dry_run: bool,
    pub granularity_ms: i64,
    pub max_bar_age: u32,
    pub products: BTreeMap<Symbol, Product>,
    /// Per symbol, the start of the newest candle the venue has closed.
    pub newest_closed: Arc<Mutex<BTreeMap<Symbol, Timestamp>>>,
    /// The committed journal not yet replayed, per symbol.
    pub replay: BTreeMap<Symbol, VecDeque<JournalRecord>>,
    /// This step's records, taken by the commit.
    pub journal: Vec<JournalRecord>,
    pub routed: BTreeMap<u64, Routed>,
    /// Every order request is written here (and synced) before it is sent:
    /// what a restart checks against the venue.
    pub intents: PathBuf,
    /// Intents of an earlier process that no committed step answered: the
    /// process stopped between writing them and committing the step.
    pub pending: BTreeMap<u64, Intent>,
    pub sent: u64,
    pub refused: u64,
    /// The operator paused new orders (`host ctl pause`).
    pub paused: bool,
}

/// An order request written before it is sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Intent {
    pub client_order_id: String,
    pub order_id: u64,
    pub symbol: String,
    pub side: String,
    pub base_size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_price: Option<String>,
    pub bar: String,
    pub dry_run: bool,
}

impl Venue {
    pub fn new(state: VenueState) -> Arc<Self> {
        Arc::new(Venue { state: Mutex::new(state) })
    }

    /// This step's journal, for the commit.
    pub fn take_journal(&self) -> Vec<JournalRecord> {
        std::mem::take(&mut self.lock().journal)
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, VenueState> {
        // A panic while routing fails the session (orchestrator::guarded);
        // the state is still the journal's, so carry on reading it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The execution slot of `symbol`'s chain. In a dry run, `simulated`
    /// (the config's execution slice) fills the orders the router checked.
    pub fn execution(
        self: &Arc<Self>,
        symbol: &Symbol,
        simulated: Option<Box<dyn ExecutionSlice>>,
    ) -> Box<dyn ExecutionSlice> {
        let plugin: Arc<str> =
            if simulated.is_some() { "coinbase (dry run)".into() } else { "coinbase".into() };
        Box::new(VenueExecution {
            label: SliceLabel { kind: SliceKind::Execution, plugin },
            symbol: symbol.clone(),
            venue: Arc::clone(self),
            health: SliceHealth::default(),
            simulated,
        })
    }

    /// Orders sent and not finished, for a stop that cancels them.
    pub fn working_venue_orders(&self) -> Vec<(String, String)> {
        let s = self.lock();
        s.routed
            .values()
            .filter(|r| !r.finished)
            .filter_map(|r| r.venue_order_id.clone().map(|id| (r.client_order_id.clone(), id)))
            .collect()
    }

    pub fn set_paused(&self, paused: bool) {
        self.lock().paused = paused;
    }

    pub fn counts(&self) -> (u64, u64) {
        let s = self.lock();
        (s.sent, s.refused)
    }
}

/// The execution slot of one chain in a live session.
struct VenueExecution {
    label: SliceLabel,
    symbol: Symbol,
    venue: Arc<Venue>,
    health: SliceHealth,
    simulated: Option<Box<dyn ExecutionSlice>>,
}

impl Slice for VenueExecution {
    fn label(&self) -> &SliceLabel {
        &self.label
    }
    fn health(&self) -> SliceHealth {
        self.health.clone()
    }
}

impl VenueExecution {
    fn fail(&mut self, message: String) -> SliceError {
        self.health.failures += 1;
        self.health.last_error = Some(message.clone());
        SliceError { label: self.label.clone(), failure: Failure::Returned(message) }
    }

    /// The committed answer to this call, while the restart's replay runs.
    fn replayed(&mut self, call: &Call) -> SliceResult<Option<Vec<OrderEvent>>> {
        let mut state = self.venue.lock();
        let Some(queue) = state.replay.get_mut(&self.symbol) else { return Ok(None) };
        let Some(record) = queue.pop_front() else { return Ok(None) };
        if &record.call != call {
            drop(state);
            return Err(self.fail(format!(
                "the replay asked {call:?} where the session committed {:?}: the session cannot be rebuilt",
                record.call
            )));
        }
        let events = apply(&mut state, &record).map_err(|e| e.to_string());
        drop(state);
        events.map(Some).map_err(|e| self.fail(e))
    }

    /// Journals a live call's outcome and applies it to the routing state.
    fn journal(&mut self, record: JournalRecord) -> SliceResult<Vec<OrderEvent>> {
        let mut state = self.venue.lock();
        let events = apply(&mut state, &record);
        state.journal.push(record);
        drop(state);
        events.map_err(|e| self.fail(e))
    }

    fn submit_live(&mut self, order: &Order, bar: &Bar, host: bool) -> SliceResult<Vec<OrderEvent>> {
        let call = Call::Submit { order_id: order.id.0, bar_ts: bar.ts };
        let reject = |reason: String| vec![EventRecord::Rejected { order_id: order.id.0, reason }];
        let mut record = JournalRecord {
            symbol: self.symbol.to_string(),
            call,
            events: Vec::new(),
            venue_order_id: None,
            quantity: None,
            finished: Vec::new(),
            fill_ids: Vec::new(),
        };
        if let Some(found) = self.adopt_pending(order)? {
            tracing::warn!(
                symbol = %self.symbol,
                "order {} was sent before the restart (client order id {}): the venue has it as {found}; adopted, not sent again",
                order.id,
                strata_coinbase::client_order_id(&self.venue.lock().session, order.id.0)
            );
            record.venue_order_id = Some(found);
            record.quantity = Some(order.quantity.normalize().to_string());
            return self.journal(record);
        }
        let (request, intent) = match self.build(order, bar, host) {
            Ok(built) => built,
            Err(reason) => {
                self.venue.lock().refused += 1;
                record.events = reject(reason);
                record.finished.push(order.id.0);
                return self.journal(record);
            }
        };
        self.write_intent(&intent).map_err(|e| self.fail(e))?;
        let client = Arc::clone(&self.venue.lock().client);
        let mut last_error = None;
        let mut outcome = None;
        for attempt in 1..=CREATE_ATTEMPTS {
            match client.create_order(&request) {
                Ok(o) => {
                    outcome = Some(o);
                    break;
                }
                // No answer: the venue may have the order. The same client
                // order id makes the next attempt return it, not a new one.
                Err(e @ (VenueError::Timeout(_) | VenueError::Transport(_))) => {
                    tracing::warn!(
                        symbol = %self.symbol,
                        "order {} ({}): no answer from the venue (attempt {attempt} of {CREATE_ATTEMPTS}): {e}",
                        order.id,
                        request.client_order_id
                    );
                    last_error = Some(e);
                }
                Err(e) => {
                    last_error = Some(e);
                    break;
                }
            }
        }
        match (outcome, last_error) {
            (Some(PlaceOutcome::Placed { order_id }), _) => {
                self.venue.lock().sent += 1;
                tracing::info!(
                    symbol = %self.symbol,
                    "order {} sent: {} {} {} (client order id {}, venue order {order_id})",
                    order.id,
                    intent.side,
                    intent.base_size,
                    self.symbol,
                    request.client_order_id
                );
                record.venue_order_id = Some(order_id);
                record.quantity = Some(order.quantity.normalize().to_string());
            }
            (Some(PlaceOutcome::Refused { error, message }), _) => {
                self.venue.lock().refused += 1;
                record.events =
                    reject(format!("the venue refused it: {} ({})", excerpt(&error), excerpt(&message)));
                record.finished.push(order.id.0);
            }
            (None, e @ (Some(VenueError::Timeout(_) | VenueError::Transport(_)) | None)) => {
                let e = e.map(|e| e.to_string()).unwrap_or_else(|| "no attempt was made".into());
                // Unknown whether it was placed: stop rather than guess. A
                // restart re-sends it with the same client order id.
                return Err(self.fail(format!(
                    "order {} ({}) got no answer from the venue after {CREATE_ATTEMPTS} attempts ({e}); \
                     it may be placed: restart the session to re-send it with the same client order id \
                     (the venue then returns the order it has, never a second one)",
                    order.id, request.client_order_id
                )));
            }
            (None, Some(e)) => {
                // Answered, but not with an order: nothing was placed.
                self.venue.lock().refused += 1;
                record.events = reject(format!("the venue did not take it: {e}"));
                record.finished.push(order.id.0);
            }
        }
        self.journal(record)
    }

    /// An order an earlier process sent but did not commit: the venue's id
    /// of it, if the venue has it (then it is not sent again).
    fn adopt_pending(&mut self, order: &Order) -> SliceResult<Option<String>> {
        let (client, intent) = {
            let mut s = self.venue.lock();
            match s.pending.remove(&order.id.0) {
                Some(intent) if !intent.dry_run => (Arc::clone(&s.client), intent),
                _ => return Ok(None),
            }
        };
        match find_by_client_id(&client, self.symbol.as_str(), &intent.client_order_id) {
            Ok(found) => Ok(found.map(|o| o.order_id)),
            Err(e) => Err(self.fail(format!(
                "looking for order {} (client order id {}, sent before the restart) at the venue: {e}",
                order.id, intent.client_order_id
            ))),
        }
    }

    /// The venue's order for the ledger's, with the venue's rules applied,
    /// or why it cannot be sent. A host liquidation (`host`) goes out while
    /// paused and on any bar: closing a position is never a stale decision.
    fn build(&self, order: &Order, bar: &Bar, host: bool) -> Result<(NewOrder, Intent), String> {
        let state = self.venue.lock();
        if state.paused && !host {
            return Err("not sent: the operator paused new orders (host ctl resume)".into());
        }
        let g = state.granularity_ms;
        if !host
            && let Some(newest) =
                state.newest_closed.lock().unwrap_or_else(|p| p.into_inner()).get(&self.symbol)
        {
            let behind = (newest - bar.ts).div_euclid(g);
            if behind >= i64::from(state.max_bar_age) {
                return Err(format!(
                    "not sent: decided on the bar of {}, {behind} bar(s) behind the venue's newest closed candle ({}); \
                     live.max-bar-age is {} (history and stale decisions are never traded)",
                    iso(bar.ts),
                    iso(*newest),
                    state.max_bar_age
                ));
            }
        }
        let product = state
            .products
            .get(&self.symbol)
            .ok_or_else(|| format!("not sent: no product rules for {}", self.symbol))?;
        let kind = match order.order_type {
            OrderType::Market => OrderKind::Market,
            OrderType::Limit => OrderKind::Limit {
                price: order.limit_price.ok_or("not sent: a limit order without a limit price")?,
                post_only: false,
            },
            other => {
                return Err(format!(
                    "not sent: the Coinbase router sends market and limit orders, not {}",
                    other.as_str()
                ));
            }
        };
        let limit = match kind {
            OrderKind::Limit { price, .. } => Some(price),
            OrderKind::Market => None,
        };
        let side = match order.side {
            Side::Buy => strata_coinbase::Side::Buy,
            Side::Sell => strata_coinbase::Side::Sell,
        };
        // A market order's notional limits are checked at the bar's close.
        let mut priced = product.clone();
        if limit.is_none() {
            priced.price = crate::model::price_to_decimal(bar.close).or(priced.price);
        }
        let (base_size, limit_price) = strata_coinbase::round_to_rules(&priced, side, order.quantity, limit)
            .map_err(|v| format!("not sent: {v}"))?;
        let kind = match (kind, limit_price) {
            (OrderKind::Limit { post_only, .. }, Some(price)) => OrderKind::Limit { price, post_only },
            (kind, _) => kind,
        };
        let client_order_id = strata_coinbase::client_order_id(&state.session, order.id.0);
        let intent = Intent {
            client_order_id: client_order_id.clone(),
            order_id: order.id.0,
            symbol: self.symbol.to_string(),
            side: order.side.as_str().into(),
            base_size: base_size.normalize().to_string(),
            limit_price: limit_price.map(|p| p.normalize().to_string()),
            bar: iso(bar.ts),
            dry_run: state.dry_run,
        };
        let request = NewOrder { client_order_id, product_id: product.id.clone(), side, base_size, kind };
        Ok((request, intent))
    }

    fn write_intent(&self, intent: &Intent) -> Result<(), String> {
        let path = self.venue.lock().intents.clone();
        let line = serde_json::to_string(intent).map_err(|e| e.to_string())? + "\n";
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()).and_then(|()| f.sync_data()));
        written.map_err(|e| format!("cannot record the order request in {}: {e}", path.display()))
    }

    /// What happened at the venue to this symbol's orders by the close of `bar`.
    fn on_bar_live(&mut self, bar: &Bar) -> SliceResult<Vec<OrderEvent>> {
        let (client, g, orders) = {
            let s = self.venue.lock();
            let orders: Vec<(u64, Routed)> = s
                .routed
                .iter()
                .filter(|(_, r)| r.symbol == self.symbol && !r.finished && r.venue_order_id.is_some())
                .map(|(id, r)| (*id, r.clone()))
                .collect();
            (Arc::clone(&s.client), s.granularity_ms, orders)
        };
        let mut record = JournalRecord {
            symbol: self.symbol.to_string(),
            call: Call::OnBar { bar_ts: bar.ts },
            events: Vec::new(),
            venue_order_id: None,
            quantity: None,
            finished: Vec::new(),
            fill_ids: Vec::new(),
        };
        let close = bar.ts.saturating_add(g);
        for (id, routed) in orders {
            let venue_id = routed.venue_order_id.clone().unwrap_or_default();
            let venue_error = |e: VenueError| format!("asking the venue about order {id} ({venue_id}): {e}");
            // The status first: fills listed after it include every fill it counts.
            let status = match client.order(&venue_id) {
                Ok(o) => o,
                Err(e) => return Err(self.fail(venue_error(e))),
            };
            let fills = match client.fills(std::slice::from_ref(&venue_id), &[], None) {
                Ok(f) => f,
                Err(e) => return Err(self.fail(venue_error(e))),
            };
            let mut fresh: Vec<_> = fills
                .into_iter()
                .filter(|f| !routed.fill_ids.contains(&f.trade_id))
                .map(|f| (venue_time_ms(&f.trade_time), f))
                .collect();
            fresh.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.trade_id.cmp(&b.1.trade_id)));
            let mut reported = routed.reported;
            let mut later = false;
            for (at, f) in fresh {
                match at {
                    // A fill after this bar closed belongs to a later bar.
                    Some(t) if t >= close => later = true,
                    Some(_) => {
                        reported += f.size;
                        record.fill_ids.push(format!("{id}:{}", f.trade_id));
                        record.events.push(EventRecord::Filled {
                            order_id: id,
                            ts: bar.ts,
                            price: f.price.normalize().to_string(),
                            quantity: f.size.normalize().to_string(),
                            fee: f.commission.normalize().to_string(),
                        });
                    }
                    None => {
                        return Err(self.fail(format!(
                            "the venue's fill {} of order {id} has a time that cannot be read: {:?}",
                            excerpt(&f.trade_id),
                            excerpt(&f.trade_time)
                        )));
                    }
                }
            }
            let terminal = matches!(
                status.status,
                VenueStatus::Filled | VenueStatus::Cancelled | VenueStatus::Expired | VenueStatus::Failed
            );
            if terminal && !later && reported >= status.filled_size {
                record.finished.push(id);
                if reported < routed.quantity {
                    let what = match status.status {
                        VenueStatus::Filled => "filled".to_owned(),
                        other => format!("{other:?}").to_lowercase(),
                    };
                    let why = if status.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", excerpt(&status.reason))
                    };
                    record.events.push(EventRecord::Cancelled {
                        order_id: id,
                        reason: format!(
                            "the venue {what} {} of {}{why}",
                            reported.normalize(),
                            routed.quantity.normalize()
                        ),
                    });
                }
            }
        }
        self.journal(record)
    }

    fn cancel_live(&mut self, order_id: OrderId) -> SliceResult<Vec<OrderEvent>> {
        let (client, routed) = {
            let s = self.venue.lock();
            (Arc::clone(&s.client), s.routed.get(&order_id.0).cloned())
        };
        let mut record = JournalRecord {
            symbol: self.symbol.to_string(),
            call: Call::Cancel { order_id: order_id.0 },
            events: Vec::new(),
            venue_order_id: None,
            quantity: None,
            finished: Vec::new(),
            fill_ids: Vec::new(),
        };
        if let Some(routed) = routed.filter(|r| !r.finished)
            && let Some(venue_id) = routed.venue_order_id.clone()
        {
            let asked = client.cancel_orders(std::slice::from_ref(&venue_id));
            let status = client.order(&venue_id);
            match (asked, status) {
                // Cancelled with nothing filled: closed now. Otherwise the
                // next bar reports the fills and then the cancellation.
                (_, Ok(o))
                    if matches!(o.status, VenueStatus::Cancelled) && o.filled_size == routed.reported =>
                {
                    record.finished.push(order_id.0);
                    record.events.push(EventRecord::Cancelled {
                        order_id: order_id.0,
                        reason: "cancelled at the venue".into(),
                    });
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(symbol = %self.symbol, "cancelling order {order_id} ({venue_id}) at the venue: {e}");
                }
                _ => {}
            }
        }
        self.journal(record)
    }
}

impl ExecutionSlice for VenueExecution {
    fn fill_model(&mut self) -> SliceResult<String> {
        match &mut self.simulated {
            Some(sim) => Ok(format!(
                "dry run: orders checked against Coinbase's rules, not sent; {}",
                sim.fill_model()?
            )),
            None => {
                Ok("orders routed to Coinbase Advanced Trade; fills, prices and fees are the venue's".into())
            }
        }
    }

    fn submit(&mut self, order: &Order, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.submit_as(order, bar, events, false)
    }

    fn submit_liquidation(
        &mut self,
        order: &Order,
        bar: &Bar,
        events: &mut Vec<OrderEvent>,
    ) -> SliceResult<()> {
        self.submit_as(order, bar, events, true)
    }

    fn on_bar(&mut self, bar: &Bar, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.health.calls += 1;
        if let Some(sim) = &mut self.simulated {
            return sim.on_bar(bar, events);
        }
        let out = match self.replayed(&Call::OnBar { bar_ts: bar.ts })? {
            Some(out) => out,
            None => self.on_bar_live(bar)?,
        };
        events.extend(out);
        Ok(())
    }

    fn cancel(&mut self, order_id: OrderId, events: &mut Vec<OrderEvent>) -> SliceResult<()> {
        self.health.calls += 1;
        if let Some(sim) = &mut self.simulated {
            return sim.cancel(order_id, events);
        }
        let out = match self.replayed(&Call::Cancel { order_id: order_id.0 })? {
            Some(out) => out,
            None => self.cancel_live(order_id)?,
        };
        events.extend(out);
        Ok(())
    }
}

impl VenueExecution {
    /// A strategy's order (`host` false) or the host's closing one.
    fn submit_as(
        &mut self,
        order: &Order,
        bar: &Bar,
        events: &mut Vec<OrderEvent>,
        host: bool,
    ) -> SliceResult<()> {
        self.health.calls += 1;
        if self.simulated.is_some() {
            return self.submit_dry(order, bar, events, host);
        }
        let call = Call::Submit { order_id: order.id.0, bar_ts: bar.ts };
        let out = match self.replayed(&call)? {
            Some(out) => out,
            None => self.submit_live(order, bar, host)?,
        };
        events.extend(out);
        Ok(())
    }

    /// A dry run checks and logs the venue order, then lets the simulator fill it.
    fn submit_dry(
        &mut self,
        order: &Order,
        bar: &Bar,
        events: &mut Vec<OrderEvent>,
        host: bool,
    ) -> SliceResult<()> {
        match self.build(order, bar, host) {
            Ok((request, intent)) => {
                self.write_intent(&intent).map_err(|e| self.fail(e))?;
                tracing::info!(
                    symbol = %self.symbol,
                    "dry run: would send {} {} {} (client order id {}); not sent",
                    intent.side,
                    intent.base_size,
                    request.product_id,
                    request.client_order_id
                );
                match self.simulated.as_mut() {
                    Some(simulated) => simulated.submit(order, bar, events),
                    None => {
                        Err(self.fail("a dry run without the execution slice that fills its orders".into()))
                    }
                }
            }
            Err(reason) => {
                events.push(OrderEvent::Rejected { order_id: order.id, reason });
                Ok(())
            }
        }
    }
}

/// The venue's order with this client order id, if it has one.
pub fn find_by_client_id(
    client: &RestClient,
    product: &str,
    client_order_id: &str,
) -> Result<Option<strata_coinbase::VenueOrder>, VenueError> {
    Ok(client.orders_of(&[product.to_owned()])?.into_iter().find(|o| o.client_order_id == client_order_id))
}

/// An order the venue may have filled (in part) without the ledger knowing yet.
pub struct InFlight {
    pub symbol: Symbol,
    pub order_id: String,
    pub client_order_id: String,
    pub unreported: Vec<strata_coinbase::Fill>,
}

/// Orders sent and not finished, and orders sent before a restart that no
/// committed step answered, with the fills the ledger has not applied.
pub fn in_flight(venue: &Venue) -> Result<Vec<InFlight>, VenueError> {
    let (client, routed, pending) = {
        let s = venue.lock();
        let routed: Vec<Routed> = s.routed.values().filter(|r| !r.finished).cloned().collect();
        let pending: Vec<Intent> = s.pending.values().filter(|i| !i.dry_run).cloned().collect();
        (Arc::clone(&s.client), routed, pending)
    };
    let mut out = Vec::new();
    for r in routed {
        let Some(id) = r.venue_order_id.clone() else { continue };
        let unreported = client
            .fills(std::slice::from_ref(&id), &[], None)?
            .into_iter()
            .filter(|f| !r.fill_ids.contains(&f.trade_id))
            .collect();
        out.push(InFlight { symbol: r.symbol, order_id: id, client_order_id: r.client_order_id, unreported });
    }
    for intent in pending {
        let Ok(symbol) = Symbol::new(&intent.symbol) else { continue };
        if let Some(order) = find_by_client_id(&client, &intent.symbol, &intent.client_order_id)? {
            let unreported = client.fills(std::slice::from_ref(&order.order_id), &[], None)?;
            out.push(InFlight {
                symbol,
                order_id: order.order_id,
                client_order_id: intent.client_order_id,
                unreported,
            });
        }
    }
    Ok(out)
}

/// The order requests an earlier process wrote, by host order id.
pub fn read_intents(path: &std::path::Path) -> anyhow::Result<BTreeMap<u64, Intent>> {
    use anyhow::Context;
    let text = match crate::files::read_text_bounded(path, 256 << 20, "order intents file") {
        Ok(text) => text,
        Err(e) if e.io_kind() == Some(std::io::ErrorKind::NotFound) => return Ok(BTreeMap::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A crash can cut the last line short: the order it names was not sent.
        let Ok(intent) = serde_json::from_str::<Intent>(line) else {
            if n + 1 == text.lines().count() {
                continue;
            }
            return Err(anyhow::anyhow!("line {} is not an order intent", n + 1))
                .with_context(|| format!("the order intents file {}", path.display()));
        };
        out.insert(intent.order_id, intent);
    }
    Ok(out)
}

/// Applies a record to the routing state and returns its events.
fn apply(state: &mut VenueState, record: &JournalRecord) -> Result<Vec<OrderEvent>, String> {
    let symbol = Symbol::new(&record.symbol)
        .map_err(|e| format!("journal: symbol {:?}: {e}", excerpt(&record.symbol)))?;
    if let Call::Submit { order_id, .. } = &record.call {
        let client_order_id = strata_coinbase::client_order_id(&state.session, *order_id);
        let quantity = match &record.quantity {
            Some(q) => q.parse::<Decimal>().map_err(|_| format!("journal: bad quantity {:?}", excerpt(q)))?,
            None => Decimal::ZERO,
        };
        state.routed.insert(
            *order_id,
            Routed {
                symbol: symbol.clone(),
                client_order_id,
                venue_order_id: record.venue_order_id.clone(),
                quantity,
                reported: Decimal::ZERO,
                fill_ids: BTreeSet::new(),
                finished: false,
            },
        );
    }
    let mut events = Vec::with_capacity(record.events.len());
    for e in &record.events {
        let event = e.event()?;
        if let OrderEvent::Filled(f) = &event
            && let Some(r) = state.routed.get_mut(&f.order_id.0)
        {
            r.reported += f.quantity;
        }
        events.push(event);
    }
    for entry in &record.fill_ids {
        let (order, trade) =
            entry.split_once(':').ok_or_else(|| format!("journal: bad fill id {:?}", excerpt(entry)))?;
        let order: u64 = order.parse().map_err(|_| format!("journal: bad fill id {:?}", excerpt(entry)))?;
        if let Some(r) = state.routed.get_mut(&order) {
            r.fill_ids.insert(trade.to_owned());
        }
    }
    for id in &record.finished {
        if let Some(r) = state.routed.get_mut(id) {
            r.finished = true;
        }
    }
    Ok(events)
}

/// A venue time (RFC 3339, any fraction of a second) as milliseconds.
pub fn venue_time_ms(text: &str) -> Option<Timestamp> {
    let (main, zone) = text.split_at(text.find(['Z', '+']).unwrap_or(text.len()));
    if !(zone == "Z" || zone == "+00:00" || zone.is_empty()) {
        return None;
    }
    let (seconds, fraction) = match main.split_once('.') {
        Some((s, f)) if f.bytes().all(|b| b.is_ascii_digit()) => (s, &f[..f.len().min(3)]),
        Some(_) => return None,
        None => (main, ""),
    };
    let text = if fraction.is_empty() { format!("{seconds}Z") } else { format!("{seconds}.{fraction}Z") };
    crate::paper::parse_feed_ts(&text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn venue_times_read_with_any_fraction() {
        assert_eq!(venue_time_ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(venue_time_ms("1970-01-01T00:00:01.123456Z"), Some(1123));
        assert_eq!(venue_time_ms("1970-01-01T00:00:01.5+00:00"), Some(1500));
        assert_eq!(venue_time_ms("1970-01-01T00:00:01-05:00"), None);
        assert_eq!(venue_time_ms("yesterday"), None);
    }

    #[test]
    fn journal_events_round_trip_exactly() {
        let fill = OrderEvent::Filled(Fill {
            order_id: OrderId(7),
            ts: 3_600_000,
            price: "43210.5".parse().unwrap(),
            quantity: "0.00012345".parse().unwrap(),
            fee: "0.032".parse().unwrap(),
        });
        let text = serde_json::to_string(&EventRecord::of(&fill)).unwrap();
        let back: EventRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(back.event().unwrap(), fill);
    }
}
