//! Points that move. Every change to a member's points — a till's purchase or the CRM's
//! adjustment (`crm::api`), a paid or refunded shop order, a redemption, a correction by hand,
//! an import — is a [`Change`] that [`post`] applies inside the caller's transaction, with
//! everything it causes: the ledger entry, the member's lots, the tier, the `points_changed`
//! notice and the CRM events.
//!
//! **Lots.** The ledger is the record ([`super::ledger`] replays it as the reference); what a
//! balance reads is `points_lots`: per member, what is left of their credits by the moment
//! they lapse, updated in the same transaction as each entry. Credits lapse at the end of a
//! day (China time), so a member has at most one lot per day of validity however long their
//! history, and a balance is a short range read of their live lots (the card page's p99 with
//! 10,000 entries: see the README). A debit takes from the lots alive now, soonest-lapsing
//! first (a void from the lot of the entry it reverses first); the hourly [`expire`] zeroes
//! lapsed lots and writes their `expire` entries.
//!
//! **Idempotent by reference.** A reference seen before (in the ledger or earlier in the same
//! batch) is a duplicate and changes nothing. A void reverses an entry once (a unique index on
//! `voids` backs the check).
//!
//! **One writer per member.** On PostgreSQL the members a batch touches are locked in id
//! order before their lots are read (SQLite's write lock serialises everything already), so
//! two batches for one member apply one after the other and a balance never goes below zero.
//!
//! **Batches.** A batch is read with a few `IN (…)` queries and written with multi-row
//! statements, so a 1,000-item batch is a dozen statements, not thousands.

use super::ledger::{self, Balance, NEVER};
use crate::config::LoyaltyConfig;
use crate::crm::{self, Event, MemberRef, PointsChanged};
use crate::jobs::outbox::{self, NewJob};
use crate::notices::Notices;
use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The most points one change may move either way.
pub const MAX_POINTS: i64 = 1_000_000;
const DAY_MS: i64 = 86_400_000;
const CHINA_MS: i64 = 8 * 3_600_000;
/// Rows of one multi-row statement or `IN (…)` list: well under both databases' limits.
const CHUNK: usize = 400;

/// The moment the points of `ms`'s day (China time) lapse: the start of the next day.
pub fn end_of_day(ms: i64) -> i64 {
    ((ms + CHINA_MS).div_euclid(DAY_MS) + 1) * DAY_MS - CHINA_MS
}

/// When points earned at `occurred_at` lapse by default: the end of the day
/// `loyalty.points_valid_days` later.
pub fn default_until(loyalty: &LoyaltyConfig, occurred_at: i64) -> i64 {
    end_of_day(occurred_at + loyalty.points_valid_days as i64 * DAY_MS)
}

/// What an entry is, stored as [`Kind::as_str`].
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
    /// Points that lapsed (written by [`expire`]).
    Expire,
    /// A tier change, for the history (0 points).
    Tier,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Earn => "earn",
            Kind::Adjust => "adjust",
            Kind::Void => "void",
            Kind::Redeem => "redeem",
            Kind::Expire => "expire",
            Kind::Tier => "tier",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::Earn, Kind::Adjust, Kind::Void, Kind::Redeem, Kind::Expire, Kind::Tier]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Whose points a change moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Id(i64),
    /// The member bound to a follower (the shop's orders).
    Openid(String),
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
    pub who: Who,
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
    pub store_code: Option<String>,
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
    Insufficient { balance: i64, needed: i64 },
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
        member_id: i64,
        points: i64,
        balance: i64,
    },
    /// Its reference was used before: nothing changed.
    Duplicate,
    Rejected(Rejection),
}

/// What [`post`] applies changes with.
pub struct Rules<'a> {
    pub loyalty: &'a LoyaltyConfig,
    /// Whether the CRM hears of the changes.
    pub crm: crm::Events,
    /// Tells bound members by `points_changed` template message (none for redemptions, which
    /// confirm their own way, and imports) and of a tier change by `tier_changed`.
    pub notices: Option<&'a Notices>,
    /// Recompute tiers of the members whose earned points changed.
    pub tiers: bool,
    pub now: i64,
}

/// A member's id, card number, openid, tier and how long an imported tier holds.
type MemberRow = (i64, Option<String>, Option<String>, String, Option<i64>);

