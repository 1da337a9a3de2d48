//! Advisor bookings: a member picks a store, an advisor and a free hourly slot (10:00 to 21:00
//! China time, the next seven days). The partial unique index on confirmed bookings makes a
//! double booking impossible under any concurrency. Confirming queues the confirmation notice and
//! a reminder (`notices.reminder_lead_mins` before) in the same transaction; the reminder checks
//! the booking when it is due and is skipped if the booking was cancelled. The CRM hears
//! `booking.confirmed` and `booking.cancelled` in the same transactions.

use crate::jobs::outbox::{self, NewJob};
use crate::store::{Store, Tx};
use crate::{with_pool, with_tx};
use chrono::{Duration, FixedOffset, TimeZone};

/// Where a booking stands, stored as [`Status::as_str`]. The SQL names `'confirmed'` literally:
/// the partial unique index on confirmed bookings is only used by a query that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Booked, and holding its slot.
    Confirmed,
    /// Cancelled by the member; the slot is free again.
    Cancelled,
}

crate::stored_as!(Status { Confirmed => "confirmed", Cancelled => "cancelled" });

/// Payload of a reminder job ([`crate::jobs::Kind::BookingReminder`]): sent only if the booking
/// is still confirmed when it is due.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ReminderJob {
    pub booking_id: i64,
    pub message: crate::wechat::client::template::TemplateMessage,
}

/// Runs a reminder job: the template message, unless the booking was cancelled meanwhile.
pub async fn send_reminder(ctx: crate::jobs::worker::JobCtx, payload: String) -> crate::jobs::worker::Sent {
    use crate::jobs::worker::SendError;
    let job: ReminderJob = crate::jobs::worker::payload(&payload)?;
    if !is_confirmed(&ctx.store, job.booking_id).await.map_err(SendError::Db)? {
        return Ok(Some("skipped: booking cancelled".into()));
    }
    ctx.client.template_send(&job.message).await.map(|msgid| Some(msgid.to_string())).map_err(SendError::Api)
}
const FIRST_HOUR: u32 = 10;
const LAST_HOUR: u32 = 21;
const DAYS: i64 = 7;

fn china() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8")
}

/// Slot starts (unix ms) from the next full hour over the coming week.
pub fn slot_grid(now: i64) -> Vec<i64> {
    let tz = china();
    let Some(start) = tz.timestamp_millis_opt(now).single() else { return vec![] };
    let mut day = start.date_naive();
    let mut out = Vec::new();
    for _ in 0..DAYS {
        for hour in FIRST_HOUR..=LAST_HOUR {
            if let Some(t) = day.and_hms_opt(hour, 0, 0).and_then(|naive| tz.from_local_datetime(&naive).single()) {
                let ms = t.timestamp_millis();
                if ms > now {
                    out.push(ms);
                }
            }
        }
        day += Duration::days(1);
    }
    out
}

/// `2026-12-01 14:00` in China time.
pub fn slot_label(ms: i64) -> String {
    china().timestamp_millis_opt(ms).single().map(|t| t.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisor {
    pub id: i64,
    pub store_id: i64,
    pub name: String,
}

pub async fn advisors(store: &Store, store_id: i64) -> Result<Vec<Advisor>, sqlx::Error> {
    let rows: Vec<(i64, i64, String)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT id, store_id, name FROM advisors WHERE store_id = $1 AND active = $2 ORDER BY name").bind(store_id).bind(true).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|(id, store_id, name)| Advisor { id, store_id, name }).collect())
}

pub async fn put_advisor(store: &Store, a: &Advisor) -> Result<(), sqlx::Error> {
    with_pool!(store, pool => sqlx::query(
        "INSERT INTO advisors (id, store_id, name, active) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (id) DO UPDATE SET store_id = excluded.store_id, name = excluded.name, active = excluded.active")
        .bind(a.id).bind(a.store_id).bind(&a.name).bind(true).execute(pool).await.map(|_| ()))
}

/// An hourly slot on the grid, and whether it is taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub start: i64,
    /// `14:00` (China time).
    pub time: String,
    pub taken: bool,
}

/// A day of an advisor's slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    /// `12-03 周四 Thu`.
    pub label: String,
    pub slots: Vec<Slot>,
}

const WEEKDAYS: [&str; 7] = ["周一 Mon", "周二 Tue", "周三 Wed", "周四 Thu", "周五 Fri", "周六 Sat", "周日 Sun"];

