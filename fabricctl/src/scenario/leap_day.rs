//! `leap-day-2012` on real processes.
//!
//! Four servers run the example service; their guest agents start on
//! 2012-02-29T00:00:00Z with the 2012 bug (a transfer certificate valid to
//! "the same day next year", a date that does not exist). Time is scaled
//! 1:500: the 25-minute guest timeout becomes 3 seconds, so "75 minutes" is
//! about 9 seconds. Two phases, each on a cluster of its own:
//!
//! 1. as in 2012: guest agents fail silently, fault classification is off,
//!    so strikes put servers in Human Investigate, healing spreads the
//!    failing instances, and the cluster's HI threshold trips;
//! 2. with Fabric's improvements: guest agents report why they fail (fail
//!    fast) and the controller classifies the common cause as a software
//!    fault, so no server goes to HI.

use super::local::{POLL, ScenarioCluster, example_definition, since};
use crate::cli::GlobalArgs;
use crate::events::short_line;
use anyhow::bail;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// The guest connect timeout of the replay: 25 minutes scaled down.
const SCALED_GUEST_TIMEOUT: &str = "3s";
const SCALE: u32 = 500;

/// What one phase showed.
struct Outcome {
    tripped: Option<Duration>,
    servers_hi: u32,
    software_fault: Option<(Duration, String)>,
}

fn flags(fixed: bool) -> anyhow::Result<Vec<String>> {
    let mut args: Vec<String> = [
        "--leap-day-bug",
        "--guest-now",
        "2012-02-29T00:00:00Z",
        "--guest-timeout",
        SCALED_GUEST_TIMEOUT,
        "--hi-threshold",
        "2",
        "--classification-hold",
        "5s",
        "--fault-classification",
        if fixed { "on" } else { "off" },
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !fixed {
        args.push("--silent-guest-failures".into());
    }
    args.extend([
        "--deploy".into(),
        example_definition()?.display().to_string(),
    ]);
    Ok(args)
}

async fn phase(global: &GlobalArgs, fixed: bool, limit: Duration) -> anyhow::Result<Outcome> {
    let label = if fixed {
        "leapday-fixed"
    } else {
        "leapday-2012"
    };
    let mut cluster = ScenarioCluster::start(global, label, 4, &flags(fixed)?).await?;
    let started = Instant::now();
    let mut after = 0;
    let mut outcome = Outcome {
        tripped: None,
        servers_hi: 0,
        software_fault: None,
    };
    let mut quiet_until: Option<Instant> = None;
    // Each (kind, node) once: the strikes repeat themselves. The others
    // are counted, and the count printed.
    let mut shown = BTreeSet::new();
    let mut repeats = 0usize;
    let mut deployed_at: Option<SystemTime> = None;
    while started.elapsed() < limit {
        for e in cluster.events_after(&mut after).await? {
            if e.kind == "deployment.created" {
                deployed_at = super::local::event_time(&e);
            }
            let Some(deployed) = deployed_at else {
                continue;
            };
            let at = since(&e, deployed);
            if shown.insert((e.kind.clone(), e.node_id.clone())) {
                // Real seconds since the deployment, and the incident's
                // clock they stand for (x SCALE from 4:00PM PST).
                let incident = fabric_sim::scenarios::leap_day::pst(at * SCALE);
                let prefix = format!("  +{:>5.1}s = {incident:>14}  ", at.as_secs_f64());
                for line in fabric_sim::scenarios::wrap(&prefix, &short_line(&e)) {
                    crate::output::line(&line);
                }
            } else {
                repeats += 1;
            }
            match e.kind.as_str() {
                "cluster.human_investigate" => outcome.tripped = Some(at),
                "cluster.software_fault" if outcome.software_fault.is_none() => {
                    outcome.software_fault = Some((at, e.reason.clone()));
                    // Watch a while longer: no server may go to HI after it.
                    quiet_until = Some(Instant::now() + Duration::from_secs(8));
                }
                _ => {}
            }
        }
        outcome.servers_hi = cluster.status().await?.hi_count;
        if outcome.tripped.is_some() || quiet_until.is_some_and(|t| Instant::now() > t) {
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    crate::output::line(&format!(
        "  ({repeats} more events repeat a kind already shown for the same server: counted, not \
         printed)"
    ));
    Ok(outcome)
}

pub async fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    for line in fabric_sim::scenarios::wrap(
        "",
        &format!(
            "leap-day-2012 on real processes: 4 servers, the example service, guest agents on \
             2012-02-29 with the bug. Time scaled 1:{SCALE}: the 25-minute guest timeout is \
             {SCALED_GUEST_TIMEOUT}, so 75 minutes is about 9s. Each line: real seconds since the \
             deployment, the PST time they stand for (the deployment at 4:00PM PST), the event."
        ),
    ) {
        crate::output::line(&line);
    }
    crate::output::line("\n== as in 2012: silent guest agents, fault classification off");
    let then = phase(global, false, Duration::from_secs(90)).await?;
    crate::output::line(
        "\n== with Fabric's improvements: guest agents report why (fail fast), fault classification on",
    );
    let now = phase(global, true, Duration::from_secs(60)).await?;
    crate::output::line("\nsummary");
    say("postmortem: bug at 4:00PM PST (00:00 UTC); HI threshold hit 75 minutes later, 5:15PM PST");
    match then.tripped {
        Some(t) => say(&format!(
            "replayed:   threshold tripped {:.1}s after the deployment (x{SCALE} = {:.0} minutes), {} servers in HI",
            t.as_secs_f64(),
            t.as_secs_f64() * f64::from(SCALE) / 60.0,
            then.servers_hi
        )),
        None => crate::output::line("  replayed:   the threshold did not trip"),
    }
    match &now.software_fault {
        Some((t, cause)) => say(&format!(
            "improved:   {} servers in HI; common cause named {:.1}s after the deploy: {cause}",
            now.servers_hi,
            t.as_secs_f64()
        )),
        None => say(&format!(
            "improved:   {} servers in HI; no software fault classified",
            now.servers_hi
        )),
    }
    if then.tripped.is_none() || now.software_fault.is_none() || now.servers_hi > 0 {
        bail!("the replay did not show what it should (see above)");
    }
    Ok(())
}

/// A summary line, wrapped to the report width.
fn say(text: &str) {
    for line in fabric_sim::scenarios::wrap("  ", text) {
        crate::output::line(&line);
    }
}
