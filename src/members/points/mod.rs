//! Points: what members earn by buying and spend on the catalogue, and what their tier is
//! judged by. Every change — a till's purchase or the CRM's adjustment (`crm::api`), a paid or
//! refunded shop order, a redemption, a correction by hand, an import — is a [`Change`] that
//! [`post()`] applies inside the caller's transaction, with everything it causes: the ledger
//! entry, the member's lots, the tier, the `points_changed` notice and the CRM events.
//!
//! The ledger is the record ([`super::ledger`] replays it as the reference); what a balance
//! reads is `points_lots`, per member what is left of their credits by the moment they lapse,
//! kept in step with each entry so a balance stays a short read however long the history.
//!
//! The jobs, one file each: `post` applies changes; `balance` reads balances from the lots;
//! `tiers` holds the tier rules, the trailing window and the hourly review; `expire` lapses
//! points and builds the lots of ledgers older than lots.

use crate::config::LoyaltyConfig;
use crate::crm;
use crate::notices::Notices;

/// The most points one change may move either way.
pub const MAX_POINTS: i64 = 1_000_000;
const DAY_MS: i64 = 86_400_000;
const CHINA_MS: i64 = 8 * 3_600_000;
/// Rows of one multi-row statement or `IN (…)` list: well under both databases' limits.
const CHUNK: usize = 400;
/// Members reviewed per transaction by [`review_tiers`] and [`expire()`].
const BATCH: i64 = 500;

/// The moment the points of `ms`'s day (China time) lapse: the start of the next day.
pub fn end_of_day(ms: i64) -> i64 {
    ((ms + CHINA_MS).div_euclid(DAY_MS) + 1) * DAY_MS - CHINA_MS
}

/// When points earned at `occurred_at` lapse by default: the end of the day
/// `loyalty.points_valid_days` later.
pub fn default_until(loyalty: &LoyaltyConfig, occurred_at: i64) -> i64 {
    end_of_day(occurred_at + loyalty.points_valid_days as i64 * DAY_MS)
}

pub use crate::members::ledger::Kind;

/// Whose points a change moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The member's id.
    Id(i64),
    /// The member bound to a follower (the shop's orders).
    Openid(String),
    /// The member's card number.
    Card(String),
    /// The phone on file; refused when several members share it.
    Phone(String),
    /// Both, which must name the same member.
    CardAndPhone(String, String),
    /// A void that names no member: the member of the entry it reverses.
    OfVoided,
}

/// One change to a member's points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Unique for all time: the same reference again is a duplicate.
    pub reference: String,
    /// Whose points it moves.
    pub who: Who,
    /// What the entry is.
    pub kind: Kind,
    /// Signed: positive for an earn, negative for a redemption, either for an adjustment. For a
    /// void, 0 or the voided entry's points (a check the caller may make).
    pub points: i64,
    /// The reference a void reverses.
    pub voids: Option<String>,
    /// When a credit lapses (unix ms); `None`: [`default_until`] of `occurred_at`.
    pub valid_until: Option<i64>,
    /// When it happened (unix ms): the tier window counts from it.
    pub occurred_at: i64,
    /// The code of the store it happened at.
    pub store_code: Option<String>,
    /// What the purchase came to (fen).
    pub amount_fen: Option<i64>,
    /// As the member reads it in their history.
    pub note: Option<String>,
    /// For a void whose points were spent meanwhile: take back what is left instead of refusing
    /// (a refund the shop cannot undo).
    pub partial: bool,
}

impl Change {
    /// A change with nothing optional set.
    pub fn new(reference: impl Into<String>, who: Who, kind: Kind, points: i64, occurred_at: i64) -> Change {
        Change {
            reference: reference.into(),
            who,
            kind,
            points,
            voids: None,
            valid_until: None,
            occurred_at,
            store_code: None,
            amount_fen: None,
            note: None,
            partial: false,
        }
    }
}

