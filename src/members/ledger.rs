//! The points ledger: every earn, redemption, adjustment, void, expiry and tier change is an
//! entry, and this module reads it — a member's history ([`history`]) and the *reference
//! derivation* of a balance ([`compute`]), which [`super::points`] keeps in step with its lots
//! and which its tests hold it to.
//!
//! The derivation replays the ledger in the order it was recorded. Credits (earned, imported
//! and positive adjusted points) come in lots that lapse at their `valid_until`; a debit (a
//! redemption, a negative adjustment, a void of a credit) consumes the lots alive at that
//! moment — a void the lot of the entry it reverses first, everything else soonest-lapsing
//! first; a lot that reaches its `valid_until` with points left loses them. What remains of
//! live lots is the balance, and their lapse times are the schedule a follower sees ("300
//! points valid until 2026-12-31"). `expire` entries restate what the replay derives, so it
//! skips them rather than count an expiry twice.

use crate::store::Store;
use crate::stored::Named;
use crate::with_pool;

/// What an entry is, stored as [`Kind::as_str`] (the name the ledger stores and the CRM reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Points for a purchase; they count towards the tier.
    Earn,
    /// A correction either way; it does not count towards the tier.
    Adjust,
    /// Reverses an earlier earn or adjust, once.
    Void,
    /// Points spent on a catalogue product.
    Redeem,
    /// Points that lapsed (written by [`expire()`](super::points::expire())).
    Expire,
    /// A tier change, for the history (0 points).
    Tier,
}

crate::stored_as!(Kind {
    Earn => "earn",
    Adjust => "adjust",
    Void => "void",
    Redeem => "redeem",
    Expire => "expire",
    Tier => "tier",
});

impl Kind {
    /// What a kind of entry means to a member, Chinese first: the history's words for an entry
    /// that came without a note (a till's purchase, a correction).
    pub fn label(self) -> &'static str {
        match self {
            Kind::Earn => "消费积分 Points earned",
            Kind::Adjust => "积分调整 Points adjusted",
            Kind::Void => "积分撤销 Points reversed",
            Kind::Redeem => "积分兑换 Points redeemed",
            Kind::Expire => "积分过期 Expired",
            Kind::Tier => "会员等级变更 Tier changed",
        }
    }
}

/// Never lapses (legacy entries without a `valid_until`; the lots table stores it as this).
pub const NEVER: i64 = i64::MAX;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balance {
    pub points: i64,
    /// (points, lapse at unix ms), soonest first; lots that never lapse are not listed.
    pub expiring: Vec<(i64, i64)>,
}

/// What the replay of a ledger gives: the balance now, and what lapsed lots lost (points,
/// lapsed at), oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    pub balance: Balance,
    pub lapsed: Vec<(i64, i64)>,
}

/// A ledger entry as the derivation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its kind; one this build does not know is replayed by its points.
    pub kind: Named<Kind>,
    pub points: i64,
    pub valid_until: Option<i64>,
    pub created_at: i64,
    /// For a void: the lapse time of the lot of the entry it reverses (taken from first).
    pub voids_lot: Option<i64>,
}

/// Replays `entries` (in the order they were recorded) as of `now`.
pub fn compute(entries: &[Entry], now: i64) -> Replay {
    let mut events: Vec<&Entry> = entries.iter().filter(|e| e.kind != Kind::Expire && e.created_at <= now).collect();
    // Stable: entries recorded in the same millisecond keep their ledger order.
    events.sort_by_key(|e| e.created_at);
    // Live lots: (lapses at, points left), kept sorted by lapse time.
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
            let until = e.valid_until.unwrap_or(NEVER);
            let at = lots.partition_point(|(u, _)| *u <= until);
            lots.insert(at, (until, e.points));
        } else {
            let mut debit = -e.points;
            let own = e.voids_lot;
            for lot in lots.iter_mut().filter(|l| Some(l.0) == own) {
                let used = debit.min(lot.1);
                lot.1 -= used;
                debit -= used;
            }
            for lot in lots.iter_mut() {
                let used = debit.min(lot.1);
                lot.1 -= used;
                debit -= used;
            }
        }
    }
    lapse(&mut lots, now);
    let mut expiring: Vec<(i64, i64)> = Vec::new();
    for (until, p) in lots.iter().filter(|(until, _)| *until != NEVER) {
        match expiring.last_mut() {
            Some(last) if last.1 == *until => last.0 += p,
            _ => expiring.push((*p, *until)),
        }
    }
    Replay { balance: Balance { points: lots.iter().map(|(_, p)| p).sum(), expiring }, lapsed }
}

/// A member's ledger as [`compute`] needs it, in the order it was recorded.
pub const ENTRIES_SQL: &str = "SELECT l.kind, l.points, l.valid_until, l.created_at, v.id, v.valid_until \
    FROM points_ledger l LEFT JOIN points_ledger v ON v.reference = l.voids WHERE l.member_id = $1 ORDER BY l.id";

pub type EntryRow = (String, i64, Option<i64>, i64, Option<i64>, Option<i64>);

pub fn entries(rows: Vec<EntryRow>) -> Vec<Entry> {
    rows.into_iter()
        .map(|(kind, points, valid_until, created_at, voided, voided_until)| Entry {
            kind: Named::read(kind),
            points,
            valid_until,
            created_at,
            voids_lot: voided.map(|_| voided_until.unwrap_or(NEVER)),
        })
        .collect()
}

