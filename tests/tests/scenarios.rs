//! `fabricctl scenario`: the three incidents in virtual time, and the 2012
//! one on real processes. The real run exits non-zero unless the threshold
//! tripped as in 2012 and, with the improvements, no server went to HI and
//! the common cause was named; the summary must say so too.

use fabric_tests::bins;
use std::process::{Command, Output, Stdio};

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

#[test]
fn every_scenario_runs_simulated_and_leap_day_runs_on_real_processes() {
    let list = text(&fabricctl(&["scenario", "list"]));
    for name in ["leap-day-2012", "serial-recovery-2009", "cert-expiry-2013"] {
        assert!(list.contains(name), "{list}");
        let out = fabricctl(&["scenario", "run", name, "--simulate"]);
        assert!(out.status.success(), "{name}: {}", text(&out));
        assert!(text(&out).contains("\nsummary\n"), "{}", text(&out));
    }
    let out = fabricctl(&["scenario", "run", "no-such-incident"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("fabricctl scenario list"),
        "{}",
        text(&out)
    );

    let out = fabricctl(&["scenario", "run", "leap-day-2012"]);
    let t = text(&out);
    eprintln!("{t}");
    assert!(out.status.success(), "{t}");
    assert!(t.contains("replayed:   threshold tripped"), "{t}");
    assert!(
        t.contains("improved:   0 servers in HI; common cause named"),
        "{t}"
    );
    assert!(t.contains("2013-02-29"), "{t}");
}
