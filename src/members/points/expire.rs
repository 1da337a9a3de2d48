//! Lapsing points. Credits lapse at the end of a day (China time); the hourly [`expire`]
//! zeroes the lots past their time and writes their `expire` entries, so the ledger shows
//! what lapsed and when. [`upgrade`] builds, once, the lots of ledgers written before lots
//! existed, with the `expire` entries those ledgers were missing.

use super::{BATCH, Rules};
use crate::crm::{self, Event, MemberRef, PointsChanged};
use crate::jobs::outbox;
use crate::members::ledger::{self, NEVER};
use crate::store::Store;
use crate::{with_pool, with_tx};
use std::collections::{BTreeMap, HashMap};

/// Records lapsed points: every lot past its time with points left is zeroed and an `expire`
/// entry written for it (one per member and lapse time, so running again adds nothing), in
/// transactions of a few hundred lots. Returns how many entries it wrote.
pub async fn expire(store: &Store, rules: &Rules<'_>) -> Result<usize, sqlx::Error> {
    let now = rules.now;
    let mut written = 0;
    // Nothing lapsed (most hours): no transaction, so no write lock taken for nothing.
    let any: Option<i32> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT 1 FROM points_lots WHERE valid_until <= $1 AND remaining > 0 LIMIT 1").bind(now).fetch_optional(pool).await)?;
    if any.is_none() {
        return Ok(0);
    }
    loop {
        let mut tx = store.begin().await?;
        let members: Vec<i64> = with_tx!(&mut tx, conn => sqlx::query_scalar(
            "SELECT DISTINCT member_id FROM points_lots WHERE valid_until <= $1 AND remaining > 0 ORDER BY member_id LIMIT $2")
            .bind(now).bind(BATCH).fetch_all(conn).await)?;
        if members.is_empty() {
            break;
        }
        let lock = if tx.is_postgres() { " ORDER BY id FOR UPDATE" } else { "" };
        let refs: HashMap<i64, Option<String>> =
            select_in!(&mut tx, (i64, Option<String>), "SELECT id, card_no FROM members WHERE id", members, lock)
                .into_iter()
                .collect();
        let suffix = format!(" AND valid_until <= {now} AND remaining > 0 ORDER BY member_id, valid_until");
        let lapsed = select_in!(
            &mut tx,
            (i64, i64, i64),
            "SELECT member_id, valid_until, remaining FROM points_lots WHERE member_id",
            members,
            suffix
        );
        let live: HashMap<i64, i64> = select_in!(
            &mut tx,
            (i64, i64),
            "SELECT member_id, CAST(SUM(remaining) AS BIGINT) FROM points_lots WHERE member_id",
            members,
            format!(" AND valid_until > {now} AND remaining > 0 GROUP BY member_id")
        )
        .into_iter()
        .collect();
        let mut jobs = Vec::new();
        for (member_id, until, remaining) in lapsed {
            let reference = format!("expire:{member_id}:{until}");
            let n = with_tx!(&mut tx, conn => sqlx::query(
                "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at, occurred_at, earned) \
                 VALUES ($1, 'expire', $2, NULL, $3, '积分过期 Expired', $4, $4, 0) ON CONFLICT (reference) DO NOTHING")
                .bind(member_id).bind(-remaining).bind(&reference).bind(until)
                .execute(conn).await.map(|r| r.rows_affected()))?;
            with_tx!(&mut tx, conn => sqlx::query("UPDATE points_lots SET remaining = 0 WHERE member_id = $1 AND valid_until = $2")
                .bind(member_id).bind(until).execute(conn).await.map(|_| ()))?;
            if n == 1 {
                written += 1;
                let member = MemberRef { card_no: refs.get(&member_id).cloned().flatten(), id: member_id };
                let event = Event::PointsChanged(PointsChanged {
                    reference,
                    kind: ledger::Kind::Expire.as_str().into(),
                    points: -remaining,
                    balance: live.get(&member_id).copied().unwrap_or(0),
                    occurred_at: crm::rfc3339(until),
                    voids: None,
                    store_code: None,
                    amount_fen: None,
                    valid_until: None,
                });
                jobs.extend(rules.crm.job(&member, &event, now));
            }
        }
        outbox::enqueue_many_tx(&mut tx, &jobs).await?;
        tx.commit().await?;
    }
    Ok(written)
}

/// Builds the lots of ledgers written before lots existed (migration 0011), once: each
/// member's live lots as the ledger's replay gives them, and an `expire` entry for each lapse
/// the old hourly job had not recorded yet. Every instance may call it at start; the first
/// does it, in one transaction.
pub async fn upgrade(store: &Store) -> Result<(), sqlx::Error> {
    let now = store.now_ms();
    let pending: Option<i32> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT 1 FROM wxoa_upgrades WHERE name = 'points_lots' AND done_at IS NULL").fetch_optional(pool).await)?;
    if pending.is_none() {
        return Ok(());
    }
    let mut tx = store.begin().await?;
    let claimed = with_tx!(&mut tx, conn => sqlx::query(
        "UPDATE wxoa_upgrades SET done_at = $1 WHERE name = 'points_lots' AND done_at IS NULL")
        .bind(now).execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if !claimed {
        return Ok(());
    }
    let members: Vec<i64> = with_tx!(&mut tx, conn => sqlx::query_scalar(
        "SELECT DISTINCT l.member_id FROM points_ledger l WHERE NOT EXISTS (SELECT 1 FROM points_lots p WHERE p.member_id = l.member_id)")
        .fetch_all(conn).await)?;
    for member_id in &members {
        let rows: Vec<ledger::EntryRow> =
            with_tx!(&mut tx, conn => sqlx::query_as(ledger::ENTRIES_SQL).bind(member_id).fetch_all(conn).await)?;
        let replay = ledger::compute(&ledger::entries(rows), now);
        let mut lots: BTreeMap<i64, i64> = BTreeMap::new();
        for (points, until) in &replay.balance.expiring {
            *lots.entry(*until).or_default() += points;
        }
        let never = replay.balance.points - replay.balance.expiring.iter().map(|(p, _)| p).sum::<i64>();
        if never > 0 {
            lots.insert(NEVER, never);
        }
        for (until, remaining) in lots {
            with_tx!(&mut tx, conn => sqlx::query("INSERT INTO points_lots (member_id, valid_until, remaining) VALUES ($1, $2, $3)")
                .bind(member_id).bind(until).bind(remaining).execute(conn).await.map(|_| ()))?;
        }
        for (points, until) in replay.lapsed {
            with_tx!(&mut tx, conn => sqlx::query(
                "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at, occurred_at, earned) \
                 VALUES ($1, 'expire', $2, NULL, $3, '积分过期 Expired', $4, $4, 0) ON CONFLICT (reference) DO NOTHING")
                .bind(member_id).bind(-points).bind(format!("expire:{member_id}:{until}")).bind(until)
                .execute(conn).await.map(|_| ()))?;
        }
    }
    tx.commit().await?;
    if !members.is_empty() {
        tracing::info!(members = members.len(), "points: lots built from the existing ledgers");
    }
    Ok(())
}
