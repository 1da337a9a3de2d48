//! The CRM's and the tills' signed API (signed as [`crate::http::signed`] describes, with
//! `crm.secret`):
//!
//! * `POST /api/v1/crm/transactions` — `{"transactions": [ 1 to 1000 items ]}`, each
//!   `{"reference", "card_no" | "phone", "kind": "earn" | "adjust" | "void", "points",
//!   "voids", "valid_until": "YYYY-MM-DD", "store_code", "amount_fen", "occurred_at": RFC 3339,
//!   "note"}`. Answers `200 {"applied", "duplicate", "rejected": [{"index", "reference",
//!   "error"}]}`: every item is judged on its own (a bad one is rejected with its reason, the
//!   rest applied) in one transaction. Malformed JSON or a batch of the wrong size is 400, a
//!   body over 256 KiB 413; neither changes anything.
//! * `GET /api/v1/crm/members/{card_no}` — the signature covers `"<timestamp>.<path>"`: card,
//!   tier, balance, the expiry schedule and the last 20 entries, for a till's screen.
//!
//! References are the caller's own, 1 to 64 of `A-Z a-z 0-9 _ . - / #`: never a `:`, which
//! wxoa's own references (`order:…`, `redemption:…`) always have, so neither can take the
//! other's.

use crate::error::ApiError;
use crate::http::signed::{self, Signer};
use crate::members::import::{normalise_card, normalise_phone};
use crate::members::ledger;
use crate::members::points::{self, Change, Kind, Outcome, Who};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The largest body a batch may have.
pub const MAX_BODY: usize = 256 * 1024;
/// Items in one batch at most.
pub const MAX_ITEMS: usize = 1000;
/// The largest purchase an item may record: ¥100,000,000.00.
pub const MAX_AMOUNT_FEN: i64 = 10_000_000_000;
/// How far ahead of our clock a till's `occurred_at` may be (clocks drift).
const FUTURE_SLACK_MS: i64 = 5 * 60 * 1000;
/// Points stay valid at most this long.
const MAX_VALIDITY_MS: i64 = 10 * 366 * 86_400_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/crm/transactions", post(post_transactions))
        .route("/api/v1/crm/members/{card_no}", get(get_member))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
}

fn crm(app: &AppState) -> Signer<'_> {
    Signer {
        name: "CRM",
        secret: app.config.crm.secret.expose(),
        max_skew_secs: app.config.crm.max_skew_secs,
        now: app.clock.now_secs(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    transactions: Vec<Value>,
}

/// An item as sent.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    reference: String,
    #[serde(default)]
    card_no: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    kind: String,
    #[serde(default)]
    points: Option<i64>,
    #[serde(default)]
    voids: Option<String>,
    #[serde(default)]
    valid_until: Option<String>,
    #[serde(default)]
    store_code: Option<String>,
    #[serde(default)]
    amount_fen: Option<i64>,
    #[serde(default)]
    occurred_at: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

async fn post_transactions(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = signed::authenticate(&crm(&app), &headers, body, MAX_BODY)?;
    let batch: Batch = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body must be {{\"transactions\": [...]}}: {e}")))?;
    let n = batch.transactions.len();
    if !(1..=MAX_ITEMS).contains(&n) {
        return Err(ApiError::BadRequest(format!("a batch has 1 to {MAX_ITEMS} transactions (got {n})")));
    }
    let now = app.clock.now_ms();
    let mut rejected: Vec<Value> = Vec::new();
    let mut changes: Vec<Change> = Vec::with_capacity(n);
    let mut index_of: Vec<usize> = Vec::with_capacity(n);
    for (i, raw) in batch.transactions.into_iter().enumerate() {
        let reference = raw.get("reference").and_then(Value::as_str).map(str::to_owned);
        match parse_item(raw, &app.config.loyalty, now) {
            Ok(change) => {
                changes.push(change);
                index_of.push(i);
            }
            Err(error) => rejected.push(json!({ "index": i, "reference": reference, "error": error.to_string() })),
        }
    }
    // Within the webhook's own bound: a CRM batch behind a held write lock gets a prompt 503
    // (and its references make sending it again safe), not a wait of the database's 10 s.
    let deadline = std::time::Duration::from_millis(app.config.bot.reply_deadline_ms);
    let write = async {
        let mut tx = app.store.begin().await?;
        let outcomes = points::post(&mut tx, &app.points_rules(), &changes).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(outcomes)
    };
    let outcomes = tokio::time::timeout(deadline, write).await.map_err(|_| {
        ApiError::Unavailable(format!(
            "the database did not take the batch within {} ms; send it again (its references make a repeat safe)",
            deadline.as_millis()
        ))
    })??;
    let (mut applied, mut duplicate) = (0, 0);
    for ((outcome, change), i) in outcomes.iter().zip(&changes).zip(index_of) {
        match outcome {
            Outcome::Applied { .. } => applied += 1,
            Outcome::Duplicate => duplicate += 1,
            Outcome::Rejected(why) => {
                rejected.push(json!({ "index": i, "reference": change.reference, "error": why.to_string() }))
            }
        }
    }
    if applied > 0 {
        app.outbox_wake.notify_one();
    }
    rejected.sort_by_key(|r| r["index"].as_u64());
    tracing::info!(applied, duplicate, rejected = rejected.len(), "crm: transactions");
    Ok(Json(json!({ "applied": applied, "duplicate": duplicate, "rejected": rejected })))
}

