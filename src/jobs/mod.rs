//! Work done later: the durable [`outbox`] of jobs and the [`worker`] that runs them.
//!
//! A job's [`Kind`] says what it is; what running one means is registered with the worker by
//! the module that owns it ([`worker::Executors`]): the outbox sends customer-service and
//! template messages itself, bookings registers its reminders, and so on — so the outbox knows
//! the kinds by name only, and no module below it.

pub mod outbox;
pub mod resumable;
pub mod worker;

/// What a job is, stored as the string [`Kind::as_str`] gives (the strings of the jobs table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A customer-service message (a late reply, a chat confirmation, a news push).
    CustomMessage,
    /// A template message.
    Template,
    /// An advisor booking's reminder, sent only if the booking still stands.
    BookingReminder,
    /// A deferred handler's reply, if the handler did not deliver it itself in time: the
    /// handler is run again from the logged message (see `bot`).
    LateReply,
    /// A member event for the brand's CRM (`crm`), delivered in order per member.
    CrmEvent,
    /// One step of a pull of WeChat's follower list into the directory (`followers::sync`).
    FollowerSync,
    /// A segment's sync to its WeChat tag (`audiences::sync`).
    SegmentSync,
}

crate::stored_as!(Kind {
    CustomMessage => "custom_message",
    Template => "template",
    BookingReminder => "booking_reminder",
    LateReply => "late_reply",
    CrmEvent => "crm_event",
    FollowerSync => "follower_sync",
    SegmentSync => "segment_sync",
});

#[cfg(test)]
mod tests {
    #[test]
    fn kinds_round_trip() {
        for k in super::Kind::ALL {
            assert_eq!(super::Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(super::Kind::parse("no_such_kind"), None);
    }
}
