//! Injected failures, armed by `POST /sim/faults`. Each is one-shot (or counted) so a test
//! states exactly which request misbehaves.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{Value, json};

/// Faults the REST layer consumes. (Partial fills live on the exchange; WS faults on the hub.)
#[derive(Default, Debug)]
pub struct Faults {
    pub reject_next: Option<RejectNext>,
    pub rate_limit_next: u64,
    pub swallow_next_create: bool,
    /// Seconds the next create's answer is held before the connection is
    /// closed unanswered (the order stands): a client blocked between send
    /// and acknowledgement, for a test to kill.
    pub stall_next_create: Option<u64>,
    pub cancel_races_fill: bool,
}

#[derive(Debug, Clone)]
pub struct RejectNext {
    pub count: u64,
    pub error: String,
    pub message: String,
}

/// A parsed `/sim/faults` body; applied only if the whole body is valid.
#[derive(Default, Debug)]
pub struct FaultRequest {
    pub reject_next: Option<RejectNext>,
    pub rate_limit_next: Option<u64>,
    pub partial_fill_next: Option<Decimal>,
    pub drop_ws: bool,
    pub swallow_next_create: Option<bool>,
    pub stall_next_create: Option<u64>,
    pub cancel_races_fill: Option<bool>,
    pub balance_drift: Vec<(String, Decimal)>,
    pub skip_ws_seq: bool,
}

fn decimal(v: &Value, what: &str) -> Result<Decimal, String> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(format!("{what} must be a decimal string")),
    };
    Decimal::from_str(&s).map_err(|_| format!("{what}: {s:?} is not a decimal"))
}

fn flag(v: &Value, what: &str) -> Result<bool, String> {
    v.as_bool().ok_or_else(|| format!("{what} must be true or false"))
}

impl FaultRequest {
    pub fn parse(body: &[u8]) -> Result<FaultRequest, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let obj = v.as_object().ok_or("body must be a JSON object")?;
        let mut f = FaultRequest::default();
        for (k, v) in obj {
            match k.as_str() {
                "reject_next" => {
                    let count = v["count"].as_u64().unwrap_or(1);
                    let error = v["error"].as_str().unwrap_or("UNKNOWN_FAILURE_REASON").to_string();
                    let message = v["message"].as_str().unwrap_or("rejected by the simulator").to_string();
                    f.reject_next = Some(RejectNext { count, error, message });
                }
                "rate_limit_next" => {
                    f.rate_limit_next = Some(v.as_u64().ok_or("rate_limit_next must be a count")?);
                }
                "partial_fill_next" => {
                    let frac = decimal(v, "partial_fill_next")?;
                    if frac <= Decimal::ZERO || frac >= Decimal::ONE {
                        return Err("partial_fill_next must be strictly between 0 and 1".into());
                    }
                    f.partial_fill_next = Some(frac);
                }
                "drop_ws" => f.drop_ws = flag(v, k)?,
                "swallow_next_create" => f.swallow_next_create = Some(flag(v, k)?),
                "cancel_races_fill" => f.cancel_races_fill = Some(flag(v, k)?),
                "stall_next_create" => {
                    let secs = v
                        .as_u64()
                        .filter(|s| *s <= 3600)
                        .ok_or("stall_next_create must be seconds, at most 3600")?;
                    f.stall_next_create = Some(secs);
                }
                "skip_ws_seq" => f.skip_ws_seq = flag(v, k)?,
                "balance_drift" => {
                    let m = v.as_object().ok_or("balance_drift must map currency to amount")?;
                    for (ccy, amt) in m {
                        f.balance_drift.push((ccy.clone(), decimal(amt, &format!("balance_drift.{ccy}"))?));
                    }
                }
                other => return Err(format!("unknown fault {other:?}")),
            }
        }
        Ok(f)
    }
}

impl Faults {
    pub fn to_json(&self) -> Value {
        json!({
            "reject_next": self.reject_next.as_ref().map(|r| json!({"count": r.count, "error": r.error, "message": r.message})),
            "rate_limit_next": self.rate_limit_next,
            "swallow_next_create": self.swallow_next_create,
            "stall_next_create": self.stall_next_create,
            "cancel_races_fill": self.cancel_races_fill,
        })
    }

    /// Consumes one armed rejection, if any.
    pub fn take_reject(&mut self) -> Option<RejectNext> {
        let r = self.reject_next.as_mut()?;
        let out = r.clone();
        r.count = r.count.saturating_sub(1);
        if r.count == 0 {
            self.reject_next = None;
        }
        (out.count > 0).then_some(out)
    }

    /// Consumes one armed rate limit, if any.
    pub fn take_rate_limit(&mut self) -> bool {
        if self.rate_limit_next > 0 {
            self.rate_limit_next -= 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault_and_refuses_unknown_ones() {
        let body = br#"{"reject_next":{"count":2,"error":"INSUFFICIENT_FUND","message":"m"},
            "rate_limit_next":2,"partial_fill_next":"0.5","drop_ws":true,"swallow_next_create":true,
            "cancel_races_fill":true,"balance_drift":{"USD":"-5"},"skip_ws_seq":true}"#;
        let f = FaultRequest::parse(body).unwrap();
        assert_eq!(f.reject_next.unwrap().count, 2);
        assert_eq!(f.balance_drift, vec![("USD".to_string(), Decimal::from(-5))]);
        assert!(FaultRequest::parse(br#"{"explode":true}"#).is_err());
        assert!(FaultRequest::parse(br#"{"partial_fill_next":"1.5"}"#).is_err());
        assert!(FaultRequest::parse(b"not json").is_err());

        let mut armed = Faults {
            reject_next: Some(RejectNext { count: 2, error: "E".into(), message: "m".into() }),
            ..Faults::default()
        };
        assert!(armed.take_reject().is_some());
        assert!(armed.take_reject().is_some());
        assert!(armed.take_reject().is_none());
    }
}