/// An entry a void may reverse.
#[derive(Debug, Clone)]
struct Voidable {
    member_id: i64,
    kind: Kind,
    points: i64,
    earned: i64,
    /// Its lot's lapse time.
    lot: i64,
}

/// A member as a batch works on them.
struct Account {
    card_no: Option<String>,
    openid: Option<String>,
    tier: String,
    tier_held_until: Option<i64>,
    /// Live lots: lapse time → points left.
    lots: BTreeMap<i64, i64>,
    dirty: HashSet<i64>,
    earned_changed: bool,
    /// For the notice: the points this batch moved, in how many entries, and the last note.
    delta: i64,
    count: usize,
    note: Option<String>,
    first_reference: Option<String>,
}

impl Account {
    fn balance(&self) -> i64 {
        self.lots.values().sum()
    }

    fn credit(&mut self, until: i64, points: i64) {
        *self.lots.entry(until).or_insert(0) += points;
        self.dirty.insert(until);
    }

    /// Takes `need` points, from the lot lapsing at `own` first, then soonest-lapsing; what was
    /// taken (less than `need` only if `partial`).
    fn debit(&mut self, need: i64, own: Option<i64>, partial: bool) -> Result<i64, Rejection> {
        let balance = self.balance();
        if balance < need && !partial {
            return Err(Rejection::Insufficient { balance, needed: need });
        }
        let taken = need.min(balance);
        let mut left = taken;
        let order: Vec<i64> = own.into_iter().chain(self.lots.keys().copied()).collect();
        for until in order {
            if left == 0 {
                break;
            }
            if let Some(r) = self.lots.get_mut(&until) {
                let t = left.min(*r);
                if t > 0 {
                    *r -= t;
                    left -= t;
                    self.dirty.insert(until);
                }
            }
        }
        Ok(taken)
    }

    fn member_ref(&self, id: i64) -> MemberRef {
        MemberRef { card_no: self.card_no.clone(), id }
    }
}

/// A ledger row to write.
struct Row {
    member_id: i64,
    kind: Kind,
    points: i64,
    valid_until: Option<i64>,
    reference: String,
    note: Option<String>,
    occurred_at: i64,
    earned: i64,
    voids: Option<String>,
    store_code: Option<String>,
    amount_fen: Option<i64>,
}

