//! Time as the core sees it, and the clock the shell injects.
//!
//! A [`Moment`] carries two readings: a monotonic one for every timeout
//! decision (immune to wall-clock jumps) and a calendar one only for stamping
//! events. The controller injects its system clock (tokio's, so paused-time
//! tests work; see fabric-controller's `clock.rs`); tests and the simulator
//! use [`ManualClock`] or a [`Moment`] of their own and move time by hand.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// One reading of the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Moment {
    /// Monotonic time since the clock's origin: the only input to timeouts.
    pub mono: Duration,
    /// Calendar time, for event timestamps shown to people.
    pub wall: SystemTime,
}

impl Moment {
    /// Monotonic time elapsed since `earlier` (zero if `earlier` is later).
    pub fn since(&self, earlier: Duration) -> Duration {
        self.mono.saturating_sub(earlier)
    }
}

/// Where the shell gets "now" from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Moment;
}

/// A clock that only moves when told to; for tests and simulations.
pub struct ManualClock {
    state: Mutex<Moment>,
}

impl ManualClock {
    /// Starts at monotonic zero and the given calendar time.
    pub fn starting_at(wall: SystemTime) -> Self {
        Self {
            state: Mutex::new(Moment {
                mono: Duration::ZERO,
                wall,
            }),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut m = self.state.lock().expect("clock lock");
        m.mono += by;
        m.wall += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Moment {
        *self.state.lock().expect("clock lock")
    }
}
