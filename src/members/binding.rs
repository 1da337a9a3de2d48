//! A follower and their membership: binding an existing card, enrolling, unbinding, editing
//! their details.
//!
//! Inputs are parsed first ([`BindInput::parse`], [`EnrolInput::parse`], [`Profile::parse`]),
//! so a bad form changes nothing. The changes take the caller's transaction (the H5 page
//! commits its one-time submission key and the chat confirmation with them).
//!
//! Binding proves ownership with the card number *and* the phone on file, and answers "does
//! not match" alike for an unknown card and a wrong phone, so it cannot be used to probe for
//! card numbers. Failures are counted per follower and per card: five in a row lock that
//! follower out, and that card, for 30 minutes — a second WeChat account gets no fresh tries
//! on the same card.

use super::import::{BadBirthday, BadName, normalise_card, normalise_name, normalise_phone, parse_birthday};
use super::points::Rules;
use super::{Error, Refusal};
use crate::crm::{Event, MemberRef};
use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};

/// Failed binding attempts before the lockout, and its length.
pub const MAX_FAILURES: i64 = 5;
pub const LOCKOUT_MS: i64 = 30 * 60 * 1000;

/// A card and the phone that proves it is yours, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindInput {
    pub card_no: String,
    pub phone: String,
}

impl BindInput {
    pub fn parse(card_no: &str, phone: &str) -> Result<BindInput, Refusal> {
        match (normalise_card(card_no), normalise_phone(phone)) {
            (Some(card_no), Some(phone)) => Ok(BindInput { card_no, phone }),
            _ => Err(Refusal::CardAndPhoneNeeded),
        }
    }
}

/// A new member's details, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolInput {
    pub name: String,
    pub phone: String,
    pub birthday: Option<String>,
}

fn birthday(raw: &str, today: chrono::NaiveDate) -> Result<Option<String>, Refusal> {
    match raw.trim() {
        "" => Ok(None),
        b => parse_birthday(b, today).map(Some).map_err(|e| match e {
            BadBirthday::Format => Refusal::BirthdayFormat,
            BadBirthday::Future => Refusal::BirthdayInFuture,
            BadBirthday::TooOld => Refusal::BirthdayTooOld,
        }),
    }
}

fn name_refusal(e: BadName) -> Refusal {
    match e {
        BadName::Empty => Refusal::NameNeeded,
        BadName::Control => Refusal::NameControl,
    }
}

impl EnrolInput {
    /// A birthday after `today` (China's date) is refused.
    pub fn parse(name: &str, phone: &str, birthday_raw: &str, today: chrono::NaiveDate) -> Result<EnrolInput, Refusal> {
        let name = normalise_name(name).map_err(name_refusal)?;
        let phone = normalise_phone(phone).ok_or(Refusal::BadPhone)?;
        Ok(EnrolInput { name, phone, birthday: birthday(birthday_raw, today)? })
    }
}

/// The details a member edits: name, birthday, preferred store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub birthday: Option<String>,
    pub store_id: Option<i64>,
}

impl Profile {
    /// `store` must be one of `store_ids` (or empty); a birthday after `today` is refused.
    pub fn parse(
        name: &str,
        birthday_raw: &str,
        store: &str,
        store_ids: &[i64],
        today: chrono::NaiveDate,
    ) -> Result<Profile, Refusal> {
        let name = normalise_name(name).map_err(name_refusal)?;
        let birthday = birthday(birthday_raw, today)?;
        let store_id = match store.trim() {
            "" => None,
            s => Some(s.parse::<i64>().ok().filter(|id| store_ids.contains(id)).ok_or(Refusal::NoSuchStore)?),
        };
        Ok(Profile { name, birthday, store_id })
    }
}

fn subjects(openid: &str, card_no: &str) -> [String; 2] {
    [format!("openid:{openid}"), format!("card:{card_no}")]
}

