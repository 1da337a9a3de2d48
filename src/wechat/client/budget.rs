//! The account's budget of calls per API family, shared by every instance on one database.
//!
//! WeChat counts calls per Official Account, not per process: two `serve` instances pacing on
//! their own sent twice `[rate_limits]` (21.5 calls/s for `template = 10`). So the pace lives in
//! the database, one row per (app id, family), as a *theoretical arrival time* (GCRA): a call
//! reserves the next slot with one atomic `INSERT … ON CONFLICT DO UPDATE … RETURNING`, then
//! sleeps until its slot. Slots are `1/rate` apart and unused time accrues up to one second, the
//! burst the per-process pacer allowed. The update is one row write per paced call (10–60/s on
//! launch night), and an unpaced family (rate 0) never touches the table.
//!
//! The slot is read on the app's clock. A clock moved back (a test, an operator fixing the time)
//! would leave the stored slot far ahead; one more than a minute ahead of now is taken as such
//! and restarted from now, since no honest queue of reservations is that long.

use super::{CallError, Family};
use crate::store::Store;
use crate::with_pool;
use std::time::Duration;

/// Unused capacity accrues up to this much time's worth of calls.
const BURST_US: i64 = 1_000_000;
/// A stored slot further ahead than this means the clock was moved back: start again from now.
const MAX_AHEAD_US: i64 = 60_000_000;

/// The shared pace of one family: calls `interval_us` apart for the whole deployment.
#[derive(Debug)]
pub(super) struct Pace {
    /// The family, by its stored name.
    family: &'static str,
    /// Microseconds between two calls.
    interval_us: i64,
}

impl Pace {
    /// The pace of `per_sec` calls a second; `None` when the family is unpaced.
    pub(super) fn new(family: Family, per_sec: f64) -> Option<Pace> {
        (per_sec > 0.0).then(|| Pace { family: family.as_str(), interval_us: ((1e6 / per_sec).round() as i64).max(1) })
    }

    /// Reserves the next slot for this account and waits until it comes.
    pub(super) async fn wait(&self, store: &Store, app_id: &str) -> Result<(), CallError> {
        let now = store.now_ms() * 1000;
        let earliest = now - BURST_US;
        let next: i64 = with_pool!(store, pool => sqlx::query_scalar(
            "INSERT INTO wechat_pace (app_id, family, next_us) VALUES ($1, $2, $3 + $4) \
             ON CONFLICT (app_id, family) DO UPDATE SET next_us = \
               CASE WHEN wechat_pace.next_us < $3 OR wechat_pace.next_us > $5 THEN $3 ELSE wechat_pace.next_us END + $4 \
             RETURNING next_us")
            .bind(app_id).bind(self.family).bind(earliest).bind(self.interval_us).bind(now + MAX_AHEAD_US)
            .fetch_one(pool).await)
        .map_err(|e| CallError::Store(e.to_string()))?;
        let slot = next - self.interval_us;
        if slot > now {
            tokio::time::sleep(Duration::from_micros((slot - now) as u64)).await;
        }
        Ok(())
    }
}
