//! `fabricctl scenario list | run NAME [--simulate]`: real incidents
//! replayed, first as they happened, then with Fabric's improvements.
//!
//! `--simulate` runs a scenario in virtual time against the real
//! controller core ([`fabric_controller::scenarios`]), hours of cluster time
//! in well under a second. Without it, `leap-day-2012` runs on real
//! processes: it starts its own local cluster (`fabricctl up` in a temporary
//! state directory, because the guest agents' clock and the 2012 bug are
//! host-agent start flags) with time scaled down (the 25-minute guest
//! timeout becomes 3 seconds, so "75 minutes" is about 9 seconds), prints
//! the events as they happen and a summary, and stops it. The other two
//! scenarios run only with `--simulate` so far.

use crate::cli::{GlobalArgs, ScenarioCommand};
use crate::events::short_line;
use crate::target::Target;
use anyhow::{Context as _, bail};
use fabric_controller::scenarios;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{GetStatusRequest, ListEventsRequest};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// The guest connect timeout of the real-process replay: 25 minutes scaled down.
const SCALED_GUEST_TIMEOUT: &str = "3s";
const SCALE: u32 = 500;

pub async fn run(global: &GlobalArgs, command: &ScenarioCommand) -> anyhow::Result<()> {
    match command {
        ScenarioCommand::List => {
            for (name, what) in scenarios::SCENARIOS {
                crate::output::line(&format!("{name:<22} {what}"));
            }
            Ok(())
        }
        ScenarioCommand::Run(args) => {
            if !scenarios::SCENARIOS.iter().any(|(n, _)| *n == args.name) {
                bail!(
                    "no scenario {:?}; `fabricctl scenario list` shows them",
                    args.name
                );
            }
            if args.simulate {
                print_report(&scenarios::run(&args.name).expect("listed scenario"));
                Ok(())
            } else if args.name == "leap-day-2012" {
                leap_day_real(global).await
            } else {
                bail!(
                    "scenario {} runs only in virtual time so far: add --simulate",
                    args.name
                )
            }
        }
    }
}

fn print_report(r: &scenarios::Report) {
    for p in &r.phases {
        crate::output::line(&format!("\n== {}: {}", r.name, p.title));
        for l in &p.timeline {
            crate::output::line(&format!("  {}  {}", scenarios::clock(l.at), l.text));
        }
    }
    crate::output::line("\nsummary");
    for s in &r.summary {
        crate::output::line(&format!("  {s}"));
    }
}

/// A `fabricctl up` child, stopped (SIGTERM, then SIGKILL) on drop.
struct ChildCluster {
    child: Child,
    state_dir: PathBuf,
}

impl Drop for ChildCluster {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = std::fs::remove_dir_all(&self.state_dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

fn start_cluster(state_dir: &Path, fixed: bool) -> anyhow::Result<ChildCluster> {
    let exe = std::env::current_exe().context("cannot find the fabricctl executable")?;
    let definition = example_definition()?;
    let mut args: Vec<String> = [
        "--state-dir",
        &state_dir.display().to_string(),
        "up",
        "--hosts",
        "4",
        "--cluster",
        "leapday",
        "--heartbeat-interval",
        "250ms",
        "--node-timeout",
        "1s",
        "--unresponsive-grace",
        "2s",
        "--restart-delay",
        "1s",
        "--leap-day-bug",
        "--guest-now",
        "2012-02-29T00:00:00Z",
        "--guest-timeout",
        SCALED_GUEST_TIMEOUT,
        "--guest-heartbeat-interval",
        "300ms",
        "--guest-heartbeat-timeout",
        "2s",
        "--hi-threshold",
        "2",
        "--classification-hold",
        "5s",
        "--deploy",
        &definition.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if fixed {
        args.extend(["--fault-classification".into(), "on".into()]);
    } else {
        args.extend([
            "--silent-guest-failures".into(),
            "--fault-classification".into(),
            "off".into(),
        ]);
    }
    std::fs::create_dir_all(state_dir)?;
    let log = std::fs::File::create(state_dir.join("launcher.log"))?;
    let child = Command::new(exe)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start fabricctl up")?;
    Ok(ChildCluster {
        child,
        state_dir: state_dir.to_owned(),
    })
}

/// examples/web/service.toml, next to the executable's workspace or the
/// current directory.
fn example_definition() -> anyhow::Result<PathBuf> {
    let relative = Path::new(crate::up::EXAMPLE_DEFINITION);
    let mut candidates = vec![relative.to_owned()];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            candidates.push(dir.join(relative));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "cannot find {} (run from the repository)",
            relative.display()
        )
    })
}

