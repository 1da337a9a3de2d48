//! Orders (`POST /api/v1/orders`, [`super::api`]): the shop reports an order's status, and the
//! buyer is told with a template message (`order_<status>` in `config/notices.toml`).
//!
//! * **Forward only**: `created` → `paid` → `shipped`, and `refunded` after any of them (steps may
//!   be skipped; nothing follows `refunded`). A repeat of `(order_id, status)` answers **200**
//!   `{"duplicate": true}` and sends nothing, a new status **202** `{"queued": true}`; an older
//!   status, or another openid than the order's earlier notices named, **409**; bad input **400**.
//! * **One transaction**: the `orders` row, the notice (outbox key `order:<order_id>:<status>`)
//!   and any points commit together; one order's statuses are serialised (SQLite's write lock, a
//!   per-order advisory lock on PostgreSQL), so two racing statuses cannot both pass the check.
//! * **Known buyers only** (**422**): a bound member, a follower we recorded, or an OAuth sign-in
//!   (`h5_sessions.openid`) — every checkout token is for one. The message log is not consulted:
//!   it has no openid index (it is the webhook's hot path), and scanning it would not scale.
//! * **Points**: `paid` with an `amount_fen` earns the bound card `floor(amount_fen / 100 ×
//!   loyalty.points_per_yuan)` (reference `order:<order_id>`); `refunded` voids what is left.
//! * **Campaigns**: an optional `"checkout_token"` credits the order to the campaign and push wxoa
//!   issued it for, if wxoa issued it to this buyer (`super::funnel`); else it is unattributed.

use super::{Error, Refusal, bounded};
use crate::jobs::Kind;
use crate::jobs::outbox::{self, NewJob};
use crate::members::points::{self, Change, Kind as Points, Who};
use crate::store::{Store, Tx, TxConn};
use crate::with_tx;
use serde::Deserialize;

pub use super::Status;

/// An order notification as the shop sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    order_id: String,
    status: String,
    openid: String,
    sku: String,
    #[serde(default)]
    product_name: Option<String>,
    #[serde(default)]
    amount_fen: Option<i64>,
    #[serde(default)]
    tracking_no: Option<String>,
    #[serde(default)]
    at: Option<i64>,
    #[serde(default)]
    checkout_token: Option<String>,
}

/// A validated notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub order_id: String,
    pub status: Status,
    pub openid: String,
    pub sku: String,
    pub product_name: Option<String>,
    /// What was paid, if the shop said.
    pub amount_fen: Option<i64>,
    pub tracking_no: Option<String>,
    /// When it happened (unix seconds); when we received it if the shop did not say.
    pub at: i64,
    /// The checkout token the shop received with the buyer: credits the order to its campaign.
    pub checkout_token: Option<String>,
}

/// ¥100,000,000.00: more than any order, less than anything that overflows.
pub const MAX_AMOUNT_FEN: i64 = 10_000_000_000;

/// A notification from its JSON body, checked (`now_secs`: when it arrived).
pub fn parse(body: &[u8], now_secs: i64) -> Result<Notification, Error> {
    validate(super::parse(body)?, now_secs)
}

fn invalid(why: impl Into<String>) -> Error {
    Error::Refused(Refusal::Invalid(why.into()))
}

fn validate(b: Body, now_secs: i64) -> Result<Notification, Error> {
    let status =
        Status::parse(&b.status).ok_or_else(|| invalid("status must be created, paid, shipped or refunded"))?;
    bounded("order_id", &b.order_id, 1, 64)?;
    bounded("sku", &b.sku, 1, super::stock::MAX_SKU_CHARS)?;
    // WeChat openids are 28 characters of [A-Za-z0-9_-]; leave room, refuse anything else.
    if b.openid.is_empty()
        || b.openid.len() > 64
        || !b.openid.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
    {
        return Err(invalid("openid must be 1 to 64 letters, digits, '_' or '-'"));
    }
    if let Some(name) = &b.product_name {
        bounded("product_name", name, 1, super::stock::MAX_NAME_CHARS)?;
    }
    if b.amount_fen.is_some_and(|fen| !(0..=MAX_AMOUNT_FEN).contains(&fen)) {
        return Err(invalid(format!("amount_fen must be 0 to {MAX_AMOUNT_FEN}")));
    }
    if let Some(t) = &b.tracking_no {
        if status != Status::Shipped {
            return Err(invalid("tracking_no belongs to a shipped notification only"));
        }
        bounded("tracking_no", t, 1, 64)?;
    }
    if let Some(t) = &b.checkout_token
        && (t.is_empty() || t.len() > super::checkout::MAX_TOKEN_LEN)
    {
        return Err(invalid(format!("checkout_token must be 1 to {} characters", super::checkout::MAX_TOKEN_LEN)));
    }
    // Any time from 2020 to a day ahead of our clock.
    if b.at.is_some_and(|at| !(1_577_836_800..=now_secs + 86_400).contains(&at)) {
        return Err(invalid("at must be unix seconds, not in the future"));
    }
    Ok(Notification {
        order_id: b.order_id,
        status,
        openid: b.openid,
        sku: b.sku,
        product_name: b.product_name,
        amount_fen: b.amount_fen,
        tracking_no: b.tracking_no,
        at: b.at.unwrap_or(now_secs),
        checkout_token: b.checkout_token,
    })
}

