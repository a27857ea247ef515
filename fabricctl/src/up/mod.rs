//! `fabricctl up`: run a local cluster and supervise it until stopped.
//!
//! Order of work: take the state directory's lock, create the PKI, start
//! the fabric controller and wait until it is SERVING, write context.json,
//! start the host agents, then supervise (restart what exits) while
//! streaming cluster events, until SIGINT/SIGTERM/SIGHUP. With `--deploy
//! FILE`, the definition is read before anything starts (a bad file fails
//! at once) and deployed once every host is Ready. Stopping leaves no
//! process behind: children die by signal from the launcher, or by
//! PR_SET_PDEATHSIG if the launcher itself is killed.

pub mod child;
pub mod guest;
pub mod layout;
pub mod lock;
pub mod pki;
pub mod policy;
pub mod ready;
pub mod reaper;
pub mod replicas;
pub mod signals;
pub mod supervisor;

use crate::bins;
use crate::cli::{GlobalArgs, UpArgs};
use crate::context::{Context, ProcessEntry};
use crate::definition;
use crate::error::CtlError;
use crate::events;
use crate::target::Target;
use crate::watch;
use anyhow::Context as _;
use child::ChildSpec;
use fabric_pki::tls::TlsFiles;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{ListEventsRequest, NodeState, ServiceDefinition};
use layout::{StateLayout, host_name};
use std::path::{Path, PathBuf};
use std::time::Duration;
use supervisor::{Supervisor, say};
use tokio::time::Instant;

/// The controller's process name (and log file stem).
pub const CONTROLLER_NAME: &str = "fabric-controller";
/// The TLS name the controller certificate carries.
pub const SERVER_NAME: &str = "localhost";
/// How long `up` waits for every host to be Ready before warning.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// The example service `up` suggests deploying (relative to the repository).
pub const EXAMPLE_DEFINITION: &str = "examples/web/service.toml";

