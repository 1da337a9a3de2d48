//! Points balances from the ledger. Earned (and imported) points come in lots that expire on
//! their `valid_until`; redemptions, expiries and negative adjustments consume the soonest-
//! expiring lots first. What remains of unexpired lots is the balance, and their expiry dates
//! are the schedule a follower sees ("300 points expire on 2026-12-31").

use crate::store::Store;
use crate::with_pool;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balance {
    pub points: i64,
    /// (points, expires at unix ms), soonest first; lots without an expiry are not listed.
    pub expiring: Vec<(i64, i64)>,
}

/// A ledger entry as the balance needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub points: i64,
    pub valid_until: Option<i64>,
}

pub fn compute(entries: &[Entry], now: i64) -> Balance {
    let mut lots: Vec<(i64, i64)> =
        entries.iter().filter(|e| e.points > 0).map(|e| (e.valid_until.unwrap_or(i64::MAX), e.points)).collect();
    lots.sort_unstable();
    let mut debit: i64 = entries.iter().filter(|e| e.points < 0).map(|e| -e.points).sum();
    for lot in lots.iter_mut() {
        let used = debit.min(lot.1);
        lot.1 -= used;
        debit -= used;
    }
    let live: Vec<(i64, i64)> = lots.into_iter().filter(|(until, left)| *left > 0 && *until > now).collect();
    Balance {
        points: live.iter().map(|(_, p)| p).sum(),
        expiring: live.iter().filter(|(until, _)| *until != i64::MAX).map(|(until, p)| (*p, *until)).collect(),
    }
}

pub async fn balance(store: &Store, member_id: i64, now: i64) -> Result<Balance, sqlx::Error> {
    let rows: Vec<(i64, Option<i64>)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT points, valid_until FROM points_ledger WHERE member_id = $1").bind(member_id).fetch_all(pool).await)?;
    let entries: Vec<Entry> = rows.into_iter().map(|(points, valid_until)| Entry { points, valid_until }).collect();
    Ok(compute(&entries, now))
}

/// A line of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub kind: String,
    pub points: i64,
    pub note: Option<String>,
    pub created_at: i64,
}

/// The member's ledger, newest first, `limit` entries from `offset`.
pub async fn history(store: &Store, member_id: i64, limit: i64, offset: i64) -> Result<Vec<Transaction>, sqlx::Error> {
    let rows: Vec<(String, i64, Option<String>, i64)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT kind, points, note, created_at FROM points_ledger WHERE member_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3")
        .bind(member_id).bind(limit).bind(offset).fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(|(kind, points, note, created_at)| Transaction { kind, points, note, created_at })
        .collect())
}

/// Adjusts a member's points by hand (a correction, a goodwill gesture): one ledger entry, and a
/// "points changed" notice to the bound follower queued in the same transaction. `reference`
/// makes it idempotent: the same adjustment twice is one entry. Returns the new balance, or
/// `None` if the reference was used before.
pub async fn adjust(
    store: &Store,
    notices: &crate::notices::Notices,
    card_no: &str,
    points: i64,
    reason: &str,
    reference: &str,
) -> Result<Result<Option<i64>, String>, sqlx::Error> {
    use crate::with_tx;
    let now = crate::store::now_ms();
    let found: Option<(i64, Option<String>)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, openid FROM members WHERE card_no = $1").bind(card_no).fetch_optional(pool).await)?;
    let Some((member_id, openid)) = found else { return Ok(Err(format!("no member with card {card_no}"))) };
    let before = balance(store, member_id, now).await?.points;
    if before + points < 0 {
        return Ok(Err(format!("the balance is {before}: it cannot go below zero")));
    }
    let mut tx = store.begin().await?;
    // Positive adjustments stay valid a year, like imported balances.
    let valid_until = (points > 0).then_some(now + 365 * 86_400_000);
    let inserted = with_tx!(&mut tx, conn => sqlx::query(
        "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at) \
         VALUES ($1, 'adjust', $2, $3, $4, $5, $6) ON CONFLICT (reference) DO NOTHING")
        .bind(member_id).bind(points).bind(valid_until).bind(reference).bind(reason).bind(now)
        .execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if !inserted {
        return Ok(Ok(None));
    }
    let after = before + points;
    if let Some(openid) = openid {
        let ctx = minijinja::context! { points, reason, balance => after };
        match notices.render("points_changed", &openid, ctx) {
            Ok(message) => {
                let job = crate::jobs::outbox::NewJob::new(
                    crate::jobs::outbox::KIND_TEMPLATE,
                    message,
                    format!("points:{reference}"),
                );
                crate::jobs::outbox::enqueue_tx(&mut tx, &job).await?;
            }
            Err(e) => return Ok(Err(e)),
        }
    }
    tx.commit().await?;
    Ok(Ok(Some(after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(points: i64, valid_until: Option<i64>) -> Entry {
        Entry { points, valid_until }
    }

    #[test]
    fn lots_expire_and_debits_take_the_soonest_first() {
        let now = 1000;
        let cases: Vec<(Vec<Entry>, Balance)> = vec![
            (vec![], Balance::default()),
            (vec![e(100, Some(2000)), e(50, None)], Balance { points: 150, expiring: vec![(100, 2000)] }),
            // 30 redeemed from the lot expiring first.
            (
                vec![e(100, Some(3000)), e(50, Some(2000)), e(-30, None)],
                Balance { points: 120, expiring: vec![(20, 2000), (100, 3000)] },
            ),
            // An expired lot no longer counts, even before its expiry entry is written…
            (vec![e(100, Some(500)), e(40, Some(2000))], Balance { points: 40, expiring: vec![(40, 2000)] }),
            // …and the same balance once it is.
            (
                vec![e(100, Some(500)), e(40, Some(2000)), e(-100, None)],
                Balance { points: 40, expiring: vec![(40, 2000)] },
            ),
            // Spending more than the oldest lot moves on to the next.
            (
                vec![e(10, Some(2000)), e(10, Some(3000)), e(-15, None)],
                Balance { points: 5, expiring: vec![(5, 3000)] },
            ),
        ];
        for (entries, want) in cases {
            assert_eq!(compute(&entries, now), want, "{entries:?}");
        }
    }
}
