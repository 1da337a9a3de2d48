//! The one clock: every "now" in wxoa is read from a [`Clock`], never from the system directly.
//!
//! `serve` runs on the system clock. A test builds its app on a settable clock (the test
//! config's) and moves it — to the evening before a launch, across a month's end, past the day
//! points lapse — instead of sleeping until a time arrives or writing a date that will one day
//! be in the past. A settable clock keeps running at the system's pace from where it was set, so
//! leases, back-offs and deadlines still elapse as they do in production; whoever waits for a
//! time ([`Clock::sleep`]) is woken when the clock is moved, and reads it again.
//!
//! Instants measured *between two readings in one process* (a handler's deadline, a timer for a
//! benchmark) stay on `std::time::Instant`/tokio's: they are durations, not times of day.

use chrono::{DateTime, FixedOffset};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// China Standard Time (UTC+8, no daylight saving): the time followers and WeChat's quotas
/// (the month of the 4-pushes limit, the day of the template-message quota) count in.
pub const CHINA_OFFSET_SECS: i32 = 8 * 3600;

/// Where wxoa reads the time (cheap to clone; clones share one setting).
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<Settable>>);

/// A clock that was set: the system's time plus an offset, and who to wake when it moves.
#[derive(Default)]
struct Settable {
    /// Milliseconds added to the system's time.
    offset_ms: AtomicI64,
    /// Woken whenever the offset changes.
    moved: tokio::sync::Notify,
}

impl Clock {
    /// The system's clock (what `serve` and the CLI run on); it cannot be set.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that reads as the system's until it is [set](Clock::set) or
    /// [advanced](Clock::advance) (tests, the simulator).
    pub fn settable() -> Clock {
        Clock(Some(Arc::default()))
    }

    /// A settable clock that reads `ms` (unix milliseconds) now, and runs on from there.
    pub fn at(ms: i64) -> Clock {
        let clock = Clock::settable();
        clock.set(ms);
        clock
    }

    /// Now, as unix milliseconds (UTC).
    pub fn now_ms(&self) -> i64 {
        system_ms() + self.0.as_ref().map_or(0, |s| s.offset_ms.load(Ordering::Relaxed))
    }

    /// Now, as unix seconds (UTC).
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Now in China Standard Time.
    pub fn china_now(&self) -> DateTime<FixedOffset> {
        china_time(self.now_ms())
    }

    /// Makes the clock read `ms` now (it runs on from there). Panics on the system clock: only
    /// a settable clock can be moved, and moving the system clock is a bug in the caller.
    pub fn set(&self, ms: i64) {
        let s = self.0.as_ref().expect("the system clock cannot be set");
        s.offset_ms.store(ms - system_ms(), Ordering::Relaxed);
        s.moved.notify_waiters();
    }

    /// Moves a settable clock forward (or back, with a negative `ms`).
    pub fn advance(&self, ms: i64) {
        let s = self.0.as_ref().expect("the system clock cannot be advanced");
        s.offset_ms.fetch_add(ms, Ordering::Relaxed);
        s.moved.notify_waiters();
    }

    /// Whether this clock can be set.
    pub fn is_settable(&self) -> bool {
        self.0.is_some()
    }

    /// Sleeps for `d`, or until the clock is moved, whichever comes first: a caller waiting for
    /// a time of day reads the clock again after this and sleeps again if it is not there yet.
    pub async fn sleep(&self, d: Duration) {
        match &self.0 {
            None => tokio::time::sleep(d).await,
            Some(s) => {
                let moved = s.moved.notified();
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = moved => {}
                }
            }
        }
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            None => f.write_str("Clock(system)"),
            Some(s) => write!(f, "Clock(settable, {:+} ms)", s.offset_ms.load(Ordering::Relaxed)),
        }
    }
}

/// `ms` (unix milliseconds) in China Standard Time.
pub fn china_time(ms: i64) -> DateTime<FixedOffset> {
    let tz = FixedOffset::east_opt(CHINA_OFFSET_SECS).expect("UTC+8 is a valid offset");
    DateTime::from_timestamp_millis(ms).unwrap_or_default().with_timezone(&tz)
}

/// The system's time as unix milliseconds; only [`Clock`] calls it.
fn system_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settable_clock_reads_what_it_was_set_to_and_runs_on() {
        let c = Clock::at(1_800_000_000_000);
        let t = c.now_ms();
        assert!((1_800_000_000_000..1_800_000_001_000).contains(&t), "{t}");
        c.advance(86_400_000);
        assert!(c.now_ms() - t >= 86_400_000);
        let shared = c.clone();
        shared.set(0);
        assert!(c.now_ms() < 1_000, "clones share the setting");
    }

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_clock_moves() {
        let c = Clock::settable();
        let sleeper = {
            let c = c.clone();
            tokio::spawn(async move { c.sleep(Duration::from_secs(3600)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.advance(1);
        tokio::time::timeout(Duration::from_secs(2), sleeper).await.expect("woken").unwrap();
    }
}
