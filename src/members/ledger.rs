//! Points balances from the ledger. Earned (and imported) points come in lots that expire on
//! their `valid_until`. The ledger is replayed in time order: a redemption or negative
//! adjustment consumes the lots alive at that moment, soonest-expiring first; a lot that reaches
//! its expiry with points left loses them. What remains of live lots is the balance, and their
//! expiry dates are the schedule a follower sees ("300 points expire on 2026-12-31").
//! `expire` entries (written when expiries are recorded) restate what the replay already
//! derives, so the replay skips them rather than count an expiry twice.

use crate::store::Store;
use crate::with_pool;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balance {
    pub points: i64,
    /// (points, expires at unix ms), soonest first; lots without an expiry are not listed.
    pub expiring: Vec<(i64, i64)>,
    /// (points, expired at unix ms): what lapsed lots lost, oldest first.
    pub lapsed: Vec<(i64, i64)>,
}

/// A ledger entry as the balance needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: String,
    pub points: i64,
    pub valid_until: Option<i64>,
    pub created_at: i64,
}

pub fn compute(entries: &[Entry], now: i64) -> Balance {
    let mut events: Vec<&Entry> = entries.iter().filter(|e| e.kind != "expire" && e.created_at <= now).collect();
    events.sort_by_key(|e| (e.created_at, e.points < 0));
    // Live lots: (expires at, points left), kept sorted by expiry.
    let mut lots: Vec<(i64, i64)> = Vec::new();
    let mut lapsed = Vec::new();
    let mut lapse = |lots: &mut Vec<(i64, i64)>, at: i64| {
        lots.retain(|(until, left)| {
            if *until <= at && *left > 0 {
                lapsed.push((*left, *until));
            }
            *until > at && *left > 0
        })
    };
    for e in events {
        lapse(&mut lots, e.created_at);
        if e.points > 0 {
            let until = e.valid_until.unwrap_or(i64::MAX);
            let at = lots.partition_point(|(u, _)| *u <= until);
            lots.insert(at, (until, e.points));
        } else {
            let mut debit = -e.points;
            for lot in lots.iter_mut() {
                let used = debit.min(lot.1);
                lot.1 -= used;
                debit -= used;
            }
        }
    }
    lapse(&mut lots, now);
    Balance {
        points: lots.iter().map(|(_, p)| p).sum(),
        expiring: lots.iter().filter(|(until, _)| *until != i64::MAX).map(|(until, p)| (*p, *until)).collect(),
        lapsed,
    }
}

/// A member's ledger entries, as [`compute`] needs them (the SQL works in a pool or a transaction).
pub const ENTRIES_SQL: &str = "SELECT kind, points, valid_until, created_at FROM points_ledger WHERE member_id = $1";

pub type EntryRow = (String, i64, Option<i64>, i64);

pub fn entries(rows: Vec<EntryRow>) -> Vec<Entry> {
    rows.into_iter()
        .map(|(kind, points, valid_until, created_at)| Entry { kind, points, valid_until, created_at })
        .collect()
}

pub async fn balance(store: &Store, member_id: i64, now: i64) -> Result<Balance, sqlx::Error> {
    let rows: Vec<EntryRow> =
        with_pool!(store, pool => sqlx::query_as(ENTRIES_SQL).bind(member_id).fetch_all(pool).await)?;
    Ok(compute(&entries(rows), now))
}

/// `YYYY-MM-DD` (UTC) of a unix-ms time, as pages and chat replies show dates.
pub fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map(|t| t.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// Records what lapsed lots lost as `expire` entries (one per member and expiry time, so running
/// it again adds nothing). Returns how many entries it wrote.
pub async fn record_expiries(store: &Store, now: i64) -> Result<usize, sqlx::Error> {
    let members: Vec<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT DISTINCT member_id FROM points_ledger WHERE valid_until <= $1").bind(now).fetch_all(pool).await)?;
    let mut written = 0;
    for member_id in members {
        let b = balance(store, member_id, now).await?;
        for (points, until) in b.lapsed {
            let reference = format!("expire:{member_id}:{until}");
            written += with_pool!(store, pool => sqlx::query(
                "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at) \
                 VALUES ($1, 'expire', $2, NULL, $3, 'expired', $4) ON CONFLICT (reference) DO NOTHING")
                .bind(member_id).bind(-points).bind(reference).bind(until)
                .execute(pool).await.map(|r| r.rows_affected() as usize))?;
        }
    }
    Ok(written)
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
                    crate::jobs::Kind::Template,
                    message,
                    format!("points:{reference}"),
                );
                crate::jobs::outbox::enqueue_tx(&mut tx, &job).await?;
            }
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    tx.commit().await?;
    Ok(Ok(Some(after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of `points` made at `at`, valid until `until`.
    fn e(points: i64, until: Option<i64>, at: i64) -> Entry {
        let kind = if points > 0 { "earn" } else { "redeem" };
        Entry { kind: kind.into(), points, valid_until: until, created_at: at }
    }

    #[test]
    fn lots_expire_and_debits_take_the_soonest_first() {
        let now = 1000;
        let expire = |points: i64, at: i64| Entry { kind: "expire".into(), points, valid_until: None, created_at: at };
        let cases: Vec<(Vec<Entry>, Balance)> = vec![
            (vec![], Balance::default()),
            (
                vec![e(100, Some(2000), 1), e(50, None, 2)],
                Balance { points: 150, expiring: vec![(100, 2000)], lapsed: vec![] },
            ),
            // 30 redeemed from the lot expiring first.
            (
                vec![e(100, Some(3000), 1), e(50, Some(2000), 2), e(-30, None, 3)],
                Balance { points: 120, expiring: vec![(20, 2000), (100, 3000)], lapsed: vec![] },
            ),
            // An expired lot no longer counts, whether or not its expiry was recorded…
            (
                vec![e(100, Some(500), 1), e(40, Some(2000), 2)],
                Balance { points: 40, expiring: vec![(40, 2000)], lapsed: vec![(100, 500)] },
            ),
            (
                vec![e(100, Some(500), 1), e(40, Some(2000), 2), expire(-100, 600)],
                Balance { points: 40, expiring: vec![(40, 2000)], lapsed: vec![(100, 500)] },
            ),
            // …and a redemption after it expired is paid from what was alive then.
            (
                vec![e(100, Some(500), 1), e(100, Some(2000), 2), e(-50, None, 700)],
                Balance { points: 50, expiring: vec![(50, 2000)], lapsed: vec![(100, 500)] },
            ),
            // Spending more than the oldest lot moves on to the next.
            (
                vec![e(10, Some(2000), 1), e(10, Some(3000), 2), e(-15, None, 3)],
                Balance { points: 5, expiring: vec![(5, 3000)], lapsed: vec![] },
            ),
            // A redemption before a lot was earned does not touch it.
            (
                vec![e(100, Some(3000), 1), e(-100, None, 5), e(70, Some(2000), 9)],
                Balance { points: 70, expiring: vec![(70, 2000)], lapsed: vec![] },
            ),
        ];
        for (entries, want) in cases {
            assert_eq!(compute(&entries, now), want, "{entries:?}");
        }
    }
}
