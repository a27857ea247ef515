//! `fabricctl scenario list | run NAME [--simulate]`: real incidents
//! replayed, first as they happened, then with Fabric's improvements.
//!
//! `--simulate` runs a scenario in virtual time against the real
//! controller core ([`fabric_sim::scenarios`]), hours of cluster time
//! in well under a second. Without it, a scenario runs on real processes: it
//! starts a local cluster of its own for each phase ([`local`]), with time
//! scaled down, prints what happens as it happens and a summary, and stops
//! the cluster. Its own cluster because the replays are destructive (servers
//! lose power, guest agents run on 2012-02-29 with the bug) and need start
//! flags (guest clock, boot time, certificate windows) that a running
//! cluster was not given.
//!
//! - [`leap_day`]: 2012, guest agents failing on Feb 29 and the HI threshold.
//! - [`serial_recovery`]: 2009, servers lost at once, healing serial or parallel.
//! - [`cert_expiry`]: 2013, a deployed certificate expiring, unrotated or rotated.
//! - [`secondary_outage`]: 2012's repair, an incompatible host agent and
//!   networking plugin, blasted or walked through a gate.

mod cert_expiry;
mod leap_day;
mod local;
mod secondary_outage;
mod serial_recovery;
mod service_files;

use crate::cli::{GlobalArgs, ScenarioCommand};
use anyhow::bail;
use fabric_sim::scenarios;

pub async fn run(global: &GlobalArgs, command: &ScenarioCommand) -> anyhow::Result<()> {
    match command {
        ScenarioCommand::List => {
            for (name, what) in scenarios::SCENARIOS {
                crate::output::line(&format!("{name:<22} {what}"));
            }
            Ok(())
        }
        ScenarioCommand::Run(args) => {
            if args.simulate {
                match scenarios::run(&args.name) {
                    Some(report) => print_report(&report),
                    None => unknown(&args.name)?,
                }
                return Ok(());
            }
            match args.name.as_str() {
                "leap-day-2012" => leap_day::run(global).await,
                "serial-recovery-2009" => serial_recovery::run(global).await,
                "cert-expiry-2013" => cert_expiry::run(global).await,
                "secondary-outage-2012" => secondary_outage::run(global).await,
                other => unknown(other),
            }
        }
    }
}

fn unknown(name: &str) -> anyhow::Result<()> {
    bail!("no scenario {name:?}; `fabricctl scenario list` shows them")
}

fn print_report(r: &scenarios::Report) {
    for line in scenarios::render(r) {
        crate::output::line(&line);
    }
}
