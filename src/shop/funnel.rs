//! What a campaign's article link led to: opens, followers, checkouts, orders, payments.
//!
//! Every step is counted as it happens into `funnel_minutes`, one row per campaign, push and
//! minute, so the funnel and its per-minute series read at most a row a minute however many
//! opens a launch night brings (an aggregate over raw rows grew with them). The article link
//! names its push (`/buy/{campaign}?p={push}`, written into the push's draft); a link without
//! one counts under push 0.
//!
//! Orders are credited only by evidence: the shop's order notification names the checkout
//! token it received (`checkout_token`), and wxoa credits the order to the campaign and push
//! it issued that token for — if it issued it (tokens are kept by their SHA-256) and to the
//! same buyer. A forged, altered or someone else's token credits nothing, and an order without
//! one is unattributed: never guessed from timing.

use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};
use serde::Serialize;
use sha2::Digest;

/// The funnel's counters (columns of `funnel_minutes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Opens,
    Openers,
    Checkouts,
    Orders,
    Paid,
    RevenueFen,
    Refunds,
    RefundedFen,
}

impl Counter {
    fn column(self) -> &'static str {
        match self {
            Counter::Opens => "opens",
            Counter::Openers => "openers",
            Counter::Checkouts => "checkouts",
            Counter::Orders => "orders",
            Counter::Paid => "paid",
            Counter::RevenueFen => "revenue_fen",
            Counter::Refunds => "refunds",
            Counter::RefundedFen => "refunded_fen",
        }
    }
}

fn minute(ms: i64) -> i64 {
    ms.div_euclid(60_000)
}

/// Adds `adds` to this minute's row of `campaign_id` / `push_id`.
async fn bump(tx: &mut Tx, campaign_id: i64, push_id: i64, adds: &[(Counter, i64)]) -> Result<(), sqlx::Error> {
    let cols: Vec<&str> = adds.iter().map(|(c, _)| c.column()).collect();
    let values: Vec<String> = adds.iter().map(|(_, n)| n.to_string()).collect();
    let sets: Vec<String> = cols.iter().map(|c| format!("{c} = funnel_minutes.{c} + excluded.{c}")).collect();
    // Column names are the enum's, amounts integers: nothing from outside is written in.
    let sql = format!(
        "INSERT INTO funnel_minutes (campaign_id, push_id, minute, {}) VALUES ($1, $2, $3, {}) \
         ON CONFLICT (campaign_id, push_id, minute) DO UPDATE SET {}",
        cols.join(", "),
        values.join(", "),
        sets.join(", ")
    );
    let now = tx.now_ms();
    with_tx!(tx, conn => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(campaign_id).bind(push_id).bind(minute(now)).execute(conn).await.map(|_| ()))
}

/// The article link was opened (`GET /buy/{campaign}`).
pub async fn opened(store: &Store, campaign_id: i64, push_id: i64) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    bump(&mut tx, campaign_id, push_id, &[(Counter::Opens, 1)]).await?;
    tx.commit().await
}

/// A signed-in follower reached the campaign's landing: counted once a follower.
pub async fn opener(store: &Store, campaign_id: i64, push_id: i64, openid: &str) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    let first = with_tx!(&mut tx, conn => sqlx::query(
        "INSERT INTO link_openers (campaign_id, openid, push_id, first_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (campaign_id, openid) DO NOTHING")
        .bind(campaign_id).bind(openid).bind(push_id).bind(store.now_ms()).execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if first {
        bump(&mut tx, campaign_id, push_id, &[(Counter::Openers, 1)]).await?;
    }
    tx.commit().await
}

fn token_hash(token: &str) -> String {
    crate::text::hex(&sha2::Sha256::digest(token.as_bytes()))
}

/// A checkout link was handed to `openid`: kept by its token's hash, counted.
pub async fn checkout_issued(
    store: &Store,
    campaign_id: i64,
    push_id: i64,
    openid: &str,
    token: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    with_tx!(&mut tx, conn => sqlx::query(
        "INSERT INTO checkouts (token_sha256, campaign_id, push_id, openid, issued_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (token_sha256) DO NOTHING")
        .bind(token_hash(token)).bind(campaign_id).bind(push_id).bind(openid).bind(store.now_ms())
        .execute(conn).await.map(|_| ()))?;
    bump(&mut tx, campaign_id, push_id, &[(Counter::Checkouts, 1)]).await?;
    tx.commit().await
}