/// Whether `openid` or `card_no` is locked out now: the minutes left.
pub async fn lockout(store: &Store, openid: &str, card_no: &str) -> Result<Option<i64>, sqlx::Error> {
    let now = store.now_ms();
    let [a, b] = subjects(openid, card_no);
    let until: Option<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT MAX(locked_until) FROM bind_failures WHERE subject IN ($1, $2) AND locked_until > $3")
        .bind(&a).bind(&b).bind(now).fetch_one(pool).await)?;
    Ok(until.map(|until| minutes_left(until, now)))
}

fn minutes_left(until: i64, now: i64) -> i64 {
    (until - now + 59_999) / 60_000
}

/// Takes one of the follower's and one of the card's [`MAX_FAILURES`] tries before a card and
/// phone are compared, committed before the comparison: `Ok(None)` when both had one left,
/// else the minutes until the lock ends.
///
/// Why before and not after: counted after the comparison, a burst of concurrent attempts all
/// pass the lock check before any failure is recorded, and dozens of phones are tried in the
/// time five should take. Taken first, with a conditional update that each database applies
/// one at a time per row (SQLite's write lock; PostgreSQL's row lock, the condition checked
/// again on the row it locked), at most five comparisons per card and per follower can be in
/// flight or done in a window. A try is given back ([`return_try`]) when the comparison did not
/// find a wrong phone; a process that dies between the two keeps it taken (it fails closed).
pub async fn take_try(store: &Store, openid: &str, card_no: &str) -> Result<Option<i64>, sqlx::Error> {
    let now = store.now_ms();
    let mut tx = store.begin().await?;
    for subject in subjects(openid, card_no) {
        with_tx!(&mut tx, conn => sqlx::query(
            "INSERT INTO bind_failures (subject, failures, locked_until) VALUES ($1, 0, 0) ON CONFLICT (subject) DO NOTHING")
            .bind(&subject).execute(conn).await.map(|_| ()))?;
        // A lock that has run out starts a fresh window.
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE bind_failures SET failures = 0, locked_until = 0 WHERE subject = $1 AND locked_until BETWEEN 1 AND $2")
            .bind(&subject).bind(now).execute(conn).await.map(|_| ()))?;
        let taken = with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE bind_failures SET failures = failures + 1 WHERE subject = $1 AND locked_until = 0 AND failures < $2")
            .bind(&subject).bind(MAX_FAILURES).execute(conn).await.map(|r| r.rows_affected() == 1))?;
        if !taken {
            let until: i64 = with_tx!(&mut tx, conn => sqlx::query_scalar(
                "SELECT locked_until FROM bind_failures WHERE subject = $1").bind(&subject).fetch_one(conn).await)?;
            // No lock yet: the last tries are being compared right now; their lock, if they
            // fail, is the whole lockout.
            let until = if until > now { until } else { now + LOCKOUT_MS };
            return Ok(Some(minutes_left(until, now)));
        }
    }
    tx.commit().await?;
    Ok(None)
}

/// A try taken by [`take_try`] that found a wrong phone: it stays counted, and the fifth
/// locks the follower and the card for the lockout.
pub async fn record_failure(store: &Store, openid: &str, card_no: &str) -> Result<(), sqlx::Error> {
    let now = store.now_ms();
    let mut tx = store.begin().await?;
    for subject in subjects(openid, card_no) {
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE bind_failures SET locked_until = $2 WHERE subject = $1 AND locked_until = 0 AND failures >= $3")
            .bind(&subject).bind(now + LOCKOUT_MS).bind(MAX_FAILURES).execute(conn).await.map(|_| ()))?;
    }
    tx.commit().await
}

