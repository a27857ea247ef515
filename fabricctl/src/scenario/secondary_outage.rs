//! `secondary-outage-2012` on real processes.
//!
//! The postmortem's "Secondary Outage": seven clusters were in the middle of
//! a rollout (new host agent, new networking plugin) when the leap-day bug
//! struck. To repair them quickly, the team "blasted" a package to every
//! server at once: the older host agent, but with the newer networking
//! plugin. "The two were incompatible", every VM on those servers lost its
//! network, and the single-server test had "not included testing network
//! connectivity to the VMs".
//!
//! One cluster of 4 servers, one per update domain, runs `web` (4
//! instances). A rollout of host agent 2.0 with plugin net-2 (both speaking
//! bindings interface 2) has reached 2 servers and is abandoned there: mixed
//! versions. Then the repair package (host agent 1.0, interface 1, with
//! plugin net-2, interface 2) goes out twice:
//!
//! 1. as in 2012: forced, as a blast to every server at once;
//! 2. as in Fabric: refused (twice, naming both versions), then forced
//!    anyway but walked domain by domain, its gate probing endpoints from
//!    outside, rolling back by itself.
//!
//! Throughout, every endpoint is probed over HTTPS as a client would (the
//! owner's CA), and the instance-seconds no answer came are counted.
//!
//! Parts: fabric-core/src/software.rs (the compatibility check),
//! fabric-core/src/rollout/ (the walk and its gate), netplug/ (the plugin).

use super::local::{POLL, ScenarioCluster, since};
use super::service_files::ServiceOwner;
use crate::cli::GlobalArgs;
use crate::events::short_line;
use crate::https::Trust;
use crate::package::FromBuild;
use anyhow::bail;
use fabric_proto::v1::{self as pb, update_action_request::Action};
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;
use tokio::time::Instant;

const HOSTS: u32 = 4;
const INSTANCES: u32 = 4;
/// The gate: held 2 s, given 20 s (scaled down from 30 s and 10 minutes).
const GATE_STABLE: Duration = Duration::from_secs(2);
const GATE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one repair, from start until every endpoint answers again.
const LIMIT: Duration = Duration::from_secs(180);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The rollout the clusters were in the middle of, and the 2012 repair.
const NEW: FromBuild<'static> = crate::package::NEW_PAIR;
const REPAIR: FromBuild<'static> = crate::package::REPAIR_2012;

/// What one repair did to clients.
struct Downtime {
    /// Sum over instances of the time their endpoint did not answer.
    instance_seconds: f64,
    servers_touched: usize,
    /// From the repair's start until every endpoint answered again.
    all_back: Option<Duration>,
}

fn plan(package: &str, blast: bool) -> pb::StartUpdateRequest {
    pb::StartUpdateRequest {
        package: package.into(),
        on_failure: "rollback".into(),
        blast,
        force: true,
        gate_stable: prost_types::Duration::try_from(GATE_STABLE).ok(),
        gate_timeout: prost_types::Duration::try_from(GATE_TIMEOUT).ok(),
        ..Default::default()
    }
}

async fn update(cluster: &mut ScenarioCluster) -> anyhow::Result<pb::UpdateStatus> {
    Ok(cluster
        .client
        .get_update(pb::GetUpdateRequest {})
        .await
        .map_err(|s| cluster.target.rpc_error("GetUpdate", &s))?
        .into_inner())
}

async fn act(cluster: &mut ScenarioCluster, action: Action) -> anyhow::Result<()> {
    cluster
        .client
        .update_action(pb::UpdateActionRequest {
            action: action as i32,
        })
        .await
        .map_err(|s| cluster.target.rpc_error("UpdateAction", &s))?;
    Ok(())
}

/// Which instances' endpoints answer now.
async fn unreachable(status: &pb::ClusterStatus, trust: &Trust) -> Vec<String> {
    let mut probes = tokio::task::JoinSet::new();
    for i in status.deployments.iter().flat_map(|d| &d.instances) {
        let (id, endpoint, trust) = (i.instance_id.clone(), i.endpoint.clone(), trust.clone());
        probes.spawn(async move {
            let ok = !endpoint.is_empty()
                && matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, crate::https::fetch(&endpoint, &trust))
                        .await,
                    Ok(Ok(_))
                );
            (id, ok)
        });
    }
    let mut down = Vec::new();
    while let Some(Ok((id, ok))) = probes.join_next().await {
        if !ok {
            down.push(id);
        }
    }
    down.sort();
    down
}