/// `SELECT …` of rows whose `column` is one of `values`, in chunks, each row built by the
/// backend-specific query (the macro keeps one SQL for both databases).
macro_rules! select_in {
    (pool $store:expr, $row:ty, $prefix:expr, $values:expr, $suffix:expr) => {
        select_in!(@with with_pool, $store, $row, $prefix, $values, $suffix)
    };
    ($tx:expr, $row:ty, $prefix:expr, $values:expr, $suffix:expr) => {
        select_in!(@with with_tx, $tx, $row, $prefix, $values, $suffix)
    };
    (@with $with:ident, $on:expr, $row:ty, $prefix:expr, $values:expr, $suffix:expr) => {{
        let mut out: Vec<$row> = Vec::new();
        for chunk in $values.chunks(CHUNK) {
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

/// Applies `changes` in order inside `tx`, with what they cause; one outcome per change. A
/// rejected change writes nothing; the others are applied whatever became of it.
pub async fn post(tx: &mut Tx, rules: &Rules<'_>, changes: &[Change]) -> Result<Vec<Outcome>, sqlx::Error> {
    let now = rules.now;
    // Who is who: cards, phones and openids to member ids (immutable enough to read before
    // locking: a card number is never reassigned while a batch runs).
    let mut cards: Vec<String> = Vec::new();
    let mut phones: Vec<String> = Vec::new();
    let mut openids: Vec<String> = Vec::new();
    let mut ids: Vec<i64> = Vec::new();
    for c in changes {
        match &c.who {
            Who::Id(id) => ids.push(*id),
            Who::Openid(o) => openids.push(o.clone()),
            Who::Card(card) => cards.push(card.clone()),
            Who::Phone(p) => phones.push(p.clone()),
            Who::CardAndPhone(card, p) => {
                cards.push(card.clone());
                phones.push(p.clone());
            }
            Who::OfVoided => {}
        }
    }
    let voided_refs: Vec<String> = changes.iter().filter_map(|c| c.voids.clone()).collect();
    let by_card: HashMap<String, i64> =
        select_in!(tx, (String, i64), "SELECT card_no, id FROM members WHERE card_no", dedup(cards), "")
            .into_iter()
            .collect();
    let mut by_phone: HashMap<String, Vec<i64>> = HashMap::new();
    for (phone, id) in select_in!(tx, (String, i64), "SELECT phone, id FROM members WHERE phone", dedup(phones), "") {
        by_phone.entry(phone).or_default().push(id);
    }
    let by_openid: HashMap<String, i64> =
        select_in!(tx, (String, i64), "SELECT openid, id FROM members WHERE openid", dedup(openids), "")
            .into_iter()
            .collect();
    let mut voidable: HashMap<String, Voidable> = HashMap::new();
    type VoidableRow = (String, i64, String, i64, i64, Option<i64>);
    for (reference, member_id, kind, points, earned, valid_until) in select_in!(
        tx,
        VoidableRow,
        "SELECT reference, member_id, kind, points, earned, valid_until FROM points_ledger WHERE reference",
        dedup(voided_refs.clone()),
        ""
    ) {
        // Rows are written by this module with a known kind; anything else cannot be voided.
        let kind = Kind::parse(&kind).unwrap_or(Kind::Tier);
        voidable.insert(reference, Voidable { member_id, kind, points, earned, lot: valid_until.unwrap_or(NEVER) });
    }
    ids.extend(by_card.values());
    ids.extend(by_phone.values().flatten());
    ids.extend(by_openid.values());
    ids.extend(voidable.values().map(|v| v.member_id));
    let ids = dedup(ids);

    // Lock the members (in id order, so two batches cannot deadlock), then read what the lock
    // protects: their rows, lots and ledger references.
    let lock = if tx.is_postgres() { " ORDER BY id FOR UPDATE" } else { "" };
    let mut accounts: HashMap<i64, Account> = HashMap::new();
    for (id, card_no, openid, tier, tier_held_until) in
        select_in!(tx, MemberRow, "SELECT id, card_no, openid, tier, tier_held_until FROM members WHERE id", ids, lock)
    {
        let account = Account {
            card_no,
            openid,
            tier,
            tier_held_until,
            lots: BTreeMap::new(),
            dirty: HashSet::new(),
            earned_changed: false,
            delta: 0,
            count: 0,
            note: None,
            first_reference: None,
        };
        accounts.insert(id, account);
    }
    let live = format!(" AND valid_until > {now} AND remaining > 0");
    for (member_id, until, remaining) in select_in!(
        tx,
        (i64, i64, i64),
        "SELECT member_id, valid_until, remaining FROM points_lots WHERE member_id",
        ids,
        live
    ) {
        if let Some(a) = accounts.get_mut(&member_id) {
            a.lots.insert(until, remaining);
        }
    }
    let references: Vec<String> = dedup(changes.iter().map(|c| c.reference.clone()).collect());
    let mut seen: HashSet<String> =
        select_in!(tx, (String,), "SELECT reference FROM points_ledger WHERE reference", references, "")
            .into_iter()
            .map(|(r,)| r)
            .collect();
    let mut voided: HashSet<String> =
        select_in!(tx, (String,), "SELECT voids FROM points_ledger WHERE voids", dedup(voided_refs), "")
            .into_iter()
            .map(|(r,)| r)
            .collect();

    let mut outcomes = Vec::with_capacity(changes.len());
    let mut rows: Vec<Row> = Vec::new();
    let mut jobs: Vec<NewJob> = Vec::new();
    for c in changes {
        if !seen.insert(c.reference.clone()) {
            outcomes.push(Outcome::Duplicate);
            continue;
        }
        let applied = apply(c, rules, &by_card, &by_phone, &by_openid, &mut voidable, &mut voided, &mut accounts);
        let (member_id, row) = match applied {
            Ok(done) => done,
            Err(why) => {
                // Its reference stays free: a corrected change may use it.
                seen.remove(&c.reference);
                outcomes.push(Outcome::Rejected(why));
                continue;
            }
        };
        let a = accounts.get_mut(&member_id).expect("applied to a loaded member");
        let balance = a.balance();
        a.earned_changed |= row.earned != 0;
        a.delta += row.points;
        a.count += 1;
        a.note = row.note.clone();
        a.first_reference.get_or_insert_with(|| row.reference.clone());
        if row.kind != Kind::Redeem
            && let Some(job) = rules.crm.job(&a.member_ref(member_id), &points_event(&row, balance), now)
        {
            jobs.push(job);
        }
        outcomes.push(Outcome::Applied { member_id, points: row.points, balance });
        rows.push(row);
    }
    insert_rows(tx, &rows, now).await?;
    write_lots(tx, &mut accounts).await?;
    if let Some(notices) = rules.notices {
        for a in accounts.values().filter(|a| a.count > 0) {
            if let Some(job) = points_notice(notices, a) {
                jobs.push(job);
            }
        }
    }
    if rules.tiers && !rules.loyalty.tiers.is_empty() {
        let touched: Vec<i64> = accounts.iter().filter(|(_, a)| a.earned_changed).map(|(id, _)| *id).collect();
        let earned = earned_in_window(tx, rules, &touched).await?;
        let mut changes = Vec::new();
        for id in touched {
            let a = &accounts[&id];
            let member = TierMember {
                id,
                card_no: a.card_no.clone(),
                openid: a.openid.clone(),
                tier: a.tier.clone(),
                held_until: a.tier_held_until,
            };
            if let Some(change) = tier_change(rules, member, earned.get(&id).copied().unwrap_or(0)) {
                changes.push(change);
            }
        }
        jobs.extend(apply_tier_changes(tx, rules, &changes).await?);
    }
    outbox::enqueue_many_tx(tx, &jobs).await?;
    Ok(outcomes)
}

fn dedup<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v.dedup();
    v
}

/// Applies one change to its member in memory: the member and the row to write.
#[allow(clippy::too_many_arguments)]
fn apply(
    c: &Change,
    rules: &Rules,
    by_card: &HashMap<String, i64>,
    by_phone: &HashMap<String, Vec<i64>>,
    by_openid: &HashMap<String, i64>,
    voidable: &mut HashMap<String, Voidable>,
    voided: &mut HashSet<String>,
    accounts: &mut HashMap<i64, Account>,
) -> Result<(i64, Row), Rejection> {
    let phone = |p: &String| match by_phone.get(p).map(Vec::as_slice) {
        None | Some([]) => Err(Rejection::UnknownPhone),
        Some([id]) => Ok(*id),
        Some(_) => Err(Rejection::AmbiguousPhone),
    };
    let target = match &c.voids {
        Some(v) => Some(voidable.get(v).cloned().ok_or_else(|| Rejection::UnknownVoided(v.clone()))?),
        None => None,
    };
    let member_id = match &c.who {
        Who::Id(id) => *id,
        Who::Openid(o) => *by_openid.get(o).ok_or(Rejection::NotAMember)?,
        Who::Card(card) => *by_card.get(card).ok_or(Rejection::UnknownCard)?,
        Who::Phone(p) => phone(p)?,
        Who::CardAndPhone(card, p) => {
            let id = *by_card.get(card).ok_or(Rejection::UnknownCard)?;
            if by_phone.get(p).is_none_or(|ids| !ids.contains(&id)) {
                return Err(Rejection::CardPhoneMismatch);
            }
            id
        }
        Who::OfVoided => target.as_ref().map(|t| t.member_id).ok_or(Rejection::NotPostable)?,
    };
    let a = accounts.get_mut(&member_id).ok_or(Rejection::UnknownMember(member_id))?;
    let mut row = Row {
        member_id,
        kind: c.kind,
        points: c.points,
        valid_until: None,
        reference: c.reference.clone(),
        note: c.note.clone(),
        occurred_at: c.occurred_at,
        earned: 0,
        voids: c.voids.clone(),
        store_code: c.store_code.clone(),
        amount_fen: c.amount_fen,
    };
    match (c.kind, target) {
        (Kind::Earn | Kind::Adjust, None) if c.points > 0 => {
            let until = c.valid_until.unwrap_or_else(|| default_until(rules.loyalty, c.occurred_at));
            if until <= rules.now {
                return Err(Rejection::Lapsed);
            }
            a.credit(until, c.points);
            row.valid_until = (until != NEVER).then_some(until);
            row.earned = if c.kind == Kind::Earn { c.points } else { 0 };
        }
        (Kind::Adjust | Kind::Redeem, None) if c.points < 0 => {
            a.debit(-c.points, None, false)?;
        }
        (Kind::Void, Some(t)) => {
            let reference = c.voids.clone().unwrap_or_default();
            if !matches!(t.kind, Kind::Earn | Kind::Adjust) {
                return Err(Rejection::NotVoidable(reference, t.kind.as_str()));
            }
            if voided.contains(&reference) {
                return Err(Rejection::AlreadyVoided(reference));
            }
            if t.member_id != member_id {
                return Err(Rejection::OtherMember(reference));
            }
            if c.points != 0 && c.points.abs() != t.points.abs() {
                return Err(Rejection::VoidPoints(reference, t.points));
            }
            if t.points > 0 {
                row.points = -a.debit(t.points, Some(t.lot), c.partial)?;
            } else {
                // Reversing a deduction gives the points back, valid as if earned today.
                let until = default_until(rules.loyalty, rules.now);
                a.credit(until, -t.points);
                row.points = -t.points;
                row.valid_until = Some(until);
            }
            row.earned = -t.earned;
            voided.insert(reference);
        }
        _ => return Err(Rejection::NotPostable),
    }
    if matches!(c.kind, Kind::Earn | Kind::Adjust) {
        let lot = row.valid_until.unwrap_or(NEVER);
        voidable.insert(
            c.reference.clone(),
            Voidable { member_id, kind: c.kind, points: row.points, earned: row.earned, lot },
        );
    }
    Ok((member_id, row))
}

fn points_event(row: &Row, balance: i64) -> Event {
    Event::PointsChanged(PointsChanged {
        reference: row.reference.clone(),
        kind: row.kind.as_str().to_owned(),
        points: row.points,
        balance,
        occurred_at: crm::rfc3339(row.occurred_at),
        voids: row.voids.clone(),
        store_code: row.store_code.clone(),
        amount_fen: row.amount_fen,
        valid_until: row.valid_until.map(ledger::last_day),
    })
}

/// The `points_changed` message for what a batch did to a bound member's points.
fn points_notice(notices: &Notices, a: &Account) -> Option<NewJob> {
    let openid = a.openid.as_deref()?;
    let reason = match (a.count, &a.note) {
        (1, Some(note)) => note.clone(),
        (1, None) => "积分变动 Points update".to_owned(),
        (n, _) => format!("{n} 笔积分变动 {n} updates"),
    };
    let ctx = minijinja::context! { points => a.delta, reason, balance => a.balance() };
    match notices.render("points_changed", openid, ctx) {
        Ok(message) => {
            let key = format!("points:{}", a.first_reference.as_deref().unwrap_or_default());
            Some(NewJob::new(crate::jobs::Kind::Template, message, key))
        }
        Err(e) => {
            // Ours to fix, and no reason to refuse the points.
            tracing::error!(error = %e, "points: the points_changed notice did not render");
            None
        }
    }
}

async fn insert_rows(tx: &mut Tx, rows: &[Row], now: i64) -> Result<(), sqlx::Error> {
    for chunk in rows.chunks(CHUNK / 2) {
        with_tx!(tx, conn => {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at, occurred_at, \
                 earned, voids, store_code, amount_fen) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.member_id)
                    .push_bind(r.kind.as_str())
                    .push_bind(r.points)
                    .push_bind(r.valid_until)
                    .push_bind(r.reference.clone())
                    .push_bind(r.note.clone())
                    .push_bind(now)
                    .push_bind(r.occurred_at)
                    .push_bind(r.earned)
                    .push_bind(r.voids.clone())
                    .push_bind(r.store_code.clone())
                    .push_bind(r.amount_fen);
            });
            q.build().execute(conn).await.map(|_| ())
        })?;
    }
    Ok(())
}

