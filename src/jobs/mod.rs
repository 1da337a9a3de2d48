//! Work done later: the durable [`outbox`] of jobs and the [`worker`] that sends them.

pub mod outbox;
pub mod worker;