/// Starts `request`, then probes every endpoint until the rollout is over
/// and every endpoint answers; prints what happens.
async fn repair(
    cluster: &mut ScenarioCluster,
    trust: &Trust,
    request: pb::StartUpdateRequest,
) -> anyhow::Result<Downtime> {
    let mut after = 0;
    cluster.events_after(&mut after).await?;
    let (start, start_wall) = (Instant::now(), SystemTime::now());
    cluster
        .client
        .start_update(request)
        .await
        .map_err(|s| cluster.target.rpc_error("StartUpdate", &s))?;
    let mut out = Downtime {
        instance_seconds: 0.0,
        servers_touched: 0,
        all_back: None,
    };
    let mut was_down: Vec<String> = Vec::new();
    let mut last = start;
    while start.elapsed() < LIMIT {
        let status = cluster.status().await?;
        for e in cluster.events_after(&mut after).await? {
            if e.kind.starts_with("update.") {
                let at = since(&e, start_wall);
                crate::output::line(&format!(
                    "  +{:>5.1}s  {}",
                    at.as_secs_f64(),
                    short_line(&e)
                ));
            }
        }
        let down = unreachable(&status, trust).await;
        let now = Instant::now();
        out.instance_seconds += (now - last).as_secs_f64() * was_down.len() as f64;
        last = now;
        if down != was_down {
            crate::output::line(&format!(
                "  +{:>5.1}s  endpoints not answering clients: {}",
                start.elapsed().as_secs_f64(),
                if down.is_empty() {
                    "none".to_owned()
                } else {
                    format!("{} of {INSTANCES} ({})", down.len(), down.join(", "))
                }
            ));
        }
        was_down = down;
        let u = update(cluster).await?;
        if u.status == "Paused" {
            bail!(
                "the rollout stopped where it should have rolled back: {}",
                u.stopped_because
            );
        }
        let over = matches!(u.status.as_str(), "RolledBack" | "Succeeded");
        if over && was_down.is_empty() {
            out.servers_touched = u.steps.iter().map(|s| s.nodes.len()).sum();
            out.all_back = Some(start.elapsed());
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(out)
}

fn describe(d: &Downtime) -> String {
    format!(
        "{} server(s) changed, endpoint downtime {:.1} instance-seconds, every endpoint answering again after {}",
        d.servers_touched,
        d.instance_seconds,
        d.all_back
            .map_or("never (within the limit)".into(), |t| format!(
                "{:.1}s",
                t.as_secs_f64()
            ))
    )
}

pub async fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    crate::output::line(&format!(
        "secondary-outage-2012 on real processes: {HOSTS} servers, one per update domain; web has \
         {INSTANCES} instances;\nhost agent 1.0 speaks bindings interface 1, plugin net-2 speaks 2 \
         (docs/rollouts.md)"
    ));
    let owner = ServiceOwner::new("secondary-outage")?;
    let valid_to = OffsetDateTime::now_utc() + time::Duration::days(365);
    let web = owner.write("web", "web", &[("app", INSTANCES)], valid_to)?;
    let trust = owner.trust();
    let packages = owner.dir().join("packages");
    let bin_dir = crate::bins::bin_dir()?;
    let new = NEW.write(&packages, &bin_dir)?;
    let fix = REPAIR.write(&packages, &bin_dir)?;

    // A blast restarts every host agent at once: on a busy machine one may
    // take over a second to register again, which must not look like a
    // lost server (the replay is about networks, not Human Investigate).
    let flags: Vec<String> = [
        "--update-domains",
        "4",
        "--fault-domains",
        "2",
        "--node-timeout",
        "5s",
        "--unresponsive-grace",
        "60s",
        "--hi-threshold",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut cluster = ScenarioCluster::start(global, "secondary-outage", HOSTS, &flags).await?;
    cluster.wait_ready(HOSTS as usize).await?;
    cluster.deploy(&web.path).await?;
    cluster
        .wait_running(INSTANCES as usize, Duration::from_secs(60))
        .await?;

    crate::output::line(&format!(
        "\n== before: a rollout of host agent {} with plugin {} is under way",
        NEW.host_agent, NEW.plugin
    ));
    crate::package::upload(&cluster.target, &new, false).await?;
    let mut canary = plan(NEW.version, false);
    canary.force = false;
    canary.canary = 2;
    // The canary step waits here; the rollout stops with 2 servers moved.
    canary.gate_stable = prost_types::Duration::try_from(Duration::from_secs(3600)).ok();
    canary.gate_timeout = prost_types::Duration::try_from(Duration::from_secs(7200)).ok();
    cluster
        .client
        .start_update(canary)
        .await
        .map_err(|s| cluster.target.rpc_error("StartUpdate", &s))?;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let status = cluster.status().await?;
        let moved = status
            .nodes
            .iter()
            .filter(|n| {
                n.software
                    .as_ref()
                    .is_some_and(|s| s.package == NEW.version)
            })
            .count();
        let serving = unreachable(&status, &trust).await.is_empty()
            && super::local::running_instances(&status).count() == INSTANCES as usize;
        if moved == 2 && serving {
            break;
        }
        if Instant::now() > deadline {
            bail!("the first rollout did not reach 2 servers within 90s");
        }
        tokio::time::sleep(POLL).await;
    }
    act(&mut cluster, Action::Pause).await?;
    act(&mut cluster, Action::Abandon).await?;
    let status = cluster.status().await?;
    for n in &status.nodes {
        let s = n.software.clone().unwrap_or_default();
        crate::output::line(&format!(
            "  {}  update domain {}  package {:<16} host agent {:<6} plugin {}",
            n.node_id,
            n.update_domain,
            if s.package.is_empty() {
                "base"
            } else {
                &s.package
            },
            s.host_agent,
            s.plugin
        ));
    }

    crate::output::line(&format!(
        "\n== as it happened in 2012: host agent {} with plugin {}, blasted to every server at once",
        REPAIR.host_agent, REPAIR.plugin
    ));
    let added = crate::package::upload(&cluster.target, &fix, true).await?;
    crate::output::line(&format!("  {}", added.summary));
    let blast = repair(&mut cluster, &trust, plan(REPAIR.version, true)).await?;

    crate::output::line("\n== with Fabric: the compatibility check, then the domain walk's gate");
    match crate::package::upload(&cluster.target, &fix, false).await {
        Ok(_) => bail!("package add of the incompatible package was not refused"),
        Err(e) => crate::output::line(&format!("  package add: {e:#}")),
    }
    let mut unforced = plan(REPAIR.version, false);
    unforced.force = false;
    match cluster.client.start_update(unforced).await {
        Ok(_) => bail!("update start of the incompatible package was not refused"),
        Err(s) => crate::output::line(&format!("  update start refused: {}", s.message())),
    }
    crate::output::line(
        "  forced anyway, walked one update domain at a time, rollback on failure:",
    );
    let walk = repair(&mut cluster, &trust, plan(REPAIR.version, false)).await?;

    crate::output::line("\nsummary");
    crate::output::line(
        "  2012: the blast reached every server before anyone could see a VM's network; seven clusters lost theirs",
    );
    crate::output::line(&format!("  blast, as in 2012:   {}", describe(&blast)));
    crate::output::line(&format!("  Fabric, forced:      {}", describe(&walk)));
    crate::output::line(
        "  Fabric, unforced:    refused at package add and at update start, 0 instance-seconds",
    );
    if blast.all_back.is_none() || walk.all_back.is_none() {
        bail!("a repair did not end with every endpoint answering (see above)");
    }
    if walk.instance_seconds >= blast.instance_seconds
        || walk.servers_touched >= blast.servers_touched
    {
        bail!("the domain walk did not contain the damage (see above)");
    }
    crate::output::line(&format!(
        "  the gate held the damage to {} of {} servers and {:.0}% of the blast's downtime",
        walk.servers_touched,
        blast.servers_touched,
        100.0 * walk.instance_seconds / blast.instance_seconds.max(0.001)
    ));
    Ok(())
}
