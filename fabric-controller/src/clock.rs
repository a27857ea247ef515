//! The controller's real clock, injected into the pure core.
//!
//! The core only ever sees a [`Moment`]; this is where one comes from in a
//! running controller. It reads tokio's clock rather than `std::time::Instant`
//! so paused-time tests move it.

use fabric_core::{Clock, Moment};
use std::time::SystemTime;

/// The real clock: tokio's monotonic clock and the system calendar.
pub struct SystemClock {
    origin: tokio::time::Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Moment {
        Moment {
            mono: self.origin.elapsed(),
            wall: SystemTime::now(),
        }
    }
}