pub async fn run(global: &GlobalArgs, args: &UpArgs) -> anyhow::Result<()> {
    guest::validate(args)?;
    policy::validate(args)?;
    let to_deploy = match &args.deploy {
        Some(path) => Some((path.clone(), definition::load(path)?)),
        None => None,
    };
    let layout = StateLayout::create(&global.state_dir)?;
    let _lock = lock::acquire(&layout)?;
    refuse_live_launcher(&layout)?;
    // Every server starts powered on, whatever a previous run left marked.
    let stale_marks = layout.clear_powered_off();
    if !stale_marks.is_empty() {
        say(&format!(
            "cleared power-off marks of an earlier run: {}",
            stale_marks.join(", ")
        ));
    }
    let bin_dir = bins::bin_dir()?;
    let fc_bin = bins::find(&bin_dir, bins::CONTROLLER)?;
    let ha_bin = bins::find(&bin_dir, bins::HOST_AGENT)?;
    let netplug_bin = bins::find(&bin_dir, bins::NETPLUG)?;
    if args.hosts == 0 && args.hollow == 0 {
        anyhow::bail!("--hosts 0 needs --hollow N: a cluster needs at least one server");
    }
    let hollow_bin = match args.hollow {
        0 => None,
        _ => Some(bins::find(&bin_dir, bins::HOLLOW)?),
    };
    let replicas = replicas::plan(&layout, args)?;
    let pki = pki::prepare(&layout, &args.cluster, args.hosts, args.hollow)?;

    let mut stop = signals::StopSignals::register().context("cannot handle signals")?;
    let mut sigchld = signals::child_signal().context("cannot handle SIGCHLD")?;
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;

    let env = child_env();
    let mut sup = Supervisor::new(layout.root.clone(), args.restart_delay);
    let one = controller_spec(&layout, &pki, args, &fc_bin, &env);
    let mut controllers = Vec::new();
    if let Some(replicas) = &replicas {
        for spec in replicas.etcd_specs(&layout, &env) {
            controllers.push((spec.name.clone(), spec.log.clone()));
            let member = sup.add(spec);
            sup.start(member)?;
        }
    }
    let fcs: Vec<usize> = match &replicas {
        Some(r) => r
            .controller_specs(&one, args)
            .into_iter()
            .map(|spec| {
                controllers.push((spec.name.clone(), spec.log.clone()));
                sup.add(spec)
            })
            .collect(),
        None => {
            controllers.push((one.name.clone(), one.log.clone()));
            vec![sup.add(one)]
        }
    };
    let admin = Target {
        what: "fabric controller",
        endpoint: String::new(),
        server_name: SERVER_NAME.into(),
        tls: TlsFiles::new(pki.ca(), &pki.admin),
        hint: None,
    };

    let started = tokio::select! {
        r = async {
            match &replicas {
                Some(r) => start_replicas(&mut sup, &fcs, r, admin).await,
                None => start_controller(&mut sup, fcs[0], &layout, admin).await,
            }
        } => Some(r),
        sig = stop.recv() => {
            say(&format!("{sig} received during startup; stopping"));
            None
        }
    };
    let (target, dashboard) = match started {
        Some(Ok(started)) => started,
        other => {
            sup.shutdown(&mut sigchld).await;
            sup.finish();
            return match other {
                Some(Err(e)) => Err(e),
                _ => Ok(()),
            };
        }
    };

    // Events so far (a controller may keep them across runs) are history;
    // the stream shows this run's.
    let after = latest_sequence(&target).await.unwrap_or(0);
    let mut context = Context {
        cluster: args.cluster.clone(),
        endpoint: target.endpoint.clone(),
        server_name: SERVER_NAME.into(),
        ca: target.tls.ca.clone(),
        cert: target.tls.cert.clone(),
        key: target.tls.key.clone(),
        launcher_pid: Some(std::process::id()),
        stopped_at: None,
        restart_delay_ms: Some(u64::try_from(args.restart_delay.as_millis()).unwrap_or(u64::MAX)),
        managed_by: None,
        dashboard: Some(dashboard.clone()),
        processes: controllers
            .into_iter()
            .map(|(name, log)| ProcessEntry {
                name,
                pid: None,
                log,
            })
            .collect(),
    };
    let mut hosts = Vec::new();
    for i in 1..=args.hosts {
        let spec = host_spec(
            &layout,
            &pki,
            args,
            (&ha_bin, &netplug_bin),
            &env,
            &target.endpoint,
            i,
        );
        context.processes.push(ProcessEntry {
            name: spec.name.clone(),
            pid: None,
            log: spec.log.clone(),
        });
        hosts.push(sup.add(spec));
    }
    if let Some(bin) = &hollow_bin {
        let spec = hollow_spec(&layout, &pki, args, bin, &env, &target.endpoint);
        context.processes.push(ProcessEntry {
            name: spec.name.clone(),
            pid: None,
            log: spec.log.clone(),
        });
        hosts.push(sup.add(spec));
    }
    sup.set_context(context);
    for &idx in &hosts {
        if let Err(e) = sup.start(idx) {
            sup.shutdown(&mut sigchld).await;
            sup.finish();
            return Err(e);
        }
    }

    print_banner(&layout, global, args, &target, &dashboard, sup.pid(fcs[0]));
    if let Some(r) = &replicas {
        say(&format!(
            "controller replicas: {} (only the leader listens; dashboards {}), etcd members {}",
            r.endpoints(),
            r.dashboards().join(" "),
            r.etcd
                .iter()
                .map(|m| format!("{} {}", m.name, m.client))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let readiness = tokio::spawn(ready_then_deploy(
        target.clone(),
        args.hosts + args.hollow,
        layout.logs(),
        to_deploy,
        state_flag(global, &layout),
        (1..=args.hosts)
            .map(|i| {
                let name = host_name(i);
                let file = host_metrics_file(&layout, &name);
                (name, file)
            })
            .collect(),
    ));
    let watcher = tokio::spawn(stream_events(target.clone(), after));

    let sig = sup.supervise(&mut stop, &mut sigchld).await;
    watcher.abort();
    readiness.abort();
    say(&format!("{sig} received: stopping the cluster"));
    sup.shutdown(&mut sigchld).await;
    sup.finish();
    layout.clear_powered_off();
    say("cluster stopped");
    Ok(())
}

/// Belt and braces next to the lock: a context naming another live
/// fabricctl (e.g. one from a build without the lock) also refuses.
fn refuse_live_launcher(layout: &StateLayout) -> anyhow::Result<()> {
    let Some(ctx) = Context::load(&layout.root)? else {
        return Ok(());
    };
    match ctx.live_launcher() {
        Some(pid) if pid != std::process::id() && is_fabricctl(pid) => {
            Err(CtlError::AlreadyRunning {
                state_dir: layout.root.clone(),
                pid: Some(pid),
            }
            .into())
        }
        _ => Ok(()),
    }
}

/// Whether `pid` runs fabricctl (its /proc comm).
pub(crate) fn is_fabricctl(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim() == "fabricctl")
}

/// RUST_LOG passes through (default "info"); logs go to files, so no colour.
fn child_env() -> Vec<(String, String)> {
    vec![
        (
            "RUST_LOG".into(),
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        ),
        ("NO_COLOR".into(), "1".into()),
    ]
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}

fn duration_arg(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The host agents' reconnect backoff cap: at most half the node timeout
/// (and the host agent's 5 s default), so that after a controller restart
/// every host agent tries again well within the fresh grace the controller
/// gives it, however long the controller was away (docs/durability.md).
fn host_max_backoff(node_timeout: Duration) -> Duration {
    (node_timeout / 2).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

/// The host agents' wait for a controller's answer: a third of the node
/// timeout (at most the host agent's 5 s default), so that a host whose
/// controller replica stopped answering (paused) gives up on it, finds the
/// new leader and heartbeats within the fresh grace the new leader gives.
fn host_controller_timeout(node_timeout: Duration) -> Duration {
    (node_timeout / 3).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

fn controller_spec(
    layout: &StateLayout,
    pki: &pki::ClusterPki,
    args: &UpArgs,
    program: &Path,
    env: &[(String, String)],
) -> ChildSpec {
    let addr_file = layout.addr_file("fc");
    ChildSpec {
        name: CONTROLLER_NAME.into(),
        program: program.to_owned(),
        args: vec![
            "--cluster".into(),
            args.cluster.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--addr-file".into(),
            path_arg(&addr_file),
            "--ca".into(),
            path_arg(&pki.ca()),
            "--cert".into(),
            path_arg(&pki.controller.cert),
            "--key".into(),
            path_arg(&pki.controller.key),
            "--heartbeat-interval".into(),
            duration_arg(args.heartbeat_interval),
            "--node-timeout".into(),
            duration_arg(args.node_timeout),
            "--state-dir".into(),
            path_arg(&layout.controller_state()),
            "--http-listen".into(),
            args.dashboard.to_string(),
            "--http-addr-file".into(),
            path_arg(&layout.addr_file("fc-http")),
        ]
        .into_iter()
        .chain(policy::controller_args(args))
        .chain(connection_args(args.hosts + args.hollow))
        .collect(),
        log: layout.log(CONTROLLER_NAME),
        env: env.to_vec(),
        keep_bound: vec![
            ("--listen", addr_file.clone()),
            ("--http-listen", layout.addr_file("fc-http")),
        ],
        addr_file: Some(addr_file),
    }
}

/// Room for every server's connection and then some (operators, restarts
/// overlapping old connections), when the controller's default would not do.
fn connection_args(servers: u32) -> Vec<String> {
    let wanted = servers as usize * 2 + 256;
    if wanted <= fabric_daemon::tls_accept::Limits::default().max_connections {
        return Vec::new();
    }
    vec!["--max-connections".into(), wanted.to_string()]
}

/// Where host agent `name` writes the address of its /metrics.
fn host_metrics_file(layout: &StateLayout, name: &str) -> PathBuf {
    layout.addr_file(&format!("{name}-http"))
}

/// Host `i` (1-based) is in fault domain (i-1) % fds, update domain (i-1) % uds.
pub fn domains(i: u32, fault_domains: u32, update_domains: u32) -> (u32, u32) {
    (
        (i - 1) % fault_domains.max(1),
        (i - 1) % update_domains.max(1),
    )
}

fn host_spec(
    layout: &StateLayout,
    pki: &pki::ClusterPki,
    args: &UpArgs,
    (program, netplug): (&Path, &Path),
    env: &[(String, String)],
    endpoint: &str,
    i: u32,
) -> ChildSpec {
    let name = host_name(i);
    let cert = &pki.hosts[(i - 1) as usize];
    let (fd, ud) = domains(i, args.fault_domains, args.update_domains);
    let addr_file = layout.addr_file(&name);
    let metrics_file = host_metrics_file(layout, &name);
    ChildSpec {
        program: program.to_owned(),
        args: vec![
            "--controller".into(),
            endpoint.into(),
            "--controller-name".into(),
            SERVER_NAME.into(),
            "--ca".into(),
            path_arg(&pki.ca()),
            "--cert".into(),
            path_arg(&cert.cert),
            "--key".into(),
            path_arg(&cert.key),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--addr-file".into(),
            path_arg(&addr_file),
            "--fault-domain".into(),
            fd.to_string(),
            "--update-domain".into(),
            ud.to_string(),
            "--capacity".into(),
            args.capacity.to_string(),
            "--heartbeat-interval".into(),
            duration_arg(args.heartbeat_interval),
            "--max-backoff".into(),
            duration_arg(host_max_backoff(args.node_timeout)),
            "--controller-timeout".into(),
            duration_arg(host_controller_timeout(args.node_timeout)),
            "--state-dir".into(),
            path_arg(&layout.host_state(&name)),
            "--http-listen".into(),
            "127.0.0.1:0".into(),
            "--http-addr-file".into(),
            path_arg(&metrics_file),
            // Each server's networking plugin forwards its roles' public
            // endpoints to the VMs (see host-agent's netplug.rs).
            "--netplug-bin".into(),
            path_arg(netplug),
        ]
        .into_iter()
        .chain(guest::host_agent_args(args))
        .collect(),
        log: layout.log(&name),
        env: env.to_vec(),
        addr_file: Some(addr_file),
        keep_bound: vec![("--http-listen", metrics_file)],
        name,
    }
}

/// The one process that runs every hollow host (`fabric-hollow`), each with
/// the host agent flags a real host gets, but no networking plugin and no
/// metrics listener of its own.
fn hollow_spec(
    layout: &StateLayout,
    pki: &pki::ClusterPki,
    args: &UpArgs,
    program: &Path,
    env: &[(String, String)],
    endpoint: &str,
) -> ChildSpec {
    let name = "hollow".to_owned();
    ChildSpec {
        program: program.to_owned(),
        args: vec![
            "--count".into(),
            pki.hollow.to_string(),
            "--prefix".into(),
            layout::HOLLOW_PREFIX.into(),
            "--state-dir".into(),
            path_arg(&layout.root.join("hosts")),
            "--fault-domains".into(),
            args.fault_domains.to_string(),
            "--update-domains".into(),
            args.update_domains.to_string(),
            // Hosts start at most 500 a second: 5,000 at once made 8,695
            // TLS handshakes evicted at the controller (256 at a time) and
            // left 135 servers in HI before they had run anything.
            "--start-rate".into(),
            "500".into(),
            // The hosts' heartbeat round trips, for benchmarks (one small
            // file, replaced every second).
            "--stats".into(),
            path_arg(&layout.root.join("hollow-stats.json")),
            "--".into(),
            "--controller".into(),
            endpoint.into(),
            "--controller-name".into(),
            SERVER_NAME.into(),
            "--pki-dir".into(),
            path_arg(&pki.layout.dir),
            "--capacity".into(),
            args.capacity.to_string(),
            "--heartbeat-interval".into(),
            duration_arg(args.heartbeat_interval),
            "--max-backoff".into(),
            duration_arg(host_max_backoff(args.node_timeout)),
            "--controller-timeout".into(),
            duration_arg(host_controller_timeout(args.node_timeout)),
        ]
        .into_iter()
        .chain(guest::host_agent_args(args))
        .collect(),
        log: layout.log(&name),
        env: env.to_vec(),
        addr_file: None,
        keep_bound: Vec::new(),
        name,
    }
}

/// Starts the controller and waits until it is SERVING; returns the target
/// to reach it with the admin certificate. From then on its listen address
/// is pinned, so a restarted controller comes back where the host agents
/// and context.json expect it.
async fn start_controller(
    sup: &mut Supervisor,
    fc: usize,
    layout: &StateLayout,
    mut admin: Target,
) -> anyhow::Result<(Target, String)> {
    let deadline = Instant::now() + ready::STARTUP_DEADLINE;
    sup.start(fc)?;
    let log = layout.log(CONTROLLER_NAME);
    let with_log = |e: anyhow::Error| e.context(format!("see {}", log.display()));
    let addr = ready::wait_addr_file(
        CONTROLLER_NAME,
        &layout.addr_file("fc"),
        deadline,
        &mut || sup.exit_of(fc),
    )
    .await
    .map_err(|e| reorder(with_log(e)))?;
    admin.endpoint = format!("https://{addr}");
    ready::wait_serving(&admin, deadline, &mut || sup.exit_of(fc))
        .await
        .map_err(|e| reorder(with_log(e)))?;
    // Written before the gRPC port serves, so present now; a restarted
    // controller keeps the same dashboard URL (`keep_bound`).
    let dashboard = ready::read_addr_file(&layout.addr_file("fc-http"))
        .ok_or_else(|| anyhow::anyhow!("the fabric controller wrote no dashboard address"))?;
    Ok((admin, format!("http://{dashboard}/")))
}

/// Starts every replica and waits until one leads and is SERVING; returns
/// the target naming every replica, and the leader's dashboard.
async fn start_replicas(
    sup: &mut Supervisor,
    fcs: &[usize],
    replicas: &replicas::Replicas,
    mut admin: Target,
) -> anyhow::Result<(Target, String)> {
    // etcd elects itself within a few seconds; replicas wait for it.
    let deadline = Instant::now() + ready::STARTUP_DEADLINE;
    for &fc in fcs {
        sup.start(fc)?;
    }
    admin.endpoint = replicas.endpoints();
    ready::wait_serving(&admin, deadline, &mut || {
        // Each replica may be restarted; startup fails when all are down.
        let exits: Vec<String> = fcs.iter().filter_map(|&fc| sup.exit_of(fc)).collect();
        (exits.len() == fcs.len()).then(|| exits.join("; "))
    })
    .await
    .map_err(reorder)?;
    let leader = crate::status::fetch(&admin)
        .await
        .ok()
        .and_then(|s| s.replication)
        .map(|r| r.leader);
    let endpoints: Vec<String> = admin.endpoint.split(',').map(str::to_owned).collect();
    let dashboards = replicas.dashboards();
    let dashboard = leader
        .and_then(|l| endpoints.iter().position(|e| *e == l))
        .map_or_else(|| dashboards[0].clone(), |i| dashboards[i].clone());
    Ok((admin, dashboard))
}

/// Puts the cause first: "X exited ...: see LOG" rather than "see LOG: X".
fn reorder(e: anyhow::Error) -> anyhow::Error {
    let mut chain = e.chain().map(ToString::to_string);
    let outer = chain.next().unwrap_or_default();
    let inner: Vec<String> = chain.collect();
    anyhow::anyhow!("{} ({outer})", inner.join(": "))
}

async fn latest_sequence(target: &Target) -> anyhow::Result<u64> {
    let mut client = OperatorServiceClient::new(target.connect().await?);
    let events = client
        .list_events(ListEventsRequest {
            after_sequence: 0,
            limit: 0,
        })
        .await
        .map_err(|s| target.first_rpc_error("ListEvents", &s))?
        .into_inner()
        .events;
    Ok(events.iter().map(|e| e.sequence).max().unwrap_or(0))
}

/// " --state-dir DIR" when it is not the default, for printed commands.
fn state_flag(global: &GlobalArgs, layout: &StateLayout) -> String {
    if global.state_dir == Path::new(".fabric") {
        String::new()
    } else {
        format!(" --state-dir {}", layout.root.display())
    }
}

fn print_banner(
    layout: &StateLayout,
    global: &GlobalArgs,
    args: &UpArgs,
    target: &Target,
    dashboard: &str,
    fc_pid: Option<nix::unistd::Pid>,
) {
    let state_flag = state_flag(global, layout);
    let mut banner = vec![
        format!(
            "fabricctl up: cluster {:?}, fabric controller (pid {}) and {} host agents{}",
            args.cluster,
            fc_pid.map_or("?".into(), |p| p.to_string()),
            args.hosts,
            match args.hollow {
                0 => String::new(),
                n => format!(" and {n} hollow hosts (one fabric-hollow process)"),
            }
        ),
        format!("  endpoint   {}", target.endpoint),
        format!("  dashboard  {dashboard}  (metrics: {dashboard}metrics)"),
        format!("  state dir  {}", layout.root.display()),
        format!("  logs       {}/<name>.log", layout.logs().display()),
        format!("  status     fabricctl{state_flag} status"),
        format!("  events     fabricctl{state_flag} events --follow"),
        format!(
            "  healing    HI threshold {}, unresponsive grace {}, fault classification {}",
            args.hi_threshold.trim(),
            duration_arg(args.unresponsive_grace),
            if args.fault_classification.is_on() {
                "on"
            } else {
                "off (2012 behaviour)"
            }
        ),
    ];
    banner.push(match &args.deploy {
        Some(file) => format!("  deploy     {} once every host is Ready", file.display()),
        None => format!("  deploy the example: fabricctl{state_flag} deploy {EXAMPLE_DEFINITION}"),
    });
    banner.extend([
        format!(
            "  then       curl -sk https://<endpoint>/ once an instance is Running (endpoints: fabricctl{state_flag} status)"
        ),
        format!("  stop       Ctrl-C (or kill -TERM {})", std::process::id()),
    ]);
    crate::output::line_lossy(&banner.join("\n"));
}

/// Waits for the hosts ([`report_ready`]), then deploys the `--deploy` file
/// if there is one. A refused deploy is reported and the cluster keeps
/// running: the operator can fix the file and run `fabricctl deploy`.
async fn ready_then_deploy(
    target: Target,
    hosts: u32,
    logs: PathBuf,
    to_deploy: Option<(PathBuf, ServiceDefinition)>,
    state_flag: String,
    host_metrics: Vec<(String, PathBuf)>,
) {
    report_ready(&target, hosts, &logs).await;
    let metrics: Vec<String> = host_metrics
        .iter()
        .filter_map(|(name, file)| {
            ready::read_addr_file(file).map(|a| format!("{name} http://{a}/metrics"))
        })
        .collect();
    if !metrics.is_empty() {
        say(&format!("host agent metrics: {}", metrics.join(", ")));
    }
    let Some((path, service)) = to_deploy else {
        return;
    };
    match crate::deploy::deploy(&target, service).await {
        Ok(response) => {
            for line in crate::deploy::report(&response).lines() {
                say(line);
            }
            say(&format!(
                "once Running: fabricctl{state_flag} status shows each endpoint; curl -sk https://<endpoint>/"
            ));
        }
        Err(e) => say(&format!(
            "deploying {} failed: {}; the cluster keeps running (fix it, then `fabricctl{state_flag} deploy {}`)",
            path.display(),
            crate::error::one_line(&e),
            path.display()
        )),
    }
}

/// Prints one line once every host is Ready, or a warning if that takes
/// too long.
async fn report_ready(target: &Target, hosts: u32, logs: &Path) {
    let started = Instant::now();
    let deadline = started + READY_DEADLINE;
    let mut ready = 0;
    while Instant::now() < deadline {
        if let Ok(status) = crate::status::fetch(target).await {
            ready = status
                .nodes
                .iter()
                .filter(|n| n.state() == NodeState::Ready)
                .count();
            if ready >= hosts as usize {
                say(&format!(
                    "cluster ready: {ready}/{hosts} hosts Ready after {:.1}s",
                    started.elapsed().as_secs_f64()
                ));
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    say(&format!(
        "warning: only {ready}/{hosts} hosts Ready after {}s; see {}",
        READY_DEADLINE.as_secs(),
        logs.display()
    ));
}

async fn stream_events(target: Target, after: u64) {
    let result = watch::follow(
        &target,
        after,
        |e| crate::output::line_lossy(&events::short_line(e)),
        say,
    )
    .await;
    if let Err(e) = result {
        say(&format!(
            "event stream stopped: {}",
            crate::error::one_line(&e)
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_assignment() {
        assert_eq!(domains(1, 3, 5), (0, 0));
        assert_eq!(domains(4, 3, 5), (0, 3));
        assert_eq!(domains(6, 3, 5), (2, 0));
    }
}
