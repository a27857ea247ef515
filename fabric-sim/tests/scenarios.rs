//! Each simulated scenario runs to completion and shows what it claims.

use fabric_sim::scenarios::{self, Report};
use std::time::Duration;

fn print(r: &Report) {
    for p in &r.phases {
        eprintln!("== {} / {}", r.name, p.title);
        for l in &p.timeline {
            eprintln!("  {}  {}", scenarios::clock(l.at), l.text);
        }
    }
    for s in &r.summary {
        eprintln!("  {s}");
    }
}

#[test]
fn leap_day_trips_the_threshold_at_75_minutes_and_not_with_the_fixes() {
    let r = scenarios::run("leap-day-2012").expect("known scenario");
    print(&r);
    let (then, quiet, now) = (
        &r.phases[0].outcome,
        &r.phases[1].outcome,
        &r.phases[2].outcome,
    );
    assert!(
        quiet.healed >= 3,
        "healing moved {} instances",
        quiet.healed
    );
    assert!(
        quiet.servers_hi > 3,
        "the bug did not spread: {} servers in HI",
        quiet.servers_hi
    );
    let tripped = then
        .threshold_tripped
        .expect("the 2012 replay trips the threshold");
    let expected = Duration::from_secs(75 * 60);
    assert!(
        tripped >= expected && tripped <= expected + Duration::from_secs(60),
        "tripped at {tripped:?}"
    );
    assert!(then.servers_hi >= 5);
    assert_eq!(now.servers_hi, 0, "with the fixes no server goes to HI");
    assert_eq!(now.threshold_tripped, None);
    let (at, cause) = now
        .software_fault
        .as_ref()
        .expect("the common cause is named");
    assert!(*at < Duration::from_secs(5 * 60), "named after {at:?}");
    assert!(cause.contains("2013-02-29"), "{cause}");
}

#[test]
fn parallel_healing_is_faster_and_keeps_two_instance_services_up() {
    let r = scenarios::run("serial-recovery-2009").expect("known scenario");
    print(&r);
    let (serial, parallel) = (&r.phases[0].outcome, &r.phases[1].outcome);
    let s = serial
        .all_running_after
        .expect("serial healing finishes within the hour");
    let p = parallel
        .all_running_after
        .expect("parallel healing finishes");
    assert!(
        p * 2 < s,
        "parallel {p:?} is not much faster than serial {s:?}"
    );
    for o in [serial, parallel] {
        let outage = |d: &str| o.longest_outage.iter().find(|(n, _)| n == d).unwrap().1;
        assert!(
            outage("single") > Duration::ZERO,
            "the single instance went down"
        );
        assert_eq!(
            outage("pair"),
            Duration::ZERO,
            "two fault domains kept it up"
        );
    }
}

#[test]
fn certificate_expiry_is_warned_at_180_days_and_rotation_prevents_the_outage() {
    let r = scenarios::run("cert-expiry-2013").expect("known scenario");
    print(&r);
    let (ignored, rotated) = (&r.phases[0].outcome, &r.phases[1].outcome);
    fn kinds(o: &scenarios::Outcome) -> Vec<&str> {
        o.certificate_events
            .iter()
            .map(|(_, k)| k.as_str())
            .collect()
    }
    assert_eq!(
        kinds(ignored),
        [
            "certificate.warning",
            "certificate.incident",
            "certificate.expired"
        ]
    );
    let day = |o: &scenarios::Outcome, i: usize| o.certificate_events[i].0.as_secs() / 86_400;
    // Expiry at day 200: warning at day 20 (180 left), incident at day 110 (90 left).
    assert_eq!(
        (day(ignored, 0), day(ignored, 1), day(ignored, 2)),
        (20, 110, 200)
    );
    assert!(ignored.expired_served_for >= Duration::from_secs(19 * 86_400));
    // The new certificate is watched too (its own warning comes a year on);
    // the old one never reached its incident.
    assert!(
        kinds(rotated).iter().all(|k| *k == "certificate.warning"),
        "{:?}",
        kinds(rotated)
    );
    assert_eq!(day(rotated, 0), 20);
    assert_eq!(rotated.expired_served_for, Duration::ZERO);
    assert!(scenarios::run("no-such-incident").is_none());
}

#[test]
fn leap_day_mid_rollout_stopped_by_hi_mode_then_by_the_gate() {
    let r = scenarios::run("leap-day-2012").expect("known scenario");
    print(&r);
    let (then, now) = (&r.phases[3], &r.phases[4]);
    let said = |p: &scenarios::Phase, kind: &str, words: &str| {
        p.timeline
            .iter()
            .any(|l| l.text.starts_with(kind) && l.text.contains(words))
    };
    // 2012: the walk's first domain hits the bug, healing spreads it, and
    // the HI threshold is what stops the rollout.
    assert!(
        then.outcome.threshold_tripped.is_some(),
        "{:#?}",
        then.timeline
    );
    assert!(then.outcome.servers_hi >= 5, "{:#?}", then.outcome);
    assert!(
        said(then, "update.stopped", "HI mode"),
        "{:#?}",
        then.timeline
    );
    // Fabric: the cause is named at once, no server leaves service, and the
    // gate stops the walk after its first domain.
    assert_eq!(now.outcome.servers_hi, 0, "{:#?}", now.timeline);
    assert!(now.outcome.software_fault.is_some(), "{:#?}", now.timeline);
    assert!(
        said(now, "update.stopped", "health gate failed"),
        "{:#?}",
        now.timeline
    );
    assert!(
        r.summary
            .iter()
            .any(|s| s.contains("its gate stopped it") && s.contains("after 4 server(s)")),
        "{:#?}",
        r.summary
    );
}
