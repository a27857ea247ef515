//! The leap day property, checked on every day from 1900 to 2400 (both centuries that are and
//! are not leap years): the leap-safe valid-to always works and spans one calendar year; the 2012
//! computation fails on Feb 29 and only there, and agrees with the safe one everywhere else.

use guest_agent::transfer_cert::{buggy_valid_to, midnight_utc, valid_to};
use proptest::prelude::*;
use time::macros::{date, datetime};
use time::{Duration, Month, OffsetDateTime, Time, UtcOffset};

fn is_leap_day(d: OffsetDateTime) -> bool {
    d.month() == Month::February && d.day() == 29
}

/// "One year" as `valid_to` defines it: same month next year, same day clamped to the month's
/// length, same time of day; hence 365 or 366 days long.
fn assert_spans_one_year(from: OffsetDateTime, to: OffsetDateTime) {
    assert_eq!(to.year(), from.year() + 1, "{from} -> {to}");
    assert_eq!(to.month(), from.month(), "{from} -> {to}");
    let expected_day = from.day().min(from.month().length(from.year() + 1));
    assert_eq!(to.day(), expected_day, "{from} -> {to}");
    assert_eq!(to.time(), from.time(), "{from} -> {to}");
    assert_eq!(to.offset(), from.offset(), "{from} -> {to}");
    let days = (to - from).whole_days();
    assert!(days == 365 || days == 366, "{from} -> {to}: {days} days");
    // Clamping happens only on leap day, and only by the one missing day.
    assert_eq!(to.day() != from.day(), is_leap_day(from), "{from} -> {to}");
}

#[test]
fn every_day_from_1900_to_2400() {
    let mut day = date!(1900 - 01 - 01).midnight().assume_utc();
    let last = date!(2400 - 12 - 31).midnight().assume_utc();
    let (mut days, mut leap_days) = (0u32, 0u32);
    while day <= last {
        let safe = valid_to(day);
        assert_spans_one_year(day, safe);
        match buggy_valid_to(day) {
            Ok(buggy) => {
                assert!(!is_leap_day(day), "2012 computation succeeded on {day}");
                assert_eq!(buggy, safe, "on {day}");
            }
            Err(e) => {
                assert!(is_leap_day(day), "2012 computation failed on {day}: {e}");
                let expected = format!("invalid valid-to date {:04}-02-29", day.year() + 1);
                assert_eq!(e.to_string(), expected);
                leap_days += 1;
            }
        }
        days += 1;
        day += Duration::DAY;
    }
    // 501 years: 1900, 2100, 2200 and 2300 are not leap years, 2000 and 2400 are.
    assert_eq!(leap_days, 122);
    assert_eq!(days, 501 * 365 + 122);
}

fn any_time() -> impl Strategy<Value = OffsetDateTime> {
    // Years 1900..=9000 and any offset time allows (±25:59:59).
    let seconds = date!(1900 - 01 - 01)
        .midnight()
        .assume_utc()
        .unix_timestamp()..datetime!(9000-12-31 23:59:59 UTC).unix_timestamp();
    (seconds, 0u32..1_000_000_000, -93_599i32..=93_599).prop_map(|(s, ns, off)| {
        OffsetDateTime::from_unix_timestamp(s)
            .unwrap()
            .replace_nanosecond(ns)
            .unwrap()
            .to_offset(UtcOffset::from_whole_seconds(off).unwrap())
    })
}

proptest! {
    #[test]
    fn valid_from_is_the_start_of_the_utc_day(now in any_time()) {
        let from = midnight_utc(now);
        prop_assert_eq!(from.offset(), UtcOffset::UTC);
        prop_assert_eq!(from.time(), Time::MIDNIGHT);
        prop_assert!(from <= now);
        prop_assert!(now - from < Duration::DAY);
    }

    #[test]
    fn certificate_made_now_is_valid_now_and_for_a_year(now in any_time()) {
        let from = midnight_utc(now);
        let to = valid_to(from);
        assert_spans_one_year(from, to);
        prop_assert!(to > now + Duration::days(364));
        prop_assert_eq!(buggy_valid_to(from).is_err(), is_leap_day(from));
    }
}