async fn write_lots(tx: &mut Tx, accounts: &mut HashMap<i64, Account>) -> Result<(), sqlx::Error> {
    let mut lots: Vec<(i64, i64, i64)> = Vec::new();
    for (id, a) in accounts.iter_mut() {
        for until in a.dirty.drain() {
            lots.push((*id, until, a.lots[&until]));
        }
    }
    lots.sort_unstable();
    for chunk in lots.chunks(CHUNK) {
        with_tx!(tx, conn => {
            let mut q = sqlx::QueryBuilder::new("INSERT INTO points_lots (member_id, valid_until, remaining) ");
            q.push_values(chunk, |mut b, (id, until, left)| {
                b.push_bind(*id).push_bind(*until).push_bind(*left);
            });
            q.push(" ON CONFLICT (member_id, valid_until) DO UPDATE SET remaining = excluded.remaining");
            q.build().execute(conn).await.map(|_| ())
        })?;
    }
    Ok(())
}

/// A member's live balance, from their lots.
pub async fn balance(store: &Store, member_id: i64, now: i64) -> Result<Balance, sqlx::Error> {
    let rows: Vec<(i64, i64)> = with_pool!(store, pool => sqlx::query_as(LIVE_LOTS)
        .bind(member_id).bind(now).fetch_all(pool).await)?;
    Ok(balance_of(rows))
}