/// `¥1,299.00` for 129900 fen.
pub fn yuan(fen: i64) -> String {
    let digits = (fen / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("¥{grouped}.{:02}", fen % 100)
}

/// What became of a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Recorded, and the buyer's message queued.
    Queued,
    /// This order already had this status: nothing done.
    Duplicate,
    /// Refused (409): `latest` is the latest status recorded for the order.
    Backwards { latest: Status },
    /// Refused (409): earlier notifications of the order named another buyer.
    OtherBuyer,
    /// Refused (422): not a follower we know.
    UnknownBuyer,
}

/// Serialises notifications of one order on PostgreSQL (SQLite's BEGIN IMMEDIATE already holds
/// the database's write lock). The first key namespaces wxoa's advisory locks.
async fn lock_order(tx: &mut Tx, order_id: &str) -> Result<(), sqlx::Error> {
    if let TxConn::Postgres(tx) = &mut tx.conn {
        sqlx::query("SELECT pg_advisory_xact_lock($2, hashtext($1))")
            .bind(order_id)
            .bind(crate::store::locks::ORDER)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Whether `openid` belongs to someone we know (see the module docs for why these tables).
async fn known_buyer(tx: &mut Tx, openid: &str) -> Result<bool, sqlx::Error> {
    let found: Option<i32> = with_tx!(tx, conn => sqlx::query_scalar(
        "SELECT 1 FROM members WHERE openid = $1 \
         UNION ALL SELECT 1 FROM followers WHERE openid = $1 \
         UNION ALL SELECT 1 FROM h5_sessions WHERE openid = $1 LIMIT 1")
        .bind(openid).fetch_optional(conn).await)?;
    Ok(found.is_some())
}

/// The statuses recorded for `order_id`, with the openid each named.
async fn recorded(tx: &mut Tx, order_id: &str) -> Result<Vec<(Status, String)>, sqlx::Error> {
    let rows: Vec<(String, String)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT status, openid FROM orders WHERE order_id = $1").bind(order_id).fetch_all(conn).await)?;
    // Rows are only ever written by `record`, with a valid status.
    Ok(rows.into_iter().filter_map(|(s, o)| Status::parse(&s).map(|s| (s, o))).collect())
}

/// The template message for `n`, for the outbox.
fn message(notices: &crate::notices::Notices, n: &Notification, product_name: &str) -> Result<NewJob, Error> {
    let ctx = minijinja::context! {
        order_id => n.order_id,
        status => n.status.as_str(),
        product => product_name,
        sku => n.sku,
        amount => n.amount_fen.map(yuan).unwrap_or_else(|| "—".to_owned()),
        tracking_no => n.tracking_no,
        time => crate::bookings::slot_label(n.at * 1000),
    };
    let message = notices.render(n.status.notice(), &n.openid, ctx)?;
    Ok(NewJob::new(Kind::Template, message, format!("order:{}:{}", n.order_id, n.status.as_str())))
}

/// The points change a notification makes, if any: `paid` earns, `refunded` voids the earn.
pub fn points_change(n: &Notification, loyalty: &crate::config::LoyaltyConfig) -> Option<Change> {
    let reference = format!("order:{}", n.order_id);
    let who = Who::Openid(n.openid.clone());
    let at = n.at * 1000;
    match n.status {
        Status::Paid => {
            let points = n.amount_fen? * loyalty.points_per_yuan_cents() / 10_000;
            if points <= 0 {
                return None;
            }
            let mut earn = Change::new(reference, who, Points::Earn, points.min(points::MAX_POINTS), at);
            earn.amount_fen = n.amount_fen;
            earn.note = Some(format!("网店订单 Online order {}", n.order_id));
            Some(earn)
        }
        Status::Refunded => {
            let mut void = Change::new(format!("{reference}:refund"), who, Points::Void, 0, at);
            void.voids = Some(reference);
            void.partial = true;
            void.note = Some(format!("订单退款 Order {} refunded", n.order_id));
            Some(void)
        }
        Status::Created | Status::Shipped => None,
    }
}

/// Records `n` (received as `raw`) and queues the buyer's message, in one transaction, with
/// the points it earns or takes back.
pub async fn record(
    store: &Store,
    notices: &crate::notices::Notices,
    rules: &points::Rules<'_>,
    n: &Notification,
    raw: &str,
) -> Result<Outcome, Error> {
    // The product's name for the message: as the shop sent it, else as it told us, else the SKU.
    let product_name = match &n.product_name {
        Some(name) => name.clone(),
        None => super::product(store, &n.sku).await?.map(|p| p.name).unwrap_or_else(|| n.sku.clone()),
    };
    let job = message(notices, n, &product_name)?;
    let mut tx = store.begin().await?;
    lock_order(&mut tx, &n.order_id).await?;
    let earlier = recorded(&mut tx, &n.order_id).await?;
    if earlier.iter().any(|(_, openid)| openid != &n.openid) {
        return Ok(Outcome::OtherBuyer);
    }
    if earlier.iter().any(|(s, _)| *s == n.status) {
        return Ok(Outcome::Duplicate);
    }
    if let Some(latest) = earlier.iter().map(|(s, _)| *s).max().filter(|latest| *latest > n.status) {
        return Ok(Outcome::Backwards { latest });
    }
    if !known_buyer(&mut tx, &n.openid).await? {
        return Ok(Outcome::UnknownBuyer);
    }
    let inserted = with_tx!(&mut tx, conn => sqlx::query(
        "INSERT INTO orders (order_id, status, openid, body, received_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (order_id, status) DO NOTHING")
        .bind(&n.order_id).bind(n.status.as_str()).bind(&n.openid).bind(raw).bind(store.now_ms())
        .execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if !inserted {
        return Ok(Outcome::Duplicate);
    }
    outbox::enqueue_tx(&mut tx, &job).await?;
    super::funnel::credit(&mut tx, &n.order_id, n.status, &n.openid, n.amount_fen, n.checkout_token.as_deref()).await?;
    if let Some(change) = points_change(n, rules.loyalty) {
        // Not a member, or nothing earned to take back: the order is recorded all the same.
        if let Some(points::Outcome::Rejected(why)) = points::post(&mut tx, rules, &[change]).await?.pop() {
            tracing::debug!(order_id = n.order_id, %why, "shop: no points for this order");
        }
    }
    tx.commit().await?;
    Ok(Outcome::Queued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(yuan(129_900), "¥1,299.00");
        assert_eq!(yuan(5), "¥0.05");
        assert_eq!(yuan(100_000_000), "¥1,000,000.00");
        assert_eq!(yuan(99_999), "¥999.99");
    }

    #[test]
    fn statuses_are_ordered() {
        assert!(Status::Created < Status::Paid && Status::Paid < Status::Shipped && Status::Shipped < Status::Refunded);
        assert_eq!(Status::parse("shipped"), Some(Status::Shipped));
        assert_eq!(Status::parse("Shipped"), None);
        assert_eq!(Status::parse("cancelled"), None);
    }

    #[test]
    fn bounds() {
        let now = 1_800_000_000;
        let base = serde_json::json!({"order_id": "SO-1", "status": "shipped", "openid": "oBuyer_1-x", "sku": "A",
            "amount_fen": 100, "tracking_no": "SF1", "at": now - 10});
        let ok = |v: &serde_json::Value| validate(serde_json::from_value(v.clone()).unwrap(), now);
        assert_eq!(ok(&base).unwrap().at, now - 10);
        let with = |k: &str, v: serde_json::Value| {
            let mut b = base.clone();
            b[k] = v;
            b
        };
        for bad in [
            with("status", "lost".into()),
            with("order_id", "".into()),
            with("order_id", "x".repeat(65).into()),
            with("openid", "o!".into()),
            with("amount_fen", (-1).into()),
            with("amount_fen", (MAX_AMOUNT_FEN + 1).into()),
            with("product_name", "n".repeat(201).into()),
            with("at", (now + 86_401).into()),
            with("at", 5.into()),
            with("tracking_no", "".into()),
        ] {
            assert!(ok(&bad).is_err(), "{bad}");
        }
        let paid = with("status", "paid".into());
        assert!(ok(&paid).is_err(), "tracking_no with paid");
    }
}
