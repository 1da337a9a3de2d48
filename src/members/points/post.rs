//! Applying changes: [`post`] reads what a batch needs, applies each change in memory, and
//! writes the entries, the lots and the jobs they cause.
//!
//! **Lots.** A credit adds to the lot of the moment it lapses; a debit takes from the lots
//! alive now, soonest-lapsing first (a void from the lot of the entry it reverses first).
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

use super::tiers::{TierMember, apply_tier_changes, earned_in_window, tier_change};
use super::{CHUNK, Change, Kind, MemberRow, Outcome, Rejection, Rules, Who, default_until};
use crate::crm::{self, Event, MemberRef, PointsChanged};
use crate::jobs::outbox::{self, NewJob};
use crate::members::ledger::{self, NEVER};
use crate::notices::Notices;
use crate::store::Tx;
use crate::with_tx;
use std::collections::{BTreeMap, HashMap, HashSet};

/// An entry a void may reverse.
#[derive(Debug, Clone)]
struct Voidable {
    /// Whose points it moved.
    member_id: i64,
    /// Only an earn or an adjustment may be voided.
    kind: Kind,
    /// The points it moved (signed).
    points: i64,
    /// What it counted towards the tier.
    earned: i64,
    /// Its lot's lapse time.
    lot: i64,
}

/// A member as a batch works on them.
struct Account {
    /// For the CRM's events.
    card_no: Option<String>,
    /// The bound follower, whom the notices go to.
    openid: Option<String>,
    /// Their tier before the batch.
    tier: String,
    /// Until when an imported tier holds (unix ms).
    tier_held_until: Option<i64>,
    /// Live lots: lapse time → points left.
    lots: BTreeMap<i64, i64>,
    /// The lapse times of the lots this batch changed: what is written back.
    dirty: HashSet<i64>,
    /// Whether an entry of this batch counted towards the tier (the tier is judged again).
    earned_changed: bool,
    /// For the notice: the points this batch moved, in how many entries, and the last note.
    delta: i64,
    /// For the notice: how many entries this batch wrote.
    count: usize,
    /// For the notice: the last entry's note.
    note: Option<String>,
    /// The batch's first reference for this member: the notice's job key.
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
    /// Whose points it moves.
    member_id: i64,
    /// What the entry is.
    kind: Kind,
    /// The points it moved (signed): for a void, what it took back.
    points: i64,
    /// When a credit lapses (unix ms); `None`: never, or not a credit.
    valid_until: Option<i64>,
    /// The change's reference.
    reference: String,
    /// As the member reads it in their history.
    note: Option<String>,
    /// When it happened (unix ms).
    occurred_at: i64,
    /// What it counts towards the tier (an earn's points; a void takes its entry's back).
    earned: i64,
    /// The reference a void reverses.
    voids: Option<String>,
    /// The code of the store it happened at.
    store_code: Option<String>,
    /// What the purchase came to (fen).
    amount_fen: Option<i64>,
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
