//! The simulator's store till and CRM (`wxoa dev` only).
//!
//! * **The till** rings up a purchase the way a store's POS would: a signed
//!   `POST /api/v1/crm/transactions` over HTTP to this very server, with `crm.secret`, a
//!   reference `POS-<store>-<time>` and `floor(amount × loyalty.points_per_yuan)` points — so
//!   what the follower then sees (the `points_changed` message, the balance on the card) is
//!   what a real till would cause.
//! * **The CRM** is a small receiver at `/simulator/crm/events` that `dev` points
//!   `crm.webhook_url` at: it checks each event's signature as a CRM would, keeps the last 200,
//!   and the page shows them beside the chat.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Events kept for the page.
const KEPT: usize = 200;

#[derive(Clone)]
pub struct Till(Arc<Inner>);

struct Inner {
    /// This server, where the till sends its calls.
    base: String,
    secret: String,
    points_per_yuan_cents: i64,
    store: crate::store::Store,
    http: reqwest::Client,
    /// Received events, oldest first, with their number.
    events: Mutex<(u64, VecDeque<(u64, Value)>)>,
}

impl Till {
    pub fn new(base: &str, secret: &str, points_per_yuan_cents: i64, store: crate::store::Store) -> Till {
        Till(Arc::new(Inner {
            base: base.to_owned(),
            secret: secret.to_owned(),
            points_per_yuan_cents,
            store,
            http: reqwest::Client::new(),
            events: Mutex::new((0, VecDeque::new())),
        }))
    }
}

pub fn router(till: Till) -> Router {
    Router::new()
        .route("/simulator/api/till", post(ring_up))
        .route("/simulator/api/card", get(card))
        .route("/simulator/api/crm-events", get(events))
        .route("/simulator/crm/events", post(receive))
        .with_state(till)
}

#[derive(Deserialize)]
struct Purchase {
    store_code: String,
    card_no: String,
    /// Yuan, as typed ("128" or "128.50").
    amount: String,
}

/// `128.50` → 12850 fen.
pub(super) fn fen(amount: &str) -> Option<i64> {
    let (yuan, cents) = amount.trim().split_once('.').unwrap_or((amount.trim(), ""));
    if yuan.is_empty() || cents.len() > 2 || !(yuan.bytes().chain(cents.bytes()).all(|b| b.is_ascii_digit())) {
        return None;
    }
    let cents = format!("{cents:0<2}");
    let fen = yuan.parse::<i64>().ok()?.checked_mul(100)?.checked_add(cents.parse::<i64>().ok()?)?;
    (1..=crate::crm::api::MAX_AMOUNT_FEN).contains(&fen).then_some(fen)
}

/// Rings up a purchase: the signed call a POS makes, and what the API answered.
async fn ring_up(State(till): State<Till>, Json(p): Json<Purchase>) -> Response {
    let Some(amount_fen) = fen(&p.amount) else {
        return (StatusCode::BAD_REQUEST, "an amount in yuan, like 128 or 128.50").into_response();
    };
    let now = till.0.store.now_ms();
    let points = amount_fen * till.0.points_per_yuan_cents / 10_000;
    let item = json!({
        "reference": format!("POS-{}-{now}", p.store_code), "card_no": p.card_no.trim(), "kind": "earn",
        "points": points, "store_code": p.store_code, "amount_fen": amount_fen,
        "occurred_at": crate::crm::rfc3339(now), "note": format!("门店消费 Purchase at {}", p.store_code),
    });
    let body = json!({ "transactions": [item] }).to_string();
    let timestamp = (now / 1000).to_string();
    let url = format!("{}/api/v1/crm/transactions", till.0.base);
    let call =
        crate::http::signed::signed_post(&till.0.http, url, &till.0.secret, &timestamp, body.clone()).send().await;
    match call {
        Ok(r) => {
            let status = r.status().as_u16();
            let answer: Value = r.json().await.unwrap_or(Value::Null);
            Json(json!({ "request": serde_json::from_str::<Value>(&body).unwrap_or_default(), "status": status, "answer": answer }))
                .into_response()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, format!("the till could not reach the server: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
struct Who {
    openid: String,
}

/// "Scans" the card on a follower's card page: their card number, if they have one bound.
async fn card(State(till): State<Till>, Query(w): Query<Who>) -> Response {
    match crate::members::by_openid(&till.0.store, &w.openid).await {
        Ok(Some(m)) => Json(json!({ "card_no": m.card_no })).into_response(),
        Ok(None) => (StatusCode::NOT_FOUND, "this follower has no card bound").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")).into_response(),
    }
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
}

async fn events(State(till): State<Till>, Query(q): Query<After>) -> Json<Value> {
    let kept = till.0.events.lock().unwrap();
    let new: Vec<Value> =
        kept.1.iter().filter(|(n, _)| *n > q.after).map(|(n, e)| json!({ "n": n, "event": e })).collect();
    Json(json!({ "events": new }))
}

/// The CRM's receiving end: a signed event, kept; anything else refused as a CRM would.
async fn receive(State(till): State<Till>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let now = till.0.store.clock.now_secs();
    let checked = crate::http::signed::verify(
        &till.0.secret,
        300,
        header(crate::http::signed::TIMESTAMP_HEADER),
        header(crate::http::signed::SIGNATURE_HEADER),
        &body,
        now,
    );
    if checked.is_err() {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let mut kept = till.0.events.lock().unwrap();
    // A repeat (the same id delivered again) is dropped, as the receiver is asked to.
    if !kept.1.iter().any(|(_, e)| e["id"] == event["id"]) {
        kept.0 += 1;
        let n = kept.0;
        kept.1.push_back((n, event));
        if kept.1.len() > KEPT {
            kept.1.pop_front();
        }
    }
    StatusCode::OK.into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn amounts_in_yuan() {
        assert_eq!(super::fen("128"), Some(12_800));
        assert_eq!(super::fen("128.5"), Some(12_850));
        assert_eq!(super::fen(" 0.05 "), Some(5));
        for bad in ["", "0", "-1", "1.234", "1e3", "¥12", "99999999999"] {
            assert_eq!(super::fen(bad), None, "{bad}");
        }
    }
}