/// The advisor's week, day by day, taken slots marked.
pub async fn week(store: &Store, advisor_id: i64, now: i64) -> Result<Vec<Day>, sqlx::Error> {
    use chrono::Datelike;
    let taken: Vec<i64> = with_pool!(store, pool => sqlx::query_scalar(
        "SELECT slot_start FROM bookings WHERE advisor_id = $1 AND status = 'confirmed' AND slot_start > $2")
        .bind(advisor_id).bind(now).fetch_all(pool).await)?;
    let tz = china();
    let mut days: Vec<Day> = Vec::new();
    for start in slot_grid(now) {
        let Some(t) = tz.timestamp_millis_opt(start).single() else { continue };
        let label = format!("{} {}", t.format("%m-%d"), WEEKDAYS[t.weekday().num_days_from_monday() as usize]);
        let slot = Slot { start, time: t.format("%H:%M").to_string(), taken: taken.contains(&start) };
        match days.last_mut() {
            Some(d) if d.label == label => d.slots.push(slot),
            _ => days.push(Day { label, slots: vec![slot] }),
        }
    }
    Ok(days)
}

/// Free slots of an advisor.
pub async fn free_slots(store: &Store, advisor_id: i64, now: i64) -> Result<Vec<i64>, sqlx::Error> {
    Ok(week(store, advisor_id, now)
        .await?
        .into_iter()
        .flat_map(|d| d.slots)
        .filter(|s| !s.taken)
        .map(|s| s.start)
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    pub id: i64,
    pub slot_start: i64,
    pub advisor: String,
    pub store: String,
}

/// The member's upcoming confirmed bookings.
pub async fn upcoming(store: &Store, member_id: i64, now: i64) -> Result<Vec<Booking>, sqlx::Error> {
    let rows: Vec<(i64, i64, String, String)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT b.id, b.slot_start, a.name, COALESCE(s.name_zh || ' ' || s.name, s.name) FROM bookings b JOIN advisors a ON a.id = b.advisor_id \
         JOIN stores s ON s.id = a.store_id WHERE b.member_id = $1 AND b.status = 'confirmed' AND b.slot_start > $2 ORDER BY b.slot_start")
        .bind(member_id).bind(now).fetch_all(pool).await)?;
    Ok(rows.into_iter().map(|(id, slot_start, advisor, store)| Booking { id, slot_start, advisor, store }).collect())
}

/// The member's booking `id` (any status; `None` for one this build does not know), if it is
/// theirs: for its result page.
pub async fn booking(store: &Store, member_id: i64, id: i64) -> Result<Option<(Booking, Option<Status>)>, sqlx::Error> {
    let row: Option<(i64, i64, String, String, String)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT b.id, b.slot_start, a.name, COALESCE(s.name_zh || ' ' || s.name, s.name), b.status FROM bookings b JOIN advisors a ON a.id = b.advisor_id \
         JOIN stores s ON s.id = a.store_id WHERE b.id = $1 AND b.member_id = $2")
        .bind(id).bind(member_id).fetch_optional(pool).await)?;
    Ok(row.map(|(id, slot_start, advisor, store, status)| {
        (Booking { id, slot_start, advisor, store }, Status::parse(&status))
    }))
}

/// An advisor on offer and their store's name.
pub async fn advisor(store: &Store, advisor_id: i64) -> Result<Option<(Advisor, String)>, sqlx::Error> {
    let row: Option<(i64, i64, String, String)> = with_pool!(store, pool => sqlx::query_as(
        "SELECT a.id, a.store_id, a.name, COALESCE(s.name_zh || ' ' || s.name, s.name) FROM advisors a JOIN stores s ON s.id = a.store_id WHERE a.id = $1 AND a.active = $2")
        .bind(advisor_id).bind(true).fetch_optional(pool).await)?;
    Ok(row.map(|(id, store_id, name, store)| (Advisor { id, store_id, name }, store)))
}

/// A booking that did not happen: refused (nothing changed) or the database failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("该顾问不存在。No such advisor.")]
    NoSuchAdvisor,
    #[error("该时段不可预约。That time cannot be booked.")]
    NotASlot,
    #[error("该时段已被预约，请选择其他时间。That time was just taken; please pick another.")]
    Taken,
    #[error(
        "您已有 {0} 个预约，请先完成或取消后再预约。You have {0} upcoming bookings already: cancel one to book another."
    )]
    TooMany(u32),
    #[error("未找到该预约。There is no such upcoming booking of yours.")]
    NoSuchBooking,
}

/// What the notices need to know about a booking.
pub struct Details {
    pub store: String,
    pub advisor: String,
    pub time: String,
}