/// A member's balance and only the `soonest` lots of their schedule, in one single-row-ish
/// query: what the card page and the balance card show. (A result's rows cross from SQLite's
/// thread one by one; a long schedule read row by row cost the card page most of its time.)
pub async fn summary(store: &Store, member_id: i64, now: i64, soonest: i64) -> Result<Balance, sqlx::Error> {
    // `soonest` is written into the SQL: a bound LIMIT makes SQLite prepare the statement again
    // at every execution (see `ledger::history`).
    let sql = SUMMARY.replace("LIMIT $4", &format!("LIMIT {}", soonest.clamp(0, 100)));
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(member_id).bind(now).bind(NEVER).fetch_all(pool).await)?;
    let points = rows.first().map(|r| r.0).unwrap_or(0);
    let expiring = rows.iter().filter_map(|(_, until, left)| Some(((*left)?, (*until)?))).collect();
    Ok(Balance { points, expiring })
}

const SUMMARY: &str = "SELECT t.total, l.valid_until, l.remaining FROM     (SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) AS total FROM points_lots      WHERE member_id = $1 AND valid_until > $2 AND remaining > 0) t     LEFT JOIN (SELECT valid_until, remaining FROM points_lots      WHERE member_id = $1 AND valid_until > $2 AND remaining > 0 AND valid_until <> $3      ORDER BY valid_until LIMIT $4) l ON 1 = 1 ORDER BY l.valid_until";

