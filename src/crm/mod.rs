//! The brand's CRM, both ways.
//!
//! * **In**: the CRM and the stores' tills post points (`POST /api/v1/crm/transactions`) and
//!   read a member (`GET /api/v1/crm/members/{card_no}`) — [`api`], signed with `crm.secret`;
//!   the points themselves are [`crate::members::points`]'.
//! * **Out**: every change to a member is an [`Event`], enqueued by [`Events::emit`] **in the
//!   transaction of the change** as an outbox job of its member's queue, and delivered by
//!   [`deliver`] as a signed `POST crm.webhook_url` of `{"id": "evt_…", "type", "occurred_at",
//!   "member": {"card_no", "id"}, "data"}`.
//!
//! At least once (`id` lets the receiver drop a repeat sent again after a crash), in order per
//! member (the outbox runs a member's queue one job at a time), retried with the outbox's backoff,
//! dead after `outbox.max_attempts`. Events carry the card number and what changed — never an
//! openid. With `crm.webhook_url` empty nothing is enqueued at all.

pub mod api;
pub mod deliver;

use crate::jobs::Kind;
use crate::jobs::outbox::{self, NewJob};
use crate::store::{Tx, TxConn};
use crate::with_tx;
use serde::Serialize;

/// A member change the CRM hears of, with what it needs to know (and no more).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A follower enrolled in the H5 page: the CRM has not seen this member before.
    #[serde(rename = "member.enrolled")]
    MemberEnrolled { name: String, phone: String, birthday: Option<String>, tier: String },
    /// The card was bound to a WeChat account.
    #[serde(rename = "member.bound")]
    MemberBound {},
    /// The card was unbound from its WeChat account.
    #[serde(rename = "member.unbound")]
    MemberUnbound {},
    /// The member edited their details.
    #[serde(rename = "member.profile_updated")]
    ProfileUpdated { name: String, birthday: Option<String>, store_id: Option<i64> },
    /// Points earned, adjusted, voided or lapsed.
    #[serde(rename = "points.changed")]
    PointsChanged(PointsChanged),
    /// Points redeemed for a catalogue product.
    #[serde(rename = "points.redeemed")]
    PointsRedeemed { redemption_id: i64, item_id: i64, item: String, points: i64, balance: i64 },
    /// The member's tier changed (`earned`: the points earned in the tier window).
    #[serde(rename = "tier.changed")]
    TierChanged { from: String, to: String, earned: i64 },
    /// An advisor booking was made.
    #[serde(rename = "booking.confirmed")]
    BookingConfirmed { booking_id: i64, store: String, advisor: String, slot_start: String },
    /// An advisor booking was cancelled.
    #[serde(rename = "booking.cancelled")]
    BookingCancelled { booking_id: i64 },
    /// The member's personal data was erased here at their request (PIPL): the CRM should
    /// erase its copy. The last event about them.
    #[serde(rename = "member.erased")]
    MemberErased {},
}

/// The data of a `points.changed` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PointsChanged {
    /// The entry's reference (the till's or the CRM's own, `order:<id>` for the shop's).
    pub reference: String,
    /// `earn`, `adjust`, `void` or `expire`.
    pub kind: String,
    /// Signed.
    pub points: i64,
    /// The balance after it.
    pub balance: i64,
    /// RFC 3339.
    pub occurred_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voids: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount_fen: Option<i64>,
    /// The last day the points are valid (China time), for credits that lapse.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
}

/// Which member an event is about, as the CRM knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemberRef {
    pub card_no: Option<String>,
    /// wxoa's own member number (for members without a card number).
    pub id: i64,
}

/// `2026-12-01T10:00:00.123+08:00`: an instant as events and the API write it (China time).
pub fn rfc3339(ms: i64) -> String {
    let china = chrono::FixedOffset::east_opt(8 * 3600).expect("valid offset");
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.with_timezone(&china).to_rfc3339_opts(chrono::SecondsFormat::Millis, false))
        .unwrap_or_default()
}

/// Whether events are recorded (`crm.webhook_url` is set); passed to every change that emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events {
    on: bool,
}

impl Events {
    pub fn new(webhook_url: &str) -> Events {
        Events { on: !webhook_url.trim().is_empty() }
    }

