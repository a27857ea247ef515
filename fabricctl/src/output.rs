//! Writing command output to stdout without panicking on a closed pipe.
//!
//! `fabricctl events --follow | head` must end quietly when `head` exits;
//! `println!` would panic on EPIPE instead.

use std::io::Write;

/// Prints one line; if stdout is a closed pipe, exits with status 0 (the
/// reader has all it wanted).
pub fn line(text: &str) {
    let mut out = std::io::stdout().lock();
    let result = writeln!(out, "{text}").and_then(|()| out.flush());
    if result.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
        std::process::exit(0);
    }
}

/// Prints one line, ignoring every error: for the launcher, which must keep
/// supervising (and later clean up) even if its terminal went away.
pub fn line_lossy(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}
