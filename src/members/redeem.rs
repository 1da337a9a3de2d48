//! Redeeming points for catalogue products. One transaction checks the balance, takes one from
//! the stock and posts the debit ([`super::points`]), so concurrent redemptions can neither
//! overdraw a member nor oversell an item: on PostgreSQL the member's row is locked first
//! (`FOR UPDATE`) and the stock is decremented only while it is positive; on SQLite the
//! transaction holds the write lock. The CRM hears `points.redeemed` in the same transaction.

use super::points::{self, Change, Kind, Outcome, Rejection, Who};
use super::{Error, Refusal};
use crate::crm::{self, Event};
use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: i64,
    pub name: String,
    pub points_cost: i64,
    pub stock: i64,
}

pub async fn catalogue(store: &Store) -> Result<Vec<Item>, sqlx::Error> {
    let rows: Vec<(i64, String, i64, i64)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, name, points_cost, stock FROM catalogue WHERE active = $1 ORDER BY points_cost, id").bind(true).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|(id, name, points_cost, stock)| Item { id, name, points_cost, stock }).collect())
}

/// Adds or replaces a catalogue item.
pub async fn put_item(store: &Store, item: &Item) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO catalogue (id, name, points_cost, stock, active) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET name = excluded.name, points_cost = excluded.points_cost, stock = excluded.stock, active = excluded.active")
        .bind(item.id).bind(&item.name).bind(item.points_cost).bind(item.stock).bind(true).execute(pool).await.map(|_| ()))
}

/// One catalogue item, if it is on offer.
pub async fn item(store: &Store, item_id: i64) -> Result<Option<Item>, sqlx::Error> {
    let row: Option<(i64, String, i64, i64)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, name, points_cost, stock FROM catalogue WHERE id = $1 AND active = $2").bind(item_id).bind(true).fetch_optional(pool).await)?;
    Ok(row.map(|(id, name, points_cost, stock)| Item { id, name, points_cost, stock }))
}

/// A redemption made: its number and what was redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    pub id: i64,
    pub item: Item,
}

/// Redeems `item_id` for `member_id` inside `tx`; refused (and then the caller rolls back) when
/// the item is unknown or gone or the balance is short. `notice` builds the confirmation to
/// queue in the same transaction (none if it returns `None`).
pub async fn redeem_in(
    tx: &mut Tx,
    rules: &points::Rules<'_>,
    member_id: i64,
    item_id: i64,
    notice: impl FnOnce(i64, &Item) -> Option<crate::jobs::outbox::NewJob>,
) -> Result<Redemption, Error> {
    // Serialises this member's redemptions: the balance read below stays true until commit.
    crm::lock_member(tx, member_id).await?;
    let item: Option<(i64, String, i64, i64)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT id, name, points_cost, stock FROM catalogue WHERE id = $1 AND active = $2").bind(item_id).bind(true).fetch_optional(conn).await)?;
    let Some((id, name, points_cost, stock)) = item else { return Err(Refusal::NoSuchItem.into()) };
    let item = Item { id, name, points_cost, stock };
    let now = tx.now_ms();
    let balance = points::points_in(tx, member_id, now).await?;
    if balance < item.points_cost {
        return Err(Refusal::NotEnoughPoints { balance, cost: item.points_cost }.into());
    }
    let took = with_tx!(tx, conn => sqlx::query("UPDATE catalogue SET stock = stock - 1 WHERE id = $1 AND stock > 0")
        .bind(item.id).execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if !took {
        return Err(Refusal::SoldOut.into());
    }
    let redemption: i64 = with_tx!(tx, conn => sqlx::query_scalar(
        "INSERT INTO redemptions (member_id, item_id, points, created_at) VALUES ($1, $2, $3, $4) RETURNING id")
        .bind(member_id).bind(item.id).bind(item.points_cost).bind(now).fetch_one(conn).await)?;
    let mut debit =
        Change::new(format!("redemption:{redemption}"), Who::Id(member_id), Kind::Redeem, -item.points_cost, now);
    debit.note = Some(format!("兑换 Redeemed {}", item.name));
    let after = match points::post(tx, rules, &[debit]).await?.pop() {
        Some(Outcome::Applied { balance, .. }) => balance,
        Some(Outcome::Rejected(Rejection::Insufficient { balance, .. })) => {
            return Err(Refusal::NotEnoughPoints { balance, cost: item.points_cost }.into());
        }
        other => {
            return Err(Error::Db(sqlx::Error::Protocol(format!("redemption {redemption} not posted: {other:?}"))));
        }
    };
    let event = Event::PointsRedeemed {
        redemption_id: redemption,
        item_id: item.id,
        item: item.name.clone(),
        points: item.points_cost,
        balance: after,
    };
    rules.crm.emit_for(tx, member_id, event).await?;
    if let Some(job) = notice(redemption, &item) {
        crate::jobs::outbox::enqueue_tx(tx, &job).await?;
    }
    Ok(Redemption { id: redemption, item })
}

/// The member's redemption `id` (for its result page), if it is theirs.
pub async fn redemption(store: &Store, member_id: i64, id: i64) -> Result<Option<Redemption>, sqlx::Error> {
    let row: Option<(i64, i64, String, i64, i64)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT r.id, c.id, c.name, r.points, c.stock FROM redemptions r JOIN catalogue c ON c.id = r.item_id \
         WHERE r.id = $1 AND r.member_id = $2").bind(id).bind(member_id).fetch_optional(pool).await)?;
    Ok(row.map(|(id, item_id, name, points_cost, stock)| Redemption {
        id,
        item: Item { id: item_id, name, points_cost, stock },
    }))
}
