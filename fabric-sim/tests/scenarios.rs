//! Each simulated scenario runs to completion and shows what it claims.

use fabric_sim::scenarios::{self, Report};
use std::time::Duration;

/// Prints the report as `fabricctl scenario run --simulate` does, and
/// checks that no printed line is wider than the limit.
fn print(r: &Report) {
    for line in scenarios::render(r) {
        assert!(
            line.chars().count() <= scenarios::WIDTH,
            "{} columns: {line}",
            line.chars().count()
        );
        eprintln!("{line}");
    }
}

#[test]
fn leap_day_to_the_end_as_in_2012_and_with_fabric() {
    let r = scenarios::run("leap-day-2012").expect("known scenario");
    print(&r);
    let (then, now) = (&r.phases[0], &r.phases[1]);
    let said = |p: &scenarios::Phase, kind: &str, words: &str| {
        p.timeline
            .iter()
            .any(|l| l.text.starts_with(kind) && l.text.contains(words))
    };
    // 2012: the walk's last domain restarts into the bug; its servers
    // strike out 3 x 25 minutes later and the HI threshold trips at 5:15PM,
    // which stops the rollout; the fix at 2:11AM brings every instance back.
    let tripped = then
        .outcome
        .threshold_tripped
        .expect("the 2012 replay trips the threshold");
    let expected = Duration::from_secs(75 * 60);
    assert!(
        tripped >= expected && tripped <= expected + Duration::from_secs(60),
        "tripped at {tripped:?}"
    );
    assert!(then.outcome.servers_hi >= 5, "{:#?}", then.outcome);
    assert!(
        said(then, "update.stopped a", "HI mode"),
        "{:#?}",
        then.timeline
    );
    // Service management off in both clusters at 6:55PM, each answering for
    // itself, and back cluster by cluster once each runs the fix.
    for c in ["a", "b"] {
        assert!(said(
            then,
            &format!("cluster.switch {c}"),
            "management switched off"
        ));
        assert!(said(
            then,
            &format!("cluster.switch {c}"),
            "management switched on"
        ));
    }
    // The quiet cluster: healing carries the bug on, more slowly.
    assert!(
        said(then, "instance.healing b/", ""),
        "{:#?}",
        then.timeline
    );
    assert!(
        said(then, "cluster.human_investigate b", ""),
        "{:#?}",
        then.timeline
    );
    let back = then
        .outcome
        .all_running_after
        .expect("the fix brings all back");
    assert!(back > Duration::from_secs(611 * 60), "back at {back:?}");
    // Fabric: the cause named at once, no server to HI, the canary gate
    // stops the walk, fewer customers hurt, management never off.
    assert_eq!(now.outcome.servers_hi, 0, "{:#?}", now.timeline);
    let (at, cause) = now.outcome.software_fault.as_ref().expect("cause named");
    assert!(*at < Duration::from_secs(5 * 60), "named after {at:?}");
    assert!(cause.contains("transfer certificate"), "{cause}");
    assert!(said(now, "update.stopped", "health gate failed"));
    assert!(!said(now, "cluster.switch", "management switched off"));
    let lost = |p: &scenarios::Phase| {
        p.serving
            .iter()
            .map(|(_, n)| p.instances - n)
            .max()
            .unwrap_or(0)
    };
    assert!(lost(now) < lost(then), "{} vs {}", lost(now), lost(then));
    // Read beside the postmortem: its times in PST, its words quoted, what
    // the replay made up said so.
    let text = scenarios::render(&r).join("\n");
    for milestone in [
        "Feb 28 4:00:00PM",
        "5:15PM PST",
        "6:38PM",
        "6:55PM",
        "2:11AM PST",
    ] {
        assert!(text.contains(milestone), "{milestone} missing");
    }
    assert!(!r.invented.is_empty());
}

#[test]
fn parallel_healing_is_faster_and_the_threshold_holds_it_until_an_operator_says() {
    let r = scenarios::run("serial-recovery-2009").expect("known scenario");
    print(&r);
    let (serial, defaults, judged) = (
        &r.phases[0].outcome,
        &r.phases[1].outcome,
        &r.phases[2].outcome,
    );
    let s = serial
        .all_running_after
        .expect("serial healing finishes within the hour");
    let p = judged.all_running_after.expect("parallel healing finishes");
    assert!(
        p * 2 < s,
        "parallel {p:?} is not much faster than serial {s:?}"
    );
    // Fabric's default threshold takes four failed servers of twelve for a
    // cascade: nothing heals until the operator's resume at 10 minutes.
    assert!(defaults.threshold_tripped.is_some(), "{defaults:#?}");
    let d = defaults.all_running_after.expect("healed after the resume");
    assert!(
        d >= Duration::from_secs(600),
        "healed at {d:?}, before the resume"
    );
    assert_eq!(serial.threshold_tripped, None);
    assert_eq!(judged.threshold_tripped, None);
    for o in [serial, defaults, judged] {
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
fn certificate_expiry_as_in_2013_renewed_in_the_store_and_with_fabric_watching_what_is_served() {
    let r = scenarios::run("cert-expiry-2013").expect("known scenario");
    print(&r);
    let (then, now) = (&r.phases[0], &r.phases[1]);
    let kinds = |p: &scenarios::Phase| -> Vec<(u64, String)> {
        let mut k: Vec<(u64, String)> = p
            .outcome
            .certificate_events
            .iter()
            .map(|(t, k)| (t.as_secs() / 86_400, k.clone()))
            .collect();
        k.dedup();
        k
    };
    let said =
        |p: &scenarios::Phase, words: &str| p.timeline.iter().any(|l| l.text.contains(words));
    // 2013: the store was renewed and its notices stopped; nothing watched
    // what was served; three certificates expired together and clients
    // were refused until the late release.
    assert!(
        said(then, "Secret Store weekly scan"),
        "{:#?}",
        then.timeline
    );
    let last_notice = then
        .timeline
        .iter()
        .filter(|l| l.text.starts_with("Secret Store weekly scan"))
        .map(|l| l.at)
        .max()
        .unwrap();
    assert!(
        last_notice < Duration::from_secs(154 * 86_400),
        "notice after the renewal"
    );
    assert_eq!(kinds(then), [(200, "certificate.expired".to_owned())]);
    assert_eq!(
        then.outcome
            .certificate_events
            .iter()
            .filter(|(_, k)| k == "certificate.expired")
            .count(),
        3,
        "three certificates expired"
    );
    assert!(then.outcome.expired_served_for >= Duration::from_secs(12 * 3600));
    // Fabric: warned at 180 days and an incident at 90 whatever the store
    // said; the release went out while the incident was open; nothing
    // expired and no client was refused.
    let k = kinds(now);
    assert!(k.contains(&(20, "certificate.warning".to_owned())), "{k:?}");
    // At deploy, the three certificates expiring together are named.
    assert!(k.contains(&(0, "certificate.together".to_owned())), "{k:?}");
    assert!(
        k.contains(&(110, "certificate.incident".to_owned())),
        "{k:?}"
    );
    assert!(!k.iter().any(|(_, k)| k == "certificate.expired"), "{k:?}");
    assert!(
        said(now, "open certificate incident flags it"),
        "{:#?}",
        now.timeline
    );
    assert_eq!(now.outcome.expired_served_for, Duration::ZERO);
    assert!(scenarios::run("no-such-incident").is_none());
}