    /// No events (no CRM listening).
    pub fn off() -> Events {
        Events { on: false }
    }

    pub fn is_on(&self) -> bool {
        self.on
    }

    /// The outbox job delivering `event` about `member`, in the member's queue; `None` when
    /// events are off.
    pub fn job(&self, member: &MemberRef, event: &Event, at: i64) -> Option<NewJob> {
        if !self.on {
            return None;
        }
        // Time first, then chance: ids sort by when they were made, and the outbox's unique
        // index on them grows at its end instead of splitting pages all over (random ids cost
        // the transactions API a fifth of its throughput once the table was large).
        let mut bytes = [0u8; 12];
        bytes[..6].copy_from_slice(&at.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&rand::random::<[u8; 6]>());
        let id = format!("evt_{}", crate::text::hex(&bytes));
        let mut body = serde_json::to_value(event).expect("events serialize");
        let fields = body.as_object_mut().expect("an adjacently tagged enum is an object");
        fields.insert("id".into(), id.clone().into());
        fields.insert("occurred_at".into(), rfc3339(at).into());
        fields.insert("member".into(), serde_json::to_value(member).expect("serializes"));
        Some(NewJob::new(Kind::CrmEvent, body, format!("crm:{id}")).in_queue(queue(member.id)))
    }

    /// Enqueues `event` about `member` in `tx` (nothing when events are off). On PostgreSQL the
    /// member's row is locked first, so two transactions about one member take their job ids
    /// in the order they commit — the order the outbox delivers them in.
    pub async fn emit(&self, tx: &mut Tx, member: &MemberRef, event: Event) -> Result<(), sqlx::Error> {
        let Some(job) = self.job(member, &event, tx.now_ms()) else { return Ok(()) };
        lock_member(tx, member.id).await?;
        outbox::enqueue_tx(tx, &job).await.map(|_| ())
    }

    /// [`Events::emit`] for a member known by id only.
    pub async fn emit_for(&self, tx: &mut Tx, member_id: i64, event: Event) -> Result<(), sqlx::Error> {
        if !self.on {
            return Ok(());
        }
        let card_no: Option<String> = with_tx!(tx, conn => sqlx::query_scalar("SELECT card_no FROM members WHERE id = $1")
            .bind(member_id).fetch_one(conn).await)?;
        self.emit(tx, &MemberRef { card_no, id: member_id }, event).await
    }
}

/// The outbox queue of a member's events.
pub fn queue(member_id: i64) -> String {
    format!("crm:member:{member_id}")
}

/// Locks the member's row until `tx` ends (PostgreSQL; SQLite's write lock is already held).
pub async fn lock_member(tx: &mut Tx, member_id: i64) -> Result<(), sqlx::Error> {
    if let TxConn::Postgres(tx) = &mut tx.conn {
        sqlx::query("SELECT id FROM members WHERE id = $1 FOR UPDATE").bind(member_id).execute(&mut **tx).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_an_envelope_in_its_members_queue() {
        let member = MemberRef { card_no: Some("8800123456".into()), id: 42 };
        let event = Event::TierChanged { from: "standard".into(), to: "silver".into(), earned: 2100 };
        assert!(Events::off().job(&member, &event, 0).is_none());
        let job = Events::new("https://crm.example.com/e").job(&member, &event, 1_796_083_200_000).unwrap();
        assert_eq!(job.kind, Kind::CrmEvent);
        assert_eq!(job.queue_key.as_deref(), Some("crm:member:42"));
        let body = &job.payload;
        assert_eq!(body["type"], "tier.changed");
        assert_eq!(body["occurred_at"], "2026-12-01T08:00:00.000+08:00");
        assert_eq!(body["member"], serde_json::json!({"card_no": "8800123456", "id": 42}));
        assert_eq!(body["data"], serde_json::json!({"from": "standard", "to": "silver", "earned": 2100}));
        let id = body["id"].as_str().unwrap();
        assert!(id.starts_with("evt_") && id.len() == 28, "{id}");
        assert_eq!(job.dedupe_key, format!("crm:{id}"));
        let bound = Events::new("x").job(&member, &Event::MemberBound {}, 0).unwrap();
        assert_eq!(bound.payload["data"], serde_json::json!({}));
    }
}