/// Why a change was not applied (nothing of it was written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no member has this card number")]
    UnknownCard,
    #[error("no member has this phone number")]
    UnknownPhone,
    #[error("several members have this phone number: send the card number")]
    AmbiguousPhone,
    #[error("the card number and the phone belong to different members")]
    CardPhoneMismatch,
    #[error("no member is bound to this follower")]
    NotAMember,
    #[error("no member {0}")]
    UnknownMember(i64),
    #[error("voids: there is no earlier transaction {0:?}")]
    UnknownVoided(String),
    #[error("voids: {0:?} is voided already")]
    AlreadyVoided(String),
    #[error("voids: {0:?} is {1} and cannot be voided (only earn and adjust)")]
    NotVoidable(String, &'static str),
    #[error("voids: {0:?} belongs to another member")]
    OtherMember(String),
    #[error("points: {0:?} moved {1} points and a void reverses all of them")]
    VoidPoints(String, i64),
    #[error("the balance is {balance}: taking {needed} would take it below zero")]
    Insufficient {
        /// The member's live points.
        balance: i64,
        /// What the change would take.
        needed: i64,
    },
    #[error("valid_until: these points would have lapsed already")]
    Lapsed,
    #[error("this kind of change cannot be posted")]
    NotPostable,
}

/// What became of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written: the points it moved (signed) and the member's balance after it.
    Applied {
        /// The member whose points moved.
        member_id: i64,
        /// The points it moved, signed.
        points: i64,
        /// The member's live points after it.
        balance: i64,
    },
    /// Its reference was used before: nothing changed.
    Duplicate,
    /// Refused, and why: nothing of it was written.
    Rejected(Rejection),
}

/// What [`post()`] applies changes with.
pub struct Rules<'a> {
    /// Validity, tiers and the tier window.
    pub loyalty: &'a LoyaltyConfig,
    /// Whether the CRM hears of the changes.
    pub crm: crm::Events,
    /// Tells bound members by `points_changed` template message (none for redemptions, which
    /// confirm their own way, and imports) and of a tier change by `tier_changed`.
    pub notices: Option<&'a Notices>,
    /// Recompute tiers of the members whose earned points changed.
    pub tiers: bool,
    /// The moment the changes are applied at (unix ms): what has lapsed, where the window starts.
    pub now: i64,
}

/// A member's id, card number, openid, tier and how long an imported tier holds.
type MemberRow = (i64, Option<String>, Option<String>, String, Option<i64>);

/// `SELECT …` of rows whose `column` is one of `values`, in chunks of [`CHUNK`], each row built
/// by the backend-specific query (the macro keeps one SQL for both databases). The caller has
/// `with_pool!` (for `pool`) or `with_tx!` in scope.
macro_rules! select_in {
    (pool $store:expr, $row:ty, $prefix:expr, $values:expr, $suffix:expr) => {
        select_in!(@with with_pool, $store, $row, $prefix, $values, $suffix)
    };
    ($tx:expr, $row:ty, $prefix:expr, $values:expr, $suffix:expr) => {
        select_in!(@with with_tx, $tx, $row, $prefix, $values, $suffix)
    };
    (@with $with:ident, $on:expr, $row:ty, $prefix:expr, $values:expr, $suffix:expr) => {{
        let mut out: Vec<$row> = Vec::new();
        for chunk in $values.chunks($crate::members::points::CHUNK) {
            let rows: Vec<$row> = $with!($on, conn => {
                let mut q = sqlx::QueryBuilder::new($prefix);
                q.push(" IN (");
                let mut list = q.separated(", ");
                for v in chunk {
                    list.push_bind(v.clone());
                }
                q.push(")");
                q.push(&$suffix);
                q.build_query_as::<$row>().fetch_all(conn).await
            })?;
            out.extend(rows);
        }
        out
    }};
}

// Declared after `select_in!`, which they use.
mod balance;
mod expire;
mod post;
mod tiers;

pub use balance::{balance, points_in, summary};
pub use expire::{expire, upgrade};
pub use post::post;
pub use tiers::{earned, review_tiers, tier_for};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::members::ledger;

    #[test]
    fn points_lapse_at_the_end_of_a_china_day() {
        // 2026-12-01 10:00 China time is 02:00 UTC; its day ends at 2026-12-01 16:00 UTC.
        let at = 1_796_090_400_000;
        assert_eq!(ledger::day(at), "2026-12-01");
        let end = end_of_day(at);
        assert_eq!(ledger::day(end), "2026-12-02");
        assert_eq!(ledger::last_day(end), "2026-12-01");
        assert_eq!(end_of_day(end), end + DAY_MS, "midnight starts the next day");
        let loyalty = LoyaltyConfig::default();
        assert_eq!(ledger::last_day(default_until(&loyalty, at)), "2027-12-01");
    }
}
