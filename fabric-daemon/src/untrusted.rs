//! Log hygiene: text from outside shown short and safe, and logging per
//! cause rate-limited.
//!
//! A guest, a stranger or a misbehaving host chooses what its requests hold.
//! Logged verbatim, one unauthenticated Hello with a 4 MiB vm_id wrote 8 MiB
//! of log, and a line break in it could forge a log line. So every field
//! that did not come from this process is logged through [`shown`]: at most
//! [`SHOWN_CHARS`] characters, control characters escaped, and its length
//! when cut. And a cause that can repeat at a stranger's pace (a refused
//! handshake, a refused call) is logged through a [`Throttle`]: at most one
//! line per interval, with the number of lines it held back.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most characters of an untrusted text a log line shows.
pub const SHOWN_CHARS: usize = 80;

/// An untrusted text, for logs: see the module doc.
pub struct Shown<'a>(&'a str);

/// Shows `text` (which came from outside this process) short and safe.
pub fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(SHOWN_CHARS) {
            write!(f, "{}", c.escape_debug())?;
        }
        if chars.next().is_some() {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// At most one log line per `every` for one cause.
pub struct Throttle {
    every: Duration,
    last: Mutex<Option<Instant>>,
    held_back: AtomicU64,
}

impl Throttle {
    pub const fn new(every: Duration) -> Self {
        Self {
            every,
            last: Mutex::new(None),
            held_back: AtomicU64::new(0),
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held
    /// back since the last one; `None` when this one must be held back.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|at| now.duration_since(at) < self.every) {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.held_back.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_text_is_cut_and_escaped() {
        let huge = "x".repeat(4 << 20);
        let line = shown(&huge).to_string();
        assert!(line.len() < 120, "{}", line.len());
        assert!(line.ends_with("...(4194304 bytes)"), "{line}");
        let forged = shown("vm-1\n2026-01-01 INFO forged line\u{1b}[31m").to_string();
        assert!(
            !forged.contains('\n') && !forged.contains('\u{1b}'),
            "{forged}"
        );
        assert!(forged.contains("\\n"), "{forged}");
        assert_eq!(shown("web.frontend.0").to_string(), "web.frontend.0");
    }

    #[test]
    fn a_throttle_holds_back_and_counts() {
        let t = Throttle::new(Duration::from_secs(3600));
        assert_eq!(t.allow(), Some(0));
        assert_eq!(t.allow(), None);
        assert_eq!(t.allow(), None);
        let t2 = Throttle::new(Duration::ZERO);
        assert_eq!(t2.allow(), Some(0));
        assert_eq!(t2.allow(), Some(0));
    }
}