/// A member's live points inside a transaction (what a redemption checks).
pub async fn points_in(tx: &mut Tx, member_id: i64, now: i64) -> Result<i64, sqlx::Error> {
    with_tx!(tx, conn => sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(remaining), 0) AS BIGINT) FROM points_lots WHERE member_id = $1 AND valid_until > $2 AND remaining > 0")
        .bind(member_id).bind(now).fetch_one(conn).await)
}

const LIVE_LOTS: &str = "SELECT valid_until, remaining FROM points_lots \
                         WHERE member_id = $1 AND valid_until > $2 AND remaining > 0 ORDER BY valid_until";

fn balance_of(lots: Vec<(i64, i64)>) -> Balance {
    Balance {
        points: lots.iter().map(|(_, p)| p).sum(),
        expiring: lots.iter().filter(|(until, _)| *until != NEVER).map(|(until, p)| (*p, *until)).collect(),
    }
}

/// The points `member_id` earned in the tier window up to `now`.
pub async fn earned(store: &Store, loyalty: &LoyaltyConfig, member_id: i64, now: i64) -> Result<i64, sqlx::Error> {
    let cutoff = now - loyalty.tier_window_days as i64 * DAY_MS;
    let sum: Option<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT CAST(SUM(earned) AS BIGINT) FROM points_ledger WHERE member_id = $1 AND earned <> 0 AND occurred_at > $2")
        .bind(member_id).bind(cutoff).fetch_one(pool).await)?;
    Ok(sum.unwrap_or(0))
}

/// A member as a tier review needs them.
#[derive(Debug, Clone)]
struct TierMember {
    id: i64,
    card_no: Option<String>,
    openid: Option<String>,
    tier: String,
    held_until: Option<i64>,
}

struct TierChange {
    member: TierMember,
    to: String,
    earned: i64,
}

