//! Turning protobuf times and durations into what people read.

use std::time::{Duration, SystemTime};

/// A protobuf timestamp as RFC 3339 UTC with milliseconds; "-" if absent or
/// out of range.
pub fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    ts.and_then(|t| SystemTime::try_from(*t).ok())
        .map(|t| humantime::format_rfc3339_millis(t).to_string())
        .unwrap_or_else(|| "-".into())
}

/// The time-of-day part of [`rfc3339`] ("12:34:56.789Z"), for log lines.
pub fn clock(ts: Option<&prost_types::Timestamp>) -> String {
    let full = rfc3339(ts);
    match full.split_once('T') {
        Some((_, time)) => time.to_owned(),
        None => full,
    }
}

/// The current time of day, formatted like [`clock`].
pub fn now_clock() -> String {
    clock(Some(&prost_types::Timestamp::from(SystemTime::now())))
}

/// A protobuf duration in seconds (negative durations count as zero).
pub fn seconds(d: Option<&prost_types::Duration>) -> Option<f64> {
    d.map(|d| Duration::try_from(*d).map_or(0.0, |d| d.as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let ts = prost_types::Timestamp {
            seconds: 1_330_473_600,
            nanos: 5_000_000,
        };
        assert_eq!(rfc3339(Some(&ts)), "2012-02-29T00:00:00.005Z");
        assert_eq!(clock(Some(&ts)), "00:00:00.005Z");
        assert_eq!(rfc3339(None), "-");
        let d = prost_types::Duration {
            seconds: 1,
            nanos: 500_000_000,
        };
        assert_eq!(seconds(Some(&d)), Some(1.5));
        assert_eq!(seconds(None), None);
    }
}