/// Books `slot` with `advisor_id` for `member_id` inside `tx` (refused: not a slot, no such
/// advisor, taken, or the member already holds `max_open` upcoming bookings); `jobs` builds the
/// confirmation and reminder queued in the same transaction.
pub async fn book_in(
    tx: &mut Tx,
    crm: crate::crm::Events,
    member_id: i64,
    advisor_id: i64,
    slot: i64,
    max_open: u32,
    jobs: impl FnOnce(i64, &Details) -> Vec<NewJob>,
) -> Result<Booking, Error> {
    let now = tx.now_ms();
    if !slot_grid(now).contains(&slot) {
        return Err(Refusal::NotASlot.into());
    }
    if tx.is_postgres() {
        // Serialises this member's bookings, so the count below stays true until commit.
        with_tx!(tx, conn => sqlx::query("SELECT id FROM members WHERE id = $1 FOR UPDATE").bind(member_id).execute(conn).await.map(|_| ()))?;
    }
    let found: Option<(String, String)> = with_tx!(tx, conn => sqlx::query_as(
        "SELECT a.name, COALESCE(s.name_zh || ' ' || s.name, s.name) FROM advisors a JOIN stores s ON s.id = a.store_id WHERE a.id = $1 AND a.active = $2")
        .bind(advisor_id).bind(true).fetch_optional(conn).await)?;
    let Some((advisor, store_name)) = found else { return Err(Refusal::NoSuchAdvisor.into()) };
    let open: i64 = with_tx!(tx, conn => sqlx::query_scalar(
        "SELECT COUNT(*) FROM bookings WHERE member_id = $1 AND status = 'confirmed' AND slot_start > $2")
        .bind(member_id).bind(now).fetch_one(conn).await)?;
    if open >= max_open as i64 {
        return Err(Refusal::TooMany(max_open).into());
    }
    let inserted: Option<i64> = with_tx!(tx, conn => sqlx::query_scalar(
        "INSERT INTO bookings (member_id, advisor_id, slot_start, status, created_at) VALUES ($1, $2, $3, 'confirmed', $4) \
         ON CONFLICT DO NOTHING RETURNING id")
        .bind(member_id).bind(advisor_id).bind(slot).bind(now).fetch_optional(conn).await)?;
    let Some(id) = inserted else { return Err(Refusal::Taken.into()) };
    let details = Details { store: store_name.clone(), advisor: advisor.clone(), time: slot_label(slot) };
    for job in jobs(id, &details) {
        outbox::enqueue_tx(tx, &job).await?;
    }
    let event = crate::crm::Event::BookingConfirmed {
        booking_id: id,
        store: store_name.clone(),
        advisor: advisor.clone(),
        slot_start: crate::crm::rfc3339(slot),
    };
    crm.emit_for(tx, member_id, event).await?;
    Ok(Booking { id, slot_start: slot, advisor, store: store_name })
}

/// Cancels the member's own upcoming booking inside `tx`.
pub async fn cancel_in(tx: &mut Tx, crm: crate::crm::Events, member_id: i64, booking_id: i64) -> Result<(), Error> {
    let now = tx.now_ms();
    let done = with_tx!(tx, conn => sqlx::query(
        "UPDATE bookings SET status = 'cancelled', cancelled_at = $3 WHERE id = $1 AND member_id = $2 AND status = 'confirmed' AND slot_start > $3")
        .bind(booking_id).bind(member_id).bind(now).execute(conn).await.map(|r| r.rows_affected() == 1))?;
    if !done {
        return Err(Refusal::NoSuchBooking.into());
    }
    crm.emit_for(tx, member_id, crate::crm::Event::BookingCancelled { booking_id }).await?;
    Ok(())
}

/// Whether a booking is still confirmed (the reminder's check when it is due).
pub async fn is_confirmed(store: &Store, booking_id: i64) -> Result<bool, sqlx::Error> {
    let status: Option<String> = with_pool!(store, pool => sqlx::query_scalar("SELECT status FROM bookings WHERE id = $1")
        .bind(booking_id).fetch_optional(pool).await)?;
    Ok(status.as_deref().and_then(Status::parse) == Some(Status::Confirmed))
}

/// When a slot's reminder goes out: `lead_mins` before, or now if that has passed.
pub fn reminder_at(slot: i64, lead_mins: u64, now: i64) -> i64 {
    (slot - lead_mins as i64 * 60_000).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn the_grid_is_hourly_china_time_and_in_the_future() {
        // 2026-11-22 09:30 China time.
        let now = china().with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap().timestamp_millis();
        let grid = slot_grid(now);
        assert_eq!(grid.len(), 7 * 12);
        assert_eq!(slot_label(grid[0]), "2026-11-22 10:00");
        assert_eq!(slot_label(*grid.last().unwrap()), "2026-11-28 21:00");
        // Later in the day, past slots are gone.
        let evening = now + 11 * HOUR_MS;
        assert_eq!(slot_label(slot_grid(evening)[0]), "2026-11-22 21:00");
        assert!(grid.iter().all(|s| china().timestamp_millis_opt(*s).unwrap().minute() == 0));
        assert_eq!(reminder_at(grid[5], 120, now), grid[5] - 2 * HOUR_MS);
        assert_eq!(reminder_at(grid[0], 120, now), now);
    }
}