/// The tier `earned` points reach: the highest whose `min_points` they reach.
pub fn tier_for(loyalty: &LoyaltyConfig, earned: i64) -> Option<&str> {
    loyalty.tiers.iter().rev().find(|t| earned >= t.min_points).map(|t| t.name.as_str())
}

fn rank(loyalty: &LoyaltyConfig, name: &str) -> Option<usize> {
    loyalty.tiers.iter().position(|t| t.name == name)
}

/// The change `earned` makes to `member`'s tier, if any: up at once; down (or off a tier the
/// rules do not know) unless an import's tier still holds.
fn tier_change(rules: &Rules, member: TierMember, earned: i64) -> Option<TierChange> {
    let to = tier_for(rules.loyalty, earned)?;
    if to == member.tier {
        return None;
    }
    let up = match (rank(rules.loyalty, to), rank(rules.loyalty, &member.tier)) {
        (Some(new), Some(old)) => new > old,
        _ => false,
    };
    let held = member.held_until.is_some_and(|until| until > rules.now);
    if !up && held {
        return None;
    }
    Some(TierChange { to: to.to_owned(), member, earned })
}

/// Points earned in the tier window by each of `members`.
async fn earned_in_window(tx: &mut Tx, rules: &Rules<'_>, members: &[i64]) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let rows = select_in!(tx, (i64, i64), EARNED_SQL, members.to_vec(), earned_suffix(rules));
    Ok(rows.into_iter().collect())
}

/// [`earned_in_window`] outside a transaction (the review's first look).
async fn earned_in_window_now(
    store: &Store,
    rules: &Rules<'_>,
    members: &[i64],
) -> Result<HashMap<i64, i64>, sqlx::Error> {
    let rows = select_in!(pool store, (i64, i64), EARNED_SQL, members.to_vec(), earned_suffix(rules));
    Ok(rows.into_iter().collect())
}

const EARNED_SQL: &str = "SELECT member_id, CAST(SUM(earned) AS BIGINT) FROM points_ledger WHERE member_id";

fn earned_suffix(rules: &Rules) -> String {
    let cutoff = rules.now - rules.loyalty.tier_window_days as i64 * DAY_MS;
    format!(" AND earned <> 0 AND occurred_at > {cutoff} GROUP BY member_id")
}

/// Writes tier changes (the member's tier, a history line) and returns the jobs they cause.
async fn apply_tier_changes(
    tx: &mut Tx,
    rules: &Rules<'_>,
    changes: &[TierChange],
) -> Result<Vec<NewJob>, sqlx::Error> {
    let now = rules.now;
    let mut jobs = Vec::new();
    for c in changes {
        let m = &c.member;
        with_tx!(tx, conn => sqlx::query("UPDATE members SET tier = $2, tier_held_until = NULL, updated_at = $3 WHERE id = $1")
            .bind(m.id).bind(&c.to).bind(now).execute(conn).await.map(|_| ()))?;
        let (from, to) = (rules.loyalty.tier_label(&m.tier), rules.loyalty.tier_label(&c.to));
        let note = format!("会员等级 Tier: {from} → {to}");
        with_tx!(tx, conn => sqlx::query(
            "INSERT INTO points_ledger (member_id, kind, points, valid_until, reference, note, created_at, occurred_at, earned) \
             VALUES ($1, 'tier', 0, NULL, $2, $3, $4, $4, 0) ON CONFLICT (reference) DO NOTHING")
            .bind(m.id).bind(format!("tier:{}:{now}:{}", m.id, c.to)).bind(&note).bind(now)
            .execute(conn).await.map(|_| ()))?;
        let member = MemberRef { card_no: m.card_no.clone(), id: m.id };
        let event = Event::TierChanged { from: m.tier.clone(), to: c.to.clone(), earned: c.earned };
        jobs.extend(rules.crm.job(&member, &event, now));
        if let (Some(notices), Some(openid)) = (rules.notices, &m.openid) {
            let ctx = minijinja::context! { from, tier => to, earned => c.earned, date => ledger::day(now) };
            match notices.render("tier_changed", openid, ctx) {
                Ok(message) => jobs.push(NewJob::new(
                    crate::jobs::Kind::Template,
                    message,
                    format!("tier:{}:{now}:{}", m.id, c.to),
                )),
                Err(e) => tracing::error!(error = %e, "points: the tier_changed notice did not render"),
            }
        }
    }
    Ok(jobs)
}