/// A try taken by [`take_try`] that did not compare a wrong phone (bound, refused for another
/// reason, a repeated form, a failure): given back.
pub async fn return_try(store: &Store, openid: &str, card_no: &str) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    for subject in subjects(openid, card_no) {
        with_tx!(&mut tx, conn => sqlx::query(
            "UPDATE bind_failures SET failures = failures - 1 WHERE subject = $1 AND locked_until = 0 AND failures > 0")
            .bind(&subject).execute(conn).await.map(|_| ()))?;
    }
    tx.commit().await
}

/// Binds the card to `openid`; the member's id. Refused: the follower has a card already, the
/// card and phone do not match a member, or the card is another follower's. The CRM hears
/// `member.bound`.
pub async fn bind_in(tx: &mut Tx, rules: &Rules<'_>, openid: &str, input: &BindInput) -> Result<i64, Error> {
    let bound: Option<i64> = with_tx!(tx, conn => sqlx::query_scalar("SELECT id FROM members WHERE openid = $1")
        .bind(openid).fetch_optional(conn).await)?;
    if bound.is_some() {
        return Err(Refusal::AlreadyBound.into());
    }
    let found: Option<(i64, Option<String>, Option<String>)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT id, phone, openid FROM members WHERE card_no = $1").bind(&input.card_no).fetch_optional(conn).await)?;
    let (id, holder) = match found {
        Some((id, Some(phone), holder)) if phone == input.phone => (id, holder),
        _ => return Err(Refusal::NoMatch.into()),
    };
    if holder.is_some() {
        return Err(Refusal::CardTaken.into());
    }
    let now = tx.now_ms();
    let done = with_tx!(tx, conn => sqlx::query("UPDATE members SET openid = $2, updated_at = $3 WHERE id = $1 AND openid IS NULL")
        .bind(id).bind(openid).bind(now).execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if !done {
        return Err(Refusal::CardTaken.into());
    }
    let [a, b] = subjects(openid, &input.card_no);
    with_tx!(tx, conn => sqlx::query("DELETE FROM bind_failures WHERE subject IN ($1, $2)")
        .bind(&a).bind(&b).execute(conn).await.map(|_| ()))?;
    let member = MemberRef { card_no: Some(input.card_no.clone()), id };
    rules.crm.emit(tx, &member, Event::MemberBound {}).await?;
    Ok(id)
}

/// Enrols `openid` as a new member with a fresh `WX` card number, on the lowest tier; the id
/// and the card number. The CRM hears `member.enrolled` with the details it needs to open
/// the member's record.
pub async fn enrol_in(
    tx: &mut Tx,
    rules: &Rules<'_>,
    openid: &str,
    input: &EnrolInput,
) -> Result<(i64, String), Error> {
    let bound: Option<i64> = with_tx!(tx, conn => sqlx::query_scalar("SELECT id FROM members WHERE openid = $1")
        .bind(openid).fetch_optional(conn).await)?;
    if bound.is_some() {
        return Err(Refusal::AlreadyMember.into());
    }
    let taken: Option<i64> = with_tx!(tx, conn => sqlx::query_scalar("SELECT id FROM members WHERE phone = $1 LIMIT 1")
        .bind(&input.phone).fetch_optional(conn).await)?;
    if taken.is_some() {
        return Err(Refusal::PhoneTaken.into());
    }
    let now = tx.now_ms();
    // Card numbers are random, so a clash is possible and tried again; inside a transaction a
    // failed insert would abort it on PostgreSQL, so the free number is found first.
    for _ in 0..8 {
        let card = format!("WX{:08}", rand::random::<u32>() % 100_000_000);
        let clash: Option<i64> = with_tx!(tx, conn => sqlx::query_scalar("SELECT id FROM members WHERE card_no = $1")
            .bind(&card).fetch_optional(conn).await)?;
        if clash.is_some() {
            continue;
        }
        let tier = rules.loyalty.tiers.first().map(|t| t.name.as_str()).unwrap_or("standard");
        let id: i64 = with_tx!(tx, conn => sqlx::query_scalar(
            "INSERT INTO members (card_no, name, phone, birthday, tier, openid, source, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'enrol', $7, $7) RETURNING id")
            .bind(&card).bind(&input.name).bind(&input.phone).bind(&input.birthday).bind(tier).bind(openid).bind(now)
            .fetch_one(conn).await)?;
        let event = Event::MemberEnrolled {
            name: input.name.clone(),
            phone: input.phone.clone(),
            birthday: input.birthday.clone(),
            tier: tier.to_owned(),
        };
        rules.crm.emit(tx, &MemberRef { card_no: Some(card.clone()), id }, event).await?;
        return Ok((id, card));
    }
    Err(Error::Db(sqlx::Error::Protocol("no free card number after 8 tries".into())))
}

/// Unbinds the follower's card; the member it was, if any. The CRM hears `member.unbound`.
pub async fn unbind_in(tx: &mut Tx, rules: &Rules<'_>, openid: &str) -> Result<Option<i64>, sqlx::Error> {
    let now = tx.now_ms();
    let id: Option<i64> = with_tx!(tx, conn => sqlx::query_scalar(
        "UPDATE members SET openid = NULL, updated_at = $2 WHERE openid = $1 RETURNING id")
        .bind(openid).bind(now).fetch_optional(conn).await)?;
    if let Some(id) = id {
        rules.crm.emit_for(tx, id, Event::MemberUnbound {}).await?;
    }
    Ok(id)
}

/// Saves the member's details; the CRM hears `member.profile_updated` if they changed.
pub async fn update_profile_in(tx: &mut Tx, rules: &Rules<'_>, member_id: i64, p: &Profile) -> Result<(), sqlx::Error> {
    let now = tx.now_ms();
    let changed = with_tx!(tx, conn => sqlx::query(
        "UPDATE members SET name = $2, birthday = $3, store_id = $4, updated_at = $5 WHERE id = $1 \
         AND (name IS DISTINCT FROM $2 OR birthday IS DISTINCT FROM $3 OR store_id IS DISTINCT FROM $4)")
        .bind(member_id).bind(&p.name).bind(&p.birthday).bind(p.store_id).bind(now)
        .execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if changed {
        let event = Event::ProfileUpdated { name: p.name.clone(), birthday: p.birthday.clone(), store_id: p.store_id };
        rules.crm.emit_for(tx, member_id, event).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_are_parsed_before_anything_changes() {
        assert_eq!(BindInput::parse(" c-1001 ", "+86 138 1234 5678").unwrap().card_no, "C1001");
        assert_eq!(BindInput::parse("", "13812345678"), Err(Refusal::CardAndPhoneNeeded));
        assert_eq!(EnrolInput::parse(" ", "13812345678", "", today()), Err(Refusal::NameNeeded));
        assert_eq!(EnrolInput::parse("Li\0", "13812345678", "", today()), Err(Refusal::NameControl));
        assert_eq!(EnrolInput::parse("Li", "123", "", today()), Err(Refusal::BadPhone));
        assert_eq!(EnrolInput::parse("Li", "13812345678", "31/31/1990", today()), Err(Refusal::BirthdayFormat));
        assert_eq!(EnrolInput::parse("Li", "13812345678", "2026-06-02", today()), Err(Refusal::BirthdayInFuture));
        assert_eq!(EnrolInput::parse("Li", "13812345678", "1850-01-01", today()), Err(Refusal::BirthdayTooOld));
        let p = Profile::parse("Li", "1990-01-05", "24", &[21, 24], today()).unwrap();
        assert_eq!((p.birthday.as_deref(), p.store_id), (Some("1990-01-05"), Some(24)));
        assert_eq!(Profile::parse("Li", "", "99", &[21], today()), Err(Refusal::NoSuchStore));
    }

    /// The day the parses above are judged on.
    fn today() -> chrono::NaiveDate {
        chrono::NaiveDate::from_ymd_opt(2026, 6, 1).unwrap()
    }
}
