//! The calendar clock: what date the agent believes it is.
//!
//! The transfer certificate's validity depends on the calendar date, and the 2012 outage depended
//! on it being Feb 29. To replay that day on any day, the clock's start instant is injectable
//! (`--now`); from there it advances with tokio's monotonic clock, so it never jumps when the
//! system clock is adjusted and tests can drive it with tokio's paused time.

use time::OffsetDateTime;
use tokio::time::Instant;

/// A calendar clock: a start instant plus the monotonic time elapsed since it was made.
#[derive(Clone, Copy, Debug)]
pub struct CalendarClock {
    start: OffsetDateTime,
    started: Instant,
}

impl CalendarClock {
    /// A clock that reads `start` now and advances in real (tokio) time from here.
    pub fn starting_at(start: OffsetDateTime) -> Self {
        Self {
            start,
            started: Instant::now(),
        }
    }

    /// A clock that starts at the system's current time.
    pub fn system() -> Self {
        Self::starting_at(OffsetDateTime::now_utc())
    }

    /// The current calendar time.
    pub fn now(&self) -> OffsetDateTime {
        self.start + self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::macros::datetime;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn advances_with_tokio_time() {
        let clock = CalendarClock::starting_at(datetime!(2012-02-28 23:59:59 UTC));
        assert_eq!(clock.now(), datetime!(2012-02-28 23:59:59 UTC));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(clock.now(), datetime!(2012-02-29 0:00:01 UTC));
    }
}