/// The balance as the whole ledger's replay gives it (the reference; pages read the lots).
pub async fn replay(store: &Store, member_id: i64, now: i64) -> Result<Replay, sqlx::Error> {
    let rows: Vec<EntryRow> =
        with_pool!(store, pool => sqlx::query_as(ENTRIES_SQL).bind(member_id).fetch_all(pool).await)?;
    Ok(compute(&entries(rows), now))
}

/// `YYYY-MM-DD` in China time of a unix-ms time, as pages and chat replies show dates.
pub fn day(ms: i64) -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&china).format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// The last day points lapsing at `until` are good for ("valid until 2026-12-31").
pub fn last_day(until: i64) -> String {
    day(until - 1)
}

/// A line of history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub reference: String,
    /// Its kind; one this build does not know is shown as stored.
    pub kind: Named<Kind>,
    pub points: i64,
    pub note: Option<String>,
    /// When it happened (a till's purchase time); when it was recorded for older entries.
    pub occurred_at: i64,
    pub store_code: Option<String>,
}

impl Transaction {
    /// What the entry says to the member: its note, else what its kind means ([`Kind::label`];
    /// a kind this build does not know, by its name).
    pub fn description(&self) -> &str {
        self.note.as_deref().unwrap_or_else(|| match self.kind.known() {
            Some(kind) => kind.label(),
            None => self.kind.as_str(),
        })
    }
}

/// The member's ledger, newest first, `limit` entries from `offset`.
pub async fn history(store: &Store, member_id: i64, limit: i64, offset: i64) -> Result<Vec<Transaction>, sqlx::Error> {
    type HistoryRow = (String, String, i64, Option<String>, Option<i64>, i64, Option<String>);
    // The limit is written into the SQL, not bound: SQLite plans with a bound LIMIT's value and
    // so prepares such a statement again at every execution (measured: each card page did).
    let sql = format!(
        "SELECT reference, kind, points, note, occurred_at, created_at, store_code FROM points_ledger WHERE member_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT {} OFFSET $2",
        limit.clamp(0, 1000)
    );
    let rows: Vec<HistoryRow> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(member_id).bind(offset).fetch_all(pool).await)?;
    Ok(rows
        .into_iter()
        .map(|(reference, kind, points, note, occurred_at, created_at, store_code)| Transaction {
            reference,
            kind: Named::read(kind),
            points,
            note,
            occurred_at: occurred_at.unwrap_or(created_at),
            store_code,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of `points` made at `at`, valid until `until`.
    fn e(points: i64, until: Option<i64>, at: i64) -> Entry {
        let kind = if points > 0 { Kind::Earn } else { Kind::Redeem };
        Entry { kind: kind.into(), points, valid_until: until, created_at: at, voids_lot: None }
    }

    fn b(points: i64, expiring: Vec<(i64, i64)>, lapsed: Vec<(i64, i64)>) -> Replay {
        Replay { balance: Balance { points, expiring }, lapsed }
    }

    #[test]
    fn lots_expire_and_debits_take_the_soonest_first() {
        let now = 1000;
        let expire = |points: i64, at: i64| Entry {
            kind: Kind::Expire.into(),
            points,
            valid_until: None,
            created_at: at,
            voids_lot: None,
        };
        let void = |points: i64, lot: i64, at: i64| Entry {
            kind: Kind::Void.into(),
            points,
            valid_until: None,
            created_at: at,
            voids_lot: Some(lot),
        };
        let cases: Vec<(Vec<Entry>, Replay)> = vec![
            (vec![], Replay::default()),
            (vec![e(100, Some(2000), 1), e(50, None, 2)], b(150, vec![(100, 2000)], vec![])),
            // 30 redeemed from the lot expiring first.
            (
                vec![e(100, Some(3000), 1), e(50, Some(2000), 2), e(-30, None, 3)],
                b(120, vec![(20, 2000), (100, 3000)], vec![]),
            ),
            // An expired lot no longer counts, whether or not its expiry was recorded…
            (vec![e(100, Some(500), 1), e(40, Some(2000), 2)], b(40, vec![(40, 2000)], vec![(100, 500)])),
            (
                vec![e(100, Some(500), 1), e(40, Some(2000), 2), expire(-100, 600)],
                b(40, vec![(40, 2000)], vec![(100, 500)]),
            ),
            // …and a redemption after it expired is paid from what was alive then.
            (
                vec![e(100, Some(500), 1), e(100, Some(2000), 2), e(-50, None, 700)],
                b(50, vec![(50, 2000)], vec![(100, 500)]),
            ),
            // Spending more than the oldest lot moves on to the next.
            (vec![e(10, Some(2000), 1), e(10, Some(3000), 2), e(-15, None, 3)], b(5, vec![(5, 3000)], vec![])),
            // A redemption before a lot was earned does not touch it.
            (vec![e(100, Some(3000), 1), e(-100, None, 5), e(70, Some(2000), 9)], b(70, vec![(70, 2000)], vec![])),
            // A void takes from the lot of what it reverses first, then soonest-lapsing.
            (vec![e(100, Some(2000), 1), e(50, Some(3000), 2), void(-50, 3000, 3)], b(100, vec![(100, 2000)], vec![])),
            (
                vec![e(100, Some(2000), 1), e(50, Some(3000), 2), e(-30, None, 3), void(-100, 2000, 4)],
                b(20, vec![(20, 3000)], vec![]),
            ),
            // Lots that lapse together are one line of the schedule.
            (vec![e(10, Some(2000), 1), e(5, Some(2000), 2)], b(15, vec![(15, 2000)], vec![])),
        ];
        for (entries, want) in cases {
            assert_eq!(compute(&entries, now), want, "{entries:?}");
        }
    }
}