/// Counts a newly recorded order status for the campaign it is credited to, inside the
/// order's transaction: the order's earlier credit, or the campaign and push `checkout_token`
/// was issued for, if it was issued by us to this buyer. `amount_fen` is the notification's.
pub async fn credit(
    tx: &mut Tx,
    order_id: &str,
    status: super::Status,
    openid: &str,
    amount_fen: Option<i64>,
    checkout_token: Option<&str>,
) -> Result<(), sqlx::Error> {
    use super::Status;
    let earlier: Option<(i64, i64)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT campaign_id, push_id FROM order_credits WHERE order_id = $1").bind(order_id).fetch_optional(conn).await)?;
    let credit = match (earlier, checkout_token) {
        (Some(c), _) => c,
        (None, Some(token)) => {
            let issued: Option<(i64, i64, String)> = with_tx!(tx, conn => sqlx::query_as(
                "SELECT campaign_id, push_id, openid FROM checkouts WHERE token_sha256 = $1")
                .bind(token_hash(token)).fetch_optional(conn).await)?;
            match issued {
                Some((campaign, push, to)) if to == openid => {
                    let now = tx.now_ms();
                    with_tx!(tx, conn => sqlx::query(
                        "INSERT INTO order_credits (order_id, campaign_id, push_id, credited_at) VALUES ($1, $2, $3, $4)")
                        .bind(order_id).bind(campaign).bind(push).bind(now).execute(conn).await.map(|_| ()))?;
                    (campaign, push)
                }
                Some(_) => {
                    tracing::warn!(
                        order_id,
                        "shop: an order named a checkout token issued to someone else; not credited"
                    );
                    return Ok(());
                }
                None => {
                    tracing::warn!(order_id, "shop: an order named a checkout token we did not issue; not credited");
                    return Ok(());
                }
            }
        }
        (None, None) => return Ok(()),
    };
    let fen = amount_fen.unwrap_or(0);
    let adds: &[(Counter, i64)] = match status {
        Status::Created => &[(Counter::Orders, 1)],
        Status::Paid => &[(Counter::Paid, 1), (Counter::RevenueFen, fen)],
        Status::Shipped => return Ok(()),
        Status::Refunded => &[(Counter::Refunds, 1), (Counter::RefundedFen, fen)],
    };
    bump(tx, credit.0, credit.1, adds).await
}

/// A funnel's figures (the whole campaign, or one push).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Opens of the article link.
    pub opens: i64,
    /// Followers who reached the landing signed in, each once.
    pub openers: i64,
    /// Checkout links issued.
    pub checkouts: i64,
    /// Orders created, paid and refunded that were credited to the campaign.
    pub orders: i64,
    pub paid: i64,
    pub revenue_fen: i64,
    pub refunds: i64,
    pub refunded_fen: i64,
}

const SUMS: &str = "CAST(SUM(opens) AS BIGINT), CAST(SUM(openers) AS BIGINT), CAST(SUM(checkouts) AS BIGINT), \
                    CAST(SUM(orders) AS BIGINT), CAST(SUM(paid) AS BIGINT), CAST(SUM(revenue_fen) AS BIGINT), \
                    CAST(SUM(refunds) AS BIGINT), CAST(SUM(refunded_fen) AS BIGINT)";

type SumRow = (i64, i64, i64, i64, i64, i64, i64, i64, i64);

fn figures_of(r: &SumRow) -> Figures {
    Figures {
        opens: r.1,
        openers: r.2,
        checkouts: r.3,
        orders: r.4,
        paid: r.5,
        revenue_fen: r.6,
        refunds: r.7,
        refunded_fen: r.8,
    }
}

/// The campaign's figures by push (push 0: links naming none), in push order.
pub async fn by_push(store: &Store, campaign_id: i64) -> Result<Vec<(i64, Figures)>, sqlx::Error> {
    let sql =
        format!("SELECT push_id, {SUMS} FROM funnel_minutes WHERE campaign_id = $1 GROUP BY push_id ORDER BY push_id");
    let rows: Vec<SumRow> =
        with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(campaign_id).fetch_all(pool).await)?;
    Ok(rows.iter().map(|r| (r.0, figures_of(r))).collect())
}

/// One minute of the launch night.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// The minute's start, unix ms.
    pub at: i64,
    pub opens: i64,
    pub checkouts: i64,
    pub paid: i64,
}

/// The longest window a series may ask for: a week of minutes.
pub const MAX_SERIES_MINUTES: i64 = 7 * 24 * 60;

/// The campaign's minutes with something in them, from `from` to `to` (unix ms), all pushes
/// together.
pub async fn series(store: &Store, campaign_id: i64, from: i64, to: i64) -> Result<Vec<Minute>, sqlx::Error> {
    let rows: Vec<(i64, i64, i64, i64)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT minute, CAST(SUM(opens) AS BIGINT), CAST(SUM(checkouts) AS BIGINT), CAST(SUM(paid) AS BIGINT) \
         FROM funnel_minutes WHERE campaign_id = $1 AND minute >= $2 AND minute < $3 GROUP BY minute ORDER BY minute")
        .bind(campaign_id).bind(minute(from)).bind(minute(to + 59_999)).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|(m, opens, checkouts, paid)| Minute { at: m * 60_000, opens, checkouts, paid }).collect())
}