/// Members reviewed per transaction by [`review_tiers`] and [`expire`].
const BATCH: i64 = 500;

/// The hourly tier review: every member above the lowest tier (or on one the rules do not
/// know) is checked against the points they earned in the window, and moved down when those
/// have left it (unless an import's tier still holds). Returns how many tiers changed.
pub async fn review_tiers(store: &Store, rules: &Rules<'_>) -> Result<usize, sqlx::Error> {
    let Some(lowest) = rules.loyalty.tiers.first() else { return Ok(0) };
    let mut after = 0i64;
    let mut changed = 0;
    loop {
        // A first look without a transaction: most hours change nobody, and a review that only
        // reads must not hold the database's write lock.
        let sql = format!(
            "SELECT id, card_no, openid, tier, tier_held_until FROM members WHERE tier <> $1 AND id > $2 ORDER BY id LIMIT {BATCH}"
        );
        let rows: Vec<MemberRow> = with_pool!(store, pool => sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&lowest.name).bind(after).fetch_all(pool).await)?;
        let Some(last) = rows.last() else { break };
        after = last.0;
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let earned = earned_in_window_now(store, rules, &ids).await?;
        let moving: Vec<i64> = rows
            .into_iter()
            .filter_map(|(id, card_no, openid, tier, held_until)| {
                let member = TierMember { id, card_no, openid, tier, held_until };
                tier_change(rules, member, earned.get(&id).copied().unwrap_or(0)).map(|c| c.member.id)
            })
            .collect();
        if moving.is_empty() {
            continue;
        }
        // Then the changes, judged again on the locked rows.
        let mut tx = store.begin().await?;
        let lock = if tx.is_postgres() { " ORDER BY id FOR UPDATE" } else { "" };
        let locked = select_in!(
            &mut tx,
            MemberRow,
            "SELECT id, card_no, openid, tier, tier_held_until FROM members WHERE id",
            moving,
            lock
        );
        let earned = earned_in_window(&mut tx, rules, &moving).await?;
        let changes: Vec<TierChange> = locked
            .into_iter()
            .filter_map(|(id, card_no, openid, tier, held_until)| {
                let member = TierMember { id, card_no, openid, tier, held_until };
                tier_change(rules, member, earned.get(&id).copied().unwrap_or(0))
            })
            .collect();
        changed += changes.len();
        let jobs = apply_tier_changes(&mut tx, rules, &changes).await?;
        outbox::enqueue_many_tx(&mut tx, &jobs).await?;
        tx.commit().await?;
    }
    Ok(changed)
}

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
                    kind: "expire".into(),
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn tiers_follow_the_window_and_holds() {
        let loyalty = LoyaltyConfig {
            tiers: vec![
                crate::config::TierConfig { name: "standard".into(), min_points: 0, label: None },
                crate::config::TierConfig { name: "silver".into(), min_points: 2000, label: None },
                crate::config::TierConfig { name: "gold".into(), min_points: 8000, label: None },
            ],
            ..LoyaltyConfig::default()
        };
        let rules = Rules { loyalty: &loyalty, crm: crm::Events::off(), notices: None, tiers: true, now: 1000 };
        let m = |tier: &str, held: Option<i64>| TierMember {
            id: 1,
            card_no: None,
            openid: None,
            tier: tier.into(),
            held_until: held,
        };
        let to = |m: TierMember, earned: i64| tier_change(&rules, m, earned).map(|c| c.to);
        assert_eq!(to(m("standard", None), 1999), None);
        assert_eq!(to(m("standard", None), 2000).as_deref(), Some("silver"));
        assert_eq!(to(m("standard", Some(5000)), 9000).as_deref(), Some("gold"), "up at once, held or not");
        assert_eq!(to(m("gold", None), 100).as_deref(), Some("standard"));
        assert_eq!(to(m("gold", Some(5000)), 100), None, "an imported tier holds");
        assert_eq!(to(m("gold", Some(999)), 100).as_deref(), Some("standard"), "until its hold ends");
        assert_eq!(to(m("platinum", None), 2500).as_deref(), Some("silver"), "off a tier the rules do not know");
    }
}
