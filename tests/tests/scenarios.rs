//! `fabricctl scenario`: the incidents in virtual time, then each on
//! real processes. A real run exits non-zero unless it showed what the
//! incident teaches (see each scenario's module in fabricctl/src/scenario/);
//! the summary must say so too.
//!
//! The real runs take turns (one lock): each starts clusters of its own and
//! measures outages and timeouts, which a neighbour's load would distort.

use fabric_tests::bins;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn fabricctl(args: &[&str]) -> Output {
    Command::new(bins::fabricctl())
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .stdin(Stdio::null())
        .output()
        .expect("run fabricctl")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `scenario run NAME` on real processes; it must succeed.
fn run_real(name: &str) -> String {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = fabricctl(&["scenario", "run", name]);
    let t = text(&out);
    eprintln!("{t}");
    assert!(out.status.success(), "{t}");
    assert!(t.contains("\nsummary\n"), "{t}");
    t
}

#[test]
fn every_scenario_runs_simulated() {
    let list = text(&fabricctl(&["scenario", "list"]));
    for name in ["leap-day-2012", "serial-recovery-2009", "cert-expiry-2013"] {
        assert!(list.contains(name), "{list}");
        let out = fabricctl(&["scenario", "run", name, "--simulate"]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(text(&out).contains("\nsummary\n"), "{}", text(&out));
    }
    for args in [
        &["scenario", "run", "no-such-incident"][..],
        &["scenario", "run", "no-such-incident", "--simulate"],
    ] {
        let out = fabricctl(args);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("no scenario \"no-such-incident\"; `fabricctl scenario list`"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn leap_day_2012_on_real_processes() {
    let t = run_real("leap-day-2012");
    assert!(t.contains("replayed: threshold tripped"), "{t}");
    assert!(
        t.contains("improved: 0 servers in HI; common cause named"),
        "{t}"
    );
    assert!(t.contains("2013-02-29"), "{t}");
    // Each event beside the incident time it stands for, in lines a
    // terminal shows whole.
    assert!(t.contains(" 4:00:00PM PST "), "{t}");
    for line in t.lines() {
        assert!(line.chars().count() <= 100, "too wide: {line}");
    }
}

#[test]
fn serial_recovery_2009_on_real_processes() {
    let t = run_real("serial-recovery-2009");
    assert!(t.contains("healing concurrency 1: all back after"), "{t}");
    assert!(t.contains("healing concurrency 16: all back after"), "{t}");
    // Management answers while recovery runs (2009: "backed up").
    assert!(t.contains("during the recovery: answered in"), "{t}");
    assert!(t.contains("The HI threshold is raised to 50%"), "{t}");
    assert!(
        t.contains("parallel healing brought everything back"),
        "{t}"
    );
    assert!(
        t.contains("pair (two, in different fault domains) never did"),
        "{t}"
    );
}

#[test]
fn cert_expiry_2013_on_real_processes() {
    let t = run_real("cert-expiry-2013");
    // What clients of the unrotated service saw: a refused handshake.
    assert!(t.contains("certificate expired"), "{t}");
    assert!(t.contains("incident never, expired never; 0 of"), "{t}");
    // As in 2013: renewed in the store, nothing watched what was served.
    assert!(t.contains("January 7th"), "{t}");
    assert!(
        t.contains("renewed in the store only: warning never, incident never, expired day"),
        "{t}"
    );
    assert!(t.contains("got the rotated certificate"), "{t}");
}

#[test]
fn secondary_outage_2012_on_real_processes() {
    let t = run_real("secondary-outage-2012");
    // The blast took every server's endpoints down; the walk only the first
    // domain's, and rolled back by itself.
    assert!(t.contains("endpoints not answering clients: 4 of 4"), "{t}");
    assert!(
        t.contains("blast, as in 2012:   4 server(s) changed"),
        "{t}"
    );
    assert!(
        t.contains("Fabric, forced:      1 server(s) changed"),
        "{t}"
    );
    assert!(t.contains("package add: add the package refused"), "{t}");
    assert!(
        t.contains("update start refused: package repair-ha1-net2"),
        "{t}"
    );
    assert!(
        t.contains("the gate held the damage to 1 of 4 servers"),
        "{t}"
    );
}
