//! The transfer certificate's validity window: midnight UTC today until "one year later".
//!
//! "One year later" is a calendar step: the same month and day next year, clamped to the length
//! of that month, so Feb 29 2012 becomes Feb 28 2013 and every other day keeps its date. We chose
//! this over a fixed 365-day duration because it keeps the 2012 design's intent (valid until the
//! same date next year) and differs from the original computation on Feb 29 only: every
//! certificate made on any other day is exactly what the 2012 agent would have made. The window
//! is therefore 365 or 366 days long, never more than a calendar year.

use time::{Date, OffsetDateTime, Time, UtcOffset};

use super::TransferCertError;

/// Midnight UTC at the start of the UTC day containing `now` (the certificate's valid-from).
///
/// The day is taken in UTC, not in `now`'s offset: in 2012 the failure began at 4 PM PST on
/// Feb 28, which was already Feb 29 in UTC.
pub fn midnight_utc(now: OffsetDateTime) -> OffsetDateTime {
    now.to_offset(UtcOffset::UTC).replace_time(Time::MIDNIGHT)
}

/// One calendar year after `valid_from`, with the day clamped to the month's length.
///
/// Leap-safe: Feb 29 maps to Feb 28 of the next (common) year. Time of day and offset are kept.
///
/// # Panics
///
/// If `valid_from` is in year 9999, the last year `time` (and X.509's GeneralizedTime) can
/// represent. [`super::TransferCert::generate`] checks for that and returns an error instead.
pub fn valid_to(valid_from: OffsetDateTime) -> OffsetDateTime {
    let year = valid_from.year() + 1;
    let month = valid_from.month();
    let day = valid_from.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day)
        .expect("a clamped day is valid in every year up to 9999");
    valid_from.replace_date(date)
}

/// The 2012 computation, kept to reproduce the outage: the same date with the year plus one.
///
/// Fails exactly when `valid_from` is Feb 29, because Feb 29 does not exist in the next year.
pub fn buggy_valid_to(valid_from: OffsetDateTime) -> Result<OffsetDateTime, TransferCertError> {
    let year = valid_from.year() + 1;
    valid_from
        .replace_year(year)
        .map_err(|source| TransferCertError::InvalidValidTo {
            date: format!(
                "{year:04}-{:02}-{:02}",
                u8::from(valid_from.month()),
                valid_from.day()
            ),
            source,
        })
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn leap_day_clamps_to_feb_28() {
        assert_eq!(
            valid_to(datetime!(2012-02-29 0:00 UTC)),
            datetime!(2013-02-28 0:00 UTC)
        );
    }

    #[test]
    fn leap_day_bug_reproduces_2012_message() {
        let err = buggy_valid_to(datetime!(2012-02-29 0:00 UTC)).unwrap_err();
        assert_eq!(err.to_string(), "invalid valid-to date 2013-02-29");
    }

    #[test]
    fn midnight_is_taken_in_utc() {
        // 4 PM PST on Feb 28 2012 was already leap day in UTC.
        assert_eq!(
            midnight_utc(datetime!(2012-02-28 16:00 -8)),
            datetime!(2012-02-29 0:00 UTC)
        );
        assert_eq!(
            midnight_utc(datetime!(2012-02-28 15:59:59.999 -8)),
            datetime!(2012-02-28 0:00 UTC)
        );
    }
}