/// `A-Z a-z 0-9 _ . - / #`, 1 to 64 of them.
fn reference_ok(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-/#".contains(&b))
}

/// Why an item of a batch is rejected (the text is the item's `error`).
#[derive(Debug, thiserror::Error)]
enum Rejected {
    /// Not an item: a field missing, unknown or of the wrong type.
    #[error("{0}")]
    Malformed(#[from] serde_json::Error),
    /// A bad `reference`.
    #[error("reference must be 1 to 64 of A-Z a-z 0-9 _ . - / #")]
    Reference,
    /// An unknown `kind`.
    #[error("kind must be earn, adjust or void")]
    Kind,
    /// `card_no` that normalises to no card number.
    #[error("card_no is not a card number")]
    CardNo,
    /// `phone` that is no mainland mobile number.
    #[error("phone is not a mainland mobile number")]
    Phone,
    /// Neither `card_no` nor `phone` (only a void may name neither).
    #[error("card_no or phone is required")]
    NoMember,
    /// An earn's `points` missing or out of range.
    #[error("points must be 1 to {max} for an earn", max = points::MAX_POINTS)]
    EarnPoints,
    /// An adjust's `points` missing, 0 or out of range.
    #[error("points must be -{max} to {max}, not 0, for an adjust", max = points::MAX_POINTS)]
    AdjustPoints,
    /// A void's `points` out of range (it may give none).
    #[error("points must be -{max} to {max}", max = points::MAX_POINTS)]
    Points,
    /// A void's `voids` that is not a reference.
    #[error("voids must be the reference of an earlier earn or adjust")]
    VoidsReference,
    /// A void without `voids`.
    #[error("voids is required for a void")]
    VoidsMissing,
    /// `voids` on an earn or adjust.
    #[error("voids belongs to a void only")]
    VoidsNotVoid,
    /// `occurred_at` not RFC 3339.
    #[error("occurred_at must be RFC 3339, like 2026-12-01T10:00:00+08:00")]
    OccurredAt,
    /// `occurred_at` ahead of our clock (beyond the slack).
    #[error("occurred_at is in the future")]
    OccurredFuture,
    /// `occurred_at` before 2000.
    #[error("occurred_at is before 2000")]
    OccurredBefore2000,
    /// `valid_until` on a void or on points taken away.
    #[error("valid_until belongs to points that are added (an earn, a positive adjust)")]
    ValidUntilNotAdded,
    /// `valid_until` not a date.
    #[error("valid_until must be a date like 2027-12-31")]
    ValidUntil,
    /// `valid_until` already past.
    #[error("valid_until has passed")]
    ValidUntilPassed,
    /// `valid_until` more than ten years ahead.
    #[error("valid_until is more than ten years ahead")]
    ValidUntilTooFar,
    /// A bad `store_code`.
    #[error("store_code must be 1 to 32 of A-Z a-z 0-9 _ -")]
    StoreCode,
    /// `amount_fen` out of range.
    #[error("amount_fen must be 0 to {max}", max = MAX_AMOUNT_FEN)]
    AmountFen,
    /// The note is too long or has control characters.
    #[error(transparent)]
    Note(#[from] crate::text::BadField),
    /// An earn without `valid_until` whose default validity (these days) has already run out.
    #[error("occurred_at: points earned then lapsed already (valid {0} days); send valid_until")]
    Lapsed(u32),
}

/// One item as a change, or why it is rejected.
fn parse_item(raw: Value, loyalty: &crate::config::LoyaltyConfig, now: i64) -> Result<Change, Rejected> {
    let item: Item = serde_json::from_value(raw)?;
    if !reference_ok(&item.reference) {
        return Err(Rejected::Reference);
    }
    let kind = match Kind::parse(&item.kind) {
        Some(kind @ (Kind::Earn | Kind::Adjust | Kind::Void)) => kind,
        _ => return Err(Rejected::Kind),
    };
    let card = match &item.card_no {
        Some(raw) => Some(normalise_card(raw).ok_or(Rejected::CardNo)?),
        None => None,
    };
    let phone = match &item.phone {
        Some(raw) => Some(normalise_phone(raw).ok_or(Rejected::Phone)?),
        None => None,
    };
    let who = match (card, phone) {
        (Some(c), Some(p)) => Who::CardAndPhone(c, p),
        (Some(c), None) => Who::Card(c),
        (None, Some(p)) => Who::Phone(p),
        (None, None) if kind == Kind::Void => Who::OfVoided,
        (None, None) => return Err(Rejected::NoMember),
    };
    let max = points::MAX_POINTS;
    let points = match (kind, item.points) {
        (Kind::Earn, Some(p)) if (1..=max).contains(&p) => p,
        (Kind::Earn, _) => return Err(Rejected::EarnPoints),
        (Kind::Adjust, Some(p)) if p != 0 && p.abs() <= max => p,
        (Kind::Adjust, _) => return Err(Rejected::AdjustPoints),
        (_, None) => 0,
        (_, Some(p)) if p != 0 && p.abs() <= max => p,
        (_, Some(_)) => return Err(Rejected::Points),
    };
    let voids = match (kind, item.voids) {
        (Kind::Void, Some(v)) if reference_ok(&v) => Some(v),
        (Kind::Void, Some(_)) => return Err(Rejected::VoidsReference),
        (Kind::Void, None) => return Err(Rejected::VoidsMissing),
        (_, Some(_)) => return Err(Rejected::VoidsNotVoid),
        (_, None) => None,
    };
    let occurred_at = match &item.occurred_at {
        Some(raw) => {
            let at = chrono::DateTime::parse_from_rfc3339(raw).map_err(|_| Rejected::OccurredAt)?.timestamp_millis();
            if at > now + FUTURE_SLACK_MS {
                return Err(Rejected::OccurredFuture);
            }
            if at < 946_684_800_000 {
                return Err(Rejected::OccurredBefore2000);
            }
            at
        }
        None => now,
    };
    let valid_until = match &item.valid_until {
        Some(_) if !(kind == Kind::Earn || (kind == Kind::Adjust && points > 0)) => {
            return Err(Rejected::ValidUntilNotAdded);
        }
        Some(raw) => {
            let date = chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| Rejected::ValidUntil)?;
            let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp_millis();
            // Valid through that day, China time.
            let until = points::end_of_day(midnight - 8 * 3_600_000);
            if until <= now {
                return Err(Rejected::ValidUntilPassed);
            }
            if until > now + MAX_VALIDITY_MS {
                return Err(Rejected::ValidUntilTooFar);
            }
            Some(until)
        }
        None => None,
    };
    if let Some(code) = &item.store_code
        && !((1..=32).contains(&code.len())
            && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'))
    {
        return Err(Rejected::StoreCode);
    }
    if let Some(fen) = item.amount_fen
        && !(0..=MAX_AMOUNT_FEN).contains(&fen)
    {
        return Err(Rejected::AmountFen);
    }
    if let Some(note) = &item.note {
        crate::text::check_line("note", note, 1, 100)?;
    }
    let mut change = Change::new(item.reference, who, kind, points, occurred_at);
    change.voids = voids;
    change.valid_until = valid_until;
    change.store_code = item.store_code;
    change.amount_fen = item.amount_fen;
    change.note = item.note;
    if valid_until.is_none() && kind == Kind::Earn && points::default_until(loyalty, occurred_at) <= now {
        return Err(Rejected::Lapsed(loyalty.points_valid_days));
    }
    Ok(change)
}

async fn get_member(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Path(card_no): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or_else(|| uri.path());
    signed::authenticate_get(&crm(&app), &headers, path)?;
    let not_found = || ApiError::NotFound("no member has this card number".into());
    let card = normalise_card(&card_no).ok_or_else(not_found)?;
    let member = crate::members::by_card(&app.store, &card).await?.ok_or_else(not_found)?;
    let now = app.clock.now_ms();
    let (balance, history, earned) = tokio::try_join!(
        points::balance(&app.store, member.id, now),
        ledger::history(&app.store, member.id, 20, 0),
        points::earned(&app.store, &app.config.loyalty, member.id, now),
    )?;
    let expiring: Vec<Value> = balance
        .expiring
        .iter()
        .map(|(p, until)| json!({ "points": p, "valid_until": ledger::last_day(*until) }))
        .collect();
    let entries: Vec<Value> = history
        .iter()
        .map(|t| {
            json!({
                "reference": t.reference, "kind": t.kind, "points": t.points, "note": t.note,
                "store_code": t.store_code, "occurred_at": crate::crm::rfc3339(t.occurred_at),
            })
        })
        .collect();
    Ok(Json(json!({
        "card_no": member.card_no, "tier": member.tier, "balance": balance.points,
        "earned_in_window": earned, "expiring": expiring, "entries": entries,
    })))
}