async fn target_of(
    global: &GlobalArgs,
    state_dir: &Path,
    deadline: Instant,
) -> anyhow::Result<Target> {
    let g = GlobalArgs {
        state_dir: state_dir.to_owned(),
        endpoint: None,
        ca: None,
        cert: None,
        key: None,
        server_name: global.server_name.clone(),
    };
    loop {
        if let Ok(t) = Target::controller(&g)
            && crate::status::fetch(&t).await.is_ok()
        {
            return Ok(t);
        }
        if Instant::now() > deadline {
            bail!(
                "the scenario's cluster did not come up; see {}",
                state_dir.join("launcher.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one real run showed.
struct RealOutcome {
    tripped: Option<Duration>,
    servers_hi: u32,
    software_fault: Option<(Duration, String)>,
}

async fn real_phase(
    global: &GlobalArgs,
    fixed: bool,
    limit: Duration,
) -> anyhow::Result<RealOutcome> {
    let state_dir = std::env::temp_dir().join(format!(
        "fabric-scenario-{}-{}",
        std::process::id(),
        if fixed { "fixed" } else { "2012" }
    ));
    let _ = std::fs::remove_dir_all(&state_dir);
    let _cluster = start_cluster(&state_dir, fixed)?;
    let target = target_of(global, &state_dir, Instant::now() + Duration::from_secs(30)).await?;
    let mut client = OperatorServiceClient::new(target.connect().await?);
    let started = Instant::now();
    let mut after = 0;
    let mut outcome = RealOutcome {
        tripped: None,
        servers_hi: 0,
        software_fault: None,
    };
    let mut quiet_until: Option<Instant> = None;
    // Each (kind, node) once: the strikes repeat themselves.
    let mut shown = std::collections::BTreeSet::new();
    let mut deployed_at: Option<std::time::SystemTime> = None;
    let since_deploy = |e: &fabric_proto::v1::ClusterEvent,
                        deployed: Option<std::time::SystemTime>| {
        let at = e.time.and_then(|t| std::time::SystemTime::try_from(t).ok());
        match (at, deployed) {
            (Some(at), Some(d)) => at.duration_since(d).unwrap_or_default(),
            _ => Duration::ZERO,
        }
    };
    while started.elapsed() < limit {
        let events = client
            .list_events(ListEventsRequest {
                after_sequence: after,
                limit: 0,
            })
            .await
            .map_err(|s| target.rpc_error("ListEvents", &s))?
            .into_inner()
            .events;
        for e in &events {
            after = after.max(e.sequence);
            if e.kind == "deployment.created" {
                deployed_at = e.time.and_then(|t| std::time::SystemTime::try_from(t).ok());
            }
            let at = since_deploy(e, deployed_at);
            if deployed_at.is_some()
                && shown.insert((e.kind.clone(), e.node_id.clone()))
                && matches!(
                    e.kind.as_str(),
                    "node.fault_reported"
                        | "node.fault_held"
                        | "node.human_investigate"
                        | "cluster.human_investigate"
                        | "cluster.software_fault"
                        | "instance.healing"
                        | "instance.reinitialized"
                )
            {
                crate::output::line(&format!("  +{:>5.1}s  {}", at.as_secs_f64(), short_line(e)));
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
        outcome.servers_hi = client
            .get_status(GetStatusRequest {})
            .await
            .map_err(|s| target.rpc_error("GetStatus", &s))?
            .into_inner()
            .hi_count;
        if outcome.tripped.is_some() || quiet_until.is_some_and(|t| Instant::now() > t) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(outcome)
}

async fn leap_day_real(global: &GlobalArgs) -> anyhow::Result<()> {
    crate::output::line(&format!(
        "leap-day-2012 on real processes: 4 servers, the example service, guest agents on 2012-02-29 with the bug;\n\
         time scaled 1:{SCALE}: the 25-minute guest timeout is {SCALED_GUEST_TIMEOUT}, so 75 minutes is about 9s"
    ));
    crate::output::line("\n== as in 2012: silent guest agents, fault classification off");
    let then = real_phase(global, false, Duration::from_secs(90)).await?;
    crate::output::line(
        "\n== with Fabric's improvements: guest agents report why (fail fast), fault classification on",
    );
    let now = real_phase(global, true, Duration::from_secs(60)).await?;
    crate::output::line("\nsummary");
    crate::output::line(
        "  postmortem: bug at 00:00 UTC; HI threshold hit 75 minutes later (3 x 25-minute timeout)",
    );
    match then.tripped {
        Some(t) => crate::output::line(&format!(
            "  replayed:   threshold tripped {:.1}s after the deployment (x{SCALE} = {:.0} minutes), {} servers in HI",
            t.as_secs_f64(),
            t.as_secs_f64() * f64::from(SCALE) / 60.0,
            then.servers_hi
        )),
        None => crate::output::line("  replayed:   the threshold did not trip"),
    }
    match &now.software_fault {
        Some((t, cause)) => crate::output::line(&format!(
            "  improved:   {} servers in HI; common cause named {:.1}s after the deploy: {cause}",
            now.servers_hi,
            t.as_secs_f64()
        )),
        None => crate::output::line(&format!(
            "  improved:   {} servers in HI; no software fault classified",
            now.servers_hi
        )),
    }
    if then.tripped.is_none() || now.software_fault.is_none() || now.servers_hi > 0 {
        bail!("the replay did not show what it should (see above)");
    }
    Ok(())
}
