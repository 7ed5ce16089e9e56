//! JSON shapes of domain objects, in Coinbase's field names; decimals are strings.

use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::clock;
use crate::market::{Candle, Fill, Order, OrderKind, Side, Status};

/// Decimals as Coinbase writes them: strings, without trailing zeros from our arithmetic.
pub fn d(x: Decimal) -> String {
    x.normalize().to_string()
}

pub fn order_configuration(o: &Order) -> Value {
    match &o.kind {
        OrderKind::Market => json!({"market_market_ioc": {"base_size": d(o.base_size)}}),
        OrderKind::Limit { price, post_only } => json!({"limit_limit_gtc": {
            "base_size": d(o.base_size), "limit_price": d(*price), "post_only": post_only}}),
    }
}

fn order_type(o: &Order) -> &'static str {
    match o.kind {
        OrderKind::Market => "MARKET",
        OrderKind::Limit { .. } => "LIMIT",
    }
}

/// `GET /orders/historical/{id}`'s `order`.
pub fn order(o: &Order) -> Value {
    let value_after_fees = match o.side {
        Side::Buy => o.filled_value + o.total_fees,
        Side::Sell => o.filled_value - o.total_fees,
    };
    let completion = if o.base_size.is_zero() {
        Decimal::ZERO
    } else {
        (o.filled_size / o.base_size * Decimal::ONE_HUNDRED).round_dp(2)
    };
    json!({
        "order_id": o.order_id,
        "product_id": o.product_id,
        "user_id": "simulated-user",
        "order_configuration": order_configuration(o),
        "side": o.side.as_str(),
        "client_order_id": o.client_order_id,
        "status": o.status.as_str(),
        "time_in_force": match o.kind { OrderKind::Market => "IMMEDIATE_OR_CANCEL", _ => "GOOD_UNTIL_CANCELLED" },
        "created_time": clock::format(o.created_time),
        "completion_percentage": d(completion),
        "filled_size": d(o.filled_size),
        "average_filled_price": d(o.average_price()),
        "number_of_fills": o.number_of_fills.to_string(),
        "filled_value": d(o.filled_value),
        "pending_cancel": false,
        "size_in_quote": false,
        "total_fees": d(o.total_fees),
        "size_inclusive_of_fees": false,
        "total_value_after_fees": d(value_after_fees),
        "trigger_status": "INVALID_ORDER_TYPE",
        "order_type": order_type(o),
        "reject_reason": "",
        "settled": o.status != Status::Open,
        "product_type": "SPOT",
        "reject_message": "",
        "cancel_message": o.cancel_message,
        "order_placement_source": "RETAIL_ADVANCED",
        "outstanding_hold_amount": d(o.hold),
        "is_liquidation": false,
    })
}

/// An order as the `user` WebSocket channel carries it.
pub fn ws_order(o: &Order) -> Value {
    json!({
        "order_id": o.order_id,
        "client_order_id": o.client_order_id,
        "cumulative_quantity": d(o.filled_size),
        "leaves_quantity": d(if o.status == Status::Open { o.remaining() } else { Decimal::ZERO }),
        "avg_price": d(o.average_price()),
        "total_fees": d(o.total_fees),
        "status": o.status.as_str(),
        "product_id": o.product_id,
        "creation_time": clock::format(o.created_time),
        "order_side": o.side.as_str(),
        // The WS user channel spells order types in title case, unlike REST.
        "order_type": match o.kind { OrderKind::Market => "Market", _ => "Limit" },
        "cancel_reason": o.cancel_message,
        "reject_reason": "",
    })
}

pub fn fill(f: &Fill) -> Value {
    json!({
        "entry_id": f.entry_id,
        "trade_id": f.trade_id,
        "order_id": f.order_id,
        "trade_time": clock::format_micros(f.time, f.micros),
        "trade_type": "FILL",
        "price": d(f.price),
        "size": d(f.size),
        "commission": d(f.commission),
        "product_id": f.product_id,
        "sequence_timestamp": clock::format_micros(f.time, f.micros),
        "liquidity_indicator": f.liquidity,
        "size_in_quote": false,
        "user_id": "simulated-user",
        "side": f.side.as_str(),
    })
}

/// REST candle (no product id; the URL names it).
pub fn candle(c: &Candle) -> Value {
    json!({"start": c.start.to_string(), "low": d(c.low), "high": d(c.high),
           "open": d(c.open), "close": d(c.close), "volume": d(c.volume)})
}

pub fn ws_candle(product_id: &str, c: &Candle) -> Value {
    let mut v = candle(c);
    v["product_id"] = json!(product_id);
    v
}
