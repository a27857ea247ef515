//! The command line, declared with clap so `--help` documents every flag.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "fabricctl",
    version,
    about = "Run and inspect a Fabric cluster"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the cluster is: a state directory with a context, or explicit flags.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// State directory of the local cluster (PKI, logs, context.json).
    #[arg(
        long,
        global = true,
        env = "FABRIC_STATE_DIR",
        default_value = ".fabric"
    )]
    pub state_dir: PathBuf,
    /// Fabric controller URL (https://host:port); overrides the context.
    #[arg(long, global = true, env = "FABRIC_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Cluster CA certificate (default: from the context or <state>/pki/ca.pem).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Admin client certificate (default: context or <state>/pki/admin.pem).
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Admin client key (default: context or <state>/pki/admin.key).
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// TLS server name to verify the controller certificate against.
    #[arg(long, global = true)]
    pub server_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local cluster (controller + host agents) and supervise it until Ctrl-C.
    Up(UpArgs),
    /// Show the cluster's nodes, deployments and role instances.
    Status(StatusArgs),
    /// Deploy a service definition (TOML), or rotate the certificates of an
    /// existing deployment with the same roles and instance counts.
    Deploy(DeployArgs),
    /// Delete a deployment and stop all its role instances.
    Delete(DeleteArgs),
    /// Set the number of instances of one role of a deployment.
    Scale(ScaleArgs),
    /// List cluster events, optionally following new ones.
    Events(EventsArgs),
    /// Act on one node (server).
    #[command(subcommand)]
    Node(NodeCommand),
    /// Act on the whole cluster: leave Human Investigate mode, flip switches.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Packages of the fabric's own software (host agent, guest agent,
    /// networking plugin).
    #[command(subcommand)]
    Package(PackageCommand),
    /// Roll a package out over the cluster, update domain by update domain,
    /// each gated on health; or look at, pause, resume, roll back the rollout.
    #[command(subcommand)]
    Update(UpdateCommand),
    /// Inject faults into a local cluster started by `fabricctl up`.
    #[command(subcommand)]
    Chaos(ChaosCommand),
    /// Create a cluster's certificates without starting it (for
    /// docker-compose or another launcher).
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Replay real incidents (2009, 2012, 2013), as they happened and with
    /// Fabric's improvements.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
    /// Run one program, restarting it when it exits and reaping the
    /// processes it leaves behind: a host container's init, so a killed host
    /// agent is restarted while its VMs keep running.
    Supervise(SuperviseArgs),
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// The scenarios, one line each.
    List,
    /// Run one, printing its timeline and a summary: on real processes (a
    /// local cluster of its own per phase, time scaled down, its dashboard
    /// URL printed), or in virtual time with --simulate.
    Run(ScenarioRunArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ScenarioRunArgs {
    /// The scenario (see `fabricctl scenario list`).
    pub name: String,
    /// Run in virtual time against the controller's core (seconds for hours).
    #[arg(long)]
    pub simulate: bool,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// Create (or complete) a cluster's CA and certificates in a directory,
    /// and optionally an operator context for `fabricctl --state-dir`.
    Init(PkiInitArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PkiInitArgs {
    /// Directory for the cluster's PKI (ca.pem, controller.pem, admin.pem,
    /// hosts/<node>.pem; keys 0600).
    #[arg(long)]
    pub dir: PathBuf,
    /// Cluster name (written into every certificate).
    #[arg(long)]
    pub cluster: String,
    /// Extra DNS name of the controller (besides localhost), e.g. its
    /// compose service name; repeatable.
    #[arg(long = "controller-name", value_name = "NAME")]
    pub controller_names: Vec<String>,
    /// Host agents to issue certificates for, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NODE,...")]
    pub hosts: Vec<String>,
    /// Also write an operator context here: context.json and the CA and
    /// admin files (never a host key).
    #[arg(long, value_name = "DIR")]
    pub context_dir: Option<PathBuf>,
    /// The controller URL an operator uses, written into the context.
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Name the controller's certificate is verified against from there.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// What runs the cluster, recorded in the context.
    #[arg(long, default_value = "docker-compose")]
    pub managed_by: String,
    /// The controller's dashboard URL as the operator reaches it, recorded
    /// in the context (shown by `status`).
    #[arg(long, value_name = "URL")]
    pub dashboard: Option<String>,
    /// Also write least-privilege bundles here: `DIR/controller/` and
    /// `DIR/<node>/`, each with the CA certificate and that one identity's
    /// certificate and key, laid out as --dir is (mount one as a daemon's
    /// --pki-dir). Never the CA key or the admin key.
    #[arg(long, value_name = "DIR")]
    pub bundles: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SuperviseArgs {
    /// Name used in the supervisor's lines (default: the program's file name).
    #[arg(long)]
    pub name: Option<String>,
    /// Delay before restarting the program after it exits.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub restart_delay: Duration,
    /// Where the program's output goes (appended).
    #[arg(long, default_value = "/dev/stdout")]
    pub log: PathBuf,
    /// The program to run.
    pub program: PathBuf,
    /// Its arguments (after `--`).
    #[arg(last = true)]
    pub args: Vec<String>,
}

/// The faults `fabricctl chaos` injects, by name. Each prints what it did,
/// with pids. Only for a local cluster (`fabricctl up` in --state-dir).
#[derive(Debug, Clone, Subcommand)]
pub enum ChaosCommand {
    /// SIGKILL a node's host agent and all its VMs (guest agents); `fabricctl
    /// up` does not restart it until `chaos power-on`.
    PowerOff(ChaosNodeArgs),
    /// Let `fabricctl up` start a powered-off node's host agent again.
    PowerOn(ChaosNodeArgs),
    /// SIGKILL a node's host agent only (its VMs keep running); `fabricctl
    /// up` restarts it after its restart delay.
    KillAgent(ChaosNodeArgs),
    /// SIGKILL the guest agent (VM) of one role instance, e.g. web.frontend.0.
    KillGuest(ChaosInstanceArgs),
    /// SIGSTOP a node's host agent and its VMs (a hung server).
    Pause(ChaosNodeArgs),
    /// SIGCONT a paused node's host agent and its VMs.
    Resume(ChaosNodeArgs),
    /// SIGKILL the fabric controller; `fabricctl up` restarts it after its
    /// restart delay.
    KillFc,
}

#[derive(Debug, Clone, Args)]
pub struct ChaosNodeArgs {
    /// The node id ("host-2").
    pub node: String,
}

#[derive(Debug, Clone, Args)]
pub struct ChaosInstanceArgs {
    /// The role instance id ("web.frontend.0", as in `fabricctl status`).
    pub instance: String,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Return a node from Human Investigate to Ready once it was looked at.
    Repair(RepairArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RepairArgs {
    /// The node id ("host-2").
    pub id: String,
    /// Why the server is believed fine; recorded in the cluster event.
    #[arg(long, default_value = "repaired by operator")]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Upload a package directory: package.toml and the files it names
    /// (see docs/rollouts.md). The controller checks sizes and SHA-256 and
    /// refuses a networking plugin that does not declare its host agent.
    Add(PackageAddArgs),
    /// The packages the controller holds.
    List,
}

#[derive(Debug, Clone, Args)]
pub struct PackageAddArgs {
    /// The package directory.
    pub dir: PathBuf,
    /// Keep it although its plugin does not declare its host agent (the
    /// 2012 secondary outage's pairing; only to replay it).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Start rolling PACKAGE out: a canary group if asked, then each update
    /// domain in order, each held until its health gate passes.
    Start(UpdateStartArgs),
    /// The rollout: where it is, its gate, why it stopped.
    Status,
    /// Stop the rollout where it is.
    Pause,
    /// Go on with a stopped rollout (refused while the cluster is in HI
    /// mode or the updates switch is off).
    Resume,
    /// Walk back: every touched server to its previous package, update
    /// domains in reverse.
    Rollback,
    /// End a paused rollout where it stands: servers keep what they run
    /// (mixed versions) and another rollout may start.
    Abandon,
}

#[derive(Debug, Clone, Args)]
pub struct UpdateStartArgs {
    /// The package's version (see `fabricctl package list`).
    pub package: String,
    /// What a failed health gate does: pause (wait for an operator) or
    /// rollback.
    #[arg(long, value_name = "pause|rollback", default_value = "pause")]
    pub on_failure: String,
    /// Update this many servers first, gated, before the domain walk.
    #[arg(long, default_value_t = 0)]
    pub canary: u32,
    /// Update every server at once, as in 2012 (the gate still runs after).
    #[arg(long)]
    pub blast: bool,
    /// Start although the package's plugin does not declare its host agent.
    #[arg(long)]
    pub force: bool,
    /// How long each step's gate must hold [default: the controller's, 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub gate_stable: Option<std::time::Duration>,
    /// How long a step may take to pass its gate [default: the
    /// controller's, 10m].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub gate_timeout: Option<std::time::Duration>,
    /// Do not restart updated servers' role instances: the new guest agent
    /// then reaches VMs only as they are reinitialized for other reasons.
    #[arg(long)]
    pub keep_instances: bool,
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Leave Human Investigate mode: healing may resume, every node gets a
    /// fresh heartbeat grace (nodes in HI stay there until repaired).
    Resume,
    /// Switch healing, updates or service management on or off.
    Set(SetArgs),
    /// Leave state-lost mode (the controller's state was lost or is older
    /// than what the hosts obeyed): adopt what the hosts run, or wipe.
    Recover(RecoverArgs),
}

#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("how").required(true).args(["adopt", "wipe"])))]
pub struct RecoverArgs {
    /// Rebuild deployments and instances from what the hosts run; nothing is
    /// stopped. Deploy each definition again afterwards to restore its
    /// certificates, which hosts never report.
    #[arg(long)]
    pub adopt: bool,
    /// Keep the controller's (empty or old) state: every host stops every VM
    /// it does not list. Needs --yes.
    #[arg(long, requires = "yes")]
    pub wipe: bool,
    /// Confirms --wipe.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SetArgs {
    /// Which switch.
    #[arg(value_name = "SWITCH")]
    pub switch: SwitchName,
    /// Its new position.
    #[arg(value_name = "on|off")]
    pub position: OnOff,
    /// Several clusters at once, by their state directories (contexts),
    /// comma-separated or repeated: as the 2012 team turned service
    /// management off in every cluster. Each cluster answers for itself;
    /// one that cannot be reached does not stop the others. Default: the
    /// one of --state-dir.
    #[arg(long = "clusters", value_name = "DIR", value_delimiter = ',')]
    pub clusters: Vec<PathBuf>,
}

/// The operators' switches (graceful degradation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SwitchName {
    /// Automatic service healing.
    Healing,
    /// Internally initiated updates.
    Updates,
    /// Service management: deploy, scale, delete.
    Management,
}

impl SwitchName {
    /// The name the controller expects in SetSwitch.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchName::Healing => "healing",
            SwitchName::Updates => "updates",
            SwitchName::Management => "management",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    pub fn is_on(self) -> bool {
        self == OnOff::On
    }
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Number of host agents (host-1..host-N), each a process running its
    /// VMs as guest-agent processes; 0 with --hollow.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub hosts: u32,
    /// Number of hollow hosts (hollow-1..hollow-N) beside --hosts: real
    /// host agents, all in one `fabric-hollow` process, whose VMs are
    /// in-process guests (see docs/performance.md). `--hosts 0 --hollow 200`
    /// is a controller and 200 hollow hosts.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub hollow: u32,
    /// Cluster name (written into every certificate).
    #[arg(long, default_value = "local")]
    pub cluster: String,
    /// Controllers: 1 is one controller with its state on disk; more start
    /// a local etcd cluster of 3 members (Debian's etcd-server) and that
    /// many controller replicas sharing their state in it, one leading.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=7))]
    pub replicas: u32,
    /// With --replicas: the leader's etcd lease (whole seconds); the renew
    /// deadline is two thirds of it and the retry period two fifteenths,
    /// Kubernetes' proportions (15s, 10s, 2s).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub leader_lease: Duration,
    /// How often host agents heartbeat.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Silence after which the controller marks a node Unresponsive.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub node_timeout: Duration,
    /// Number of fault domains; host i is in fault domain (i-1) % N.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub fault_domains: u32,
    /// Number of update domains; host i is in update domain (i-1) % N.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub update_domains: u32,
    /// VM slots per host.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// Delay before restarting a process that exited.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub restart_delay: Duration,
    /// How long a new guest agent may take to connect before its host agent
    /// reinitializes the VM (host-agent --guest-connect-timeout; 25m as in
    /// the 2012 postmortem).
    #[arg(long, default_value = "25m", value_parser = humantime::parse_duration)]
    pub guest_timeout: Duration,
    /// Silence after which a connected guest agent is presumed dead.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub guest_heartbeat_timeout: Duration,
    /// How often guest agents heartbeat to their host agent (host-agent
    /// --guest-heartbeat-interval); shorter than --guest-heartbeat-timeout.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub guest_heartbeat_interval: Duration,
    /// Consecutive clean-VM failures after which a host agent reports its
    /// server faulty.
    #[arg(long, default_value_t = 3)]
    pub clean_vm_strikes: u32,
    /// Make guest agents compute their transfer certificate's expiry the
    /// 2012 way (fails on Feb 29).
    #[arg(long)]
    pub leap_day_bug: bool,
    /// Start the guests' clock at this RFC 3339 instant, e.g.
    /// 2012-02-28T23:59:00Z (it then advances in real time).
    #[arg(long, value_name = "RFC3339")]
    pub guest_now: Option<String>,
    /// Make guest agents exit silently when they fail to initialize (the
    /// 2012 behaviour) instead of reporting why.
    #[arg(long)]
    pub silent_guest_failures: bool,
    /// How long each VM takes to boot before its guest agent starts: a
    /// modelled delay (host-agent --guest-boot-time), so that healing many
    /// VMs takes time as it does with real ones. Counts against
    /// --guest-timeout.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub guest_boot_time: Duration,
    /// Once every host is Ready, deploy this service definition.
    #[arg(long, value_name = "FILE")]
    pub deploy: Option<PathBuf>,
    /// Nodes in Human Investigate that put the whole cluster in HI mode
    /// (healing and updates stop): a count ("2") or a share ("20%").
    #[arg(long, default_value = "2", value_name = "COUNT|PERCENT")]
    pub hi_threshold: String,
    /// How long a node may stay Unresponsive before it goes to Human
    /// Investigate and its role instances are healed elsewhere.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub unresponsive_grace: Duration,
    /// Role instances service healing moves at once.
    #[arg(long, default_value_t = 16)]
    pub healing_concurrency: u32,
    /// Tell guest-software faults from hardware faults; off replays 2012
    /// (every fault report moves its server to Human Investigate).
    #[arg(long, value_enum, default_value_t = OnOff::On)]
    pub fault_classification: OnOff,
    /// How long a server reporting a guest-software fault stays in service
    /// while the controller watches for the same cause elsewhere.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub classification_hold: Duration,
    /// Servers that must report the same cause for it to be a software fault.
    #[arg(long, default_value_t = 2)]
    pub software_fault_min_nodes: u32,
    /// Warn this long before a deployed or cluster certificate expires.
    #[arg(long, default_value = "180days", value_parser = humantime::parse_duration)]
    pub certificate_warning: Duration,
    /// Raise an incident this long before it expires.
    #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
    pub certificate_incident: Duration,
    /// Address of the controller's dashboard and /metrics (port 0: any free
    /// port; the URL is printed and kept in the context).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub dashboard: std::net::SocketAddr,
}

#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// The service definition (TOML); certificate paths in it are relative
    /// to its directory.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct DeleteArgs {
    /// The deployment (service name).
    pub name: String,
}

#[derive(Debug, Clone, Args)]
pub struct ScaleArgs {
    /// The deployment (service name).
    pub name: String,
    /// The role to scale.
    pub role: String,
    /// The new number of instances (at least 1; delete removes a deployment).
    pub instances: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    /// One JSON document (status: joined from every page first).
    Json,
    /// JSON Lines: one object per line, each with a "kind"; status prints
    /// each page of instances as it arrives, so memory stays one page
    /// whatever the cluster's size.
    Jsonl,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Only this node, and the instances on it.
    #[arg(long)]
    pub node: Option<String>,
    /// Only nodes in this state (Ready, Unresponsive, HumanInvestigate) and
    /// the instances on them, or only instances in this state (Pending,
    /// Starting, Provisioned, Running, Reinitializing, Unknown, Lost).
    #[arg(long)]
    pub state: Option<String>,
    /// Only nodes of this fault domain, and the instances on them.
    #[arg(long)]
    pub fault_domain: Option<u32>,
    /// Only nodes of this update domain, and the instances on them.
    #[arg(long)]
    pub update_domain: Option<u32>,
    /// Show at most this many instances (0: all); the controller is asked a
    /// page at a time either way.
    #[arg(long, default_value_t = 0)]
    pub limit: u32,
    /// Instances asked of the controller per call: a page of 5,000 stays
    /// well under gRPC's 4 MiB message limit.
    #[arg(long, default_value_t = crate::status::PAGE, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    pub page_size: u32,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Output format (json: one object per line).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Keep streaming new events until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only events with a sequence number above this one.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_defaults() {
        let cli = Cli::try_parse_from(["fabricctl", "up"]).unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.hosts, 3);
        assert_eq!(up.cluster, "local");
        assert_eq!(up.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(up.node_timeout, Duration::from_secs(5));
        assert_eq!(
            (up.fault_domains, up.update_domains, up.capacity),
            (3, 5, 4)
        );
        assert_eq!(up.restart_delay, Duration::from_secs(2));
        assert_eq!(up.guest_timeout, Duration::from_secs(25 * 60));
        assert_eq!(up.guest_heartbeat_timeout, Duration::from_secs(15));
        assert_eq!(up.guest_heartbeat_interval, Duration::from_secs(3));
        assert_eq!(up.clean_vm_strikes, 3);
        assert!(!up.leap_day_bug && !up.silent_guest_failures);
        assert_eq!((up.guest_now, up.deploy), (None, None));
        assert_eq!(up.hi_threshold, "2");
        assert_eq!(up.unresponsive_grace, Duration::from_secs(10));
        assert_eq!(up.healing_concurrency, 16);
        assert_eq!(up.fault_classification, OnOff::On);
        assert_eq!(up.classification_hold, Duration::from_secs(20));
        assert_eq!(up.software_fault_min_nodes, 2);
    }

    #[test]
    fn node_and_cluster_commands() {
        let cli = Cli::try_parse_from(["fabricctl", "node", "repair", "host-2"]).unwrap();
        let Command::Node(NodeCommand::Repair(r)) = cli.command else {
            panic!("not node repair")
        };
        assert_eq!(
            (r.id.as_str(), r.reason.as_str()),
            ("host-2", "repaired by operator")
        );
        let cli = Cli::try_parse_from([
            "fabricctl",
            "node",
            "repair",
            "host-2",
            "--reason",
            "disk replaced",
        ])
        .unwrap();
        assert!(
            matches!(cli.command, Command::Node(NodeCommand::Repair(r)) if r.reason == "disk replaced")
        );
        let cli = Cli::try_parse_from(["fabricctl", "cluster", "resume"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Cluster(ClusterCommand::Resume)
        ));
        let cli = Cli::try_parse_from(["fabricctl", "cluster", "set", "healing", "off"]).unwrap();
        let Command::Cluster(ClusterCommand::Set(s)) = cli.command else {
            panic!("not cluster set")
        };
        assert_eq!((s.switch, s.position), (SwitchName::Healing, OnOff::Off));
        assert_eq!(s.switch.as_str(), "healing");
        assert!(s.clusters.is_empty(), "one cluster: --state-dir's");
        // Several clusters at once (2012, 6:55PM), comma-separated or repeated.
        let cli = Cli::try_parse_from([
            "fabricctl",
            "cluster",
            "set",
            "management",
            "off",
            "--clusters",
            "a,b",
            "--clusters",
            "c",
        ])
        .unwrap();
        let Command::Cluster(ClusterCommand::Set(s)) = cli.command else {
            panic!("not cluster set")
        };
        assert_eq!(s.clusters, ["a", "b", "c"].map(PathBuf::from));
        for (name, switch) in [
            ("updates", SwitchName::Updates),
            ("management", SwitchName::Management),
        ] {
            let cli = Cli::try_parse_from(["fabricctl", "cluster", "set", name, "on"]).unwrap();
            assert!(
                matches!(cli.command, Command::Cluster(ClusterCommand::Set(s)) if s.switch == switch && s.position.is_on())
            );
            assert_eq!(switch.as_str(), name);
        }
        for bad in [
            &["fabricctl", "node", "repair"][..],
            &["fabricctl", "cluster", "set", "healing"],
            &["fabricctl", "cluster", "set", "brakes", "on"],
            &["fabricctl", "cluster", "set", "healing", "yes"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn management_commands() {
        let cli =
            Cli::try_parse_from(["fabricctl", "deploy", "examples/web/service.toml"]).unwrap();
        let Command::Deploy(d) = cli.command else {
            panic!("not deploy")
        };
        assert_eq!(d.file, PathBuf::from("examples/web/service.toml"));
        let cli = Cli::try_parse_from(["fabricctl", "scale", "web", "frontend", "3"]).unwrap();
        let Command::Scale(s) = cli.command else {
            panic!("not scale")
        };
        assert_eq!(
            (s.name.as_str(), s.role.as_str(), s.instances),
            ("web", "frontend", 3)
        );
        let cli = Cli::try_parse_from(["fabricctl", "delete", "web"]).unwrap();
        assert!(matches!(cli.command, Command::Delete(DeleteArgs { name }) if name == "web"));
        assert!(Cli::try_parse_from(["fabricctl", "scale", "web", "frontend", "-1"]).is_err());
    }

    #[test]
    fn chaos_commands() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["fabricctl", "chaos"];
            argv.extend_from_slice(args);
            match Cli::try_parse_from(argv).map(|c| c.command) {
                Ok(Command::Chaos(c)) => Ok(c),
                Ok(other) => panic!("not chaos: {other:?}"),
                Err(e) => Err(e),
            }
        };
        for (verb, node) in [
            ("power-off", "host-1"),
            ("power-on", "host-2"),
            ("kill-agent", "host-3"),
            ("pause", "host-4"),
            ("resume", "host-5"),
        ] {
            let c = parse(&[verb, node]).unwrap();
            let got = match c {
                ChaosCommand::PowerOff(a)
                | ChaosCommand::PowerOn(a)
                | ChaosCommand::KillAgent(a)
                | ChaosCommand::Pause(a)
                | ChaosCommand::Resume(a) => a.node,
                other => panic!("{verb}: {other:?}"),
            };
            assert_eq!(got, node);
            assert!(parse(&[verb]).is_err(), "{verb} without a node");
        }
        assert!(
            matches!(parse(&["kill-guest", "web.api.0"]).unwrap(), ChaosCommand::KillGuest(a) if a.instance == "web.api.0")
        );
        assert!(matches!(parse(&["kill-fc"]).unwrap(), ChaosCommand::KillFc));
        assert!(parse(&["kill-fc", "extra"]).is_err());
        assert!(parse(&["unplug", "host-1"]).is_err());
    }

    #[test]
    fn supervise_and_pki_commands() {
        let cli = Cli::try_parse_from([
            "fabricctl",
            "supervise",
            "--restart-delay",
            "500ms",
            "/bin/host-agent",
            "--",
            "--node",
            "host-a1",
        ])
        .unwrap();
        let Command::Supervise(s) = cli.command else {
            panic!("not supervise")
        };
        assert_eq!(s.restart_delay, Duration::from_millis(500));
        assert_eq!(s.program, PathBuf::from("/bin/host-agent"));
        assert_eq!(s.args, ["--node", "host-a1"]);
        assert_eq!(s.log, PathBuf::from("/dev/stdout"));
        assert!(Cli::try_parse_from(["fabricctl", "supervise"]).is_err());
        let cli = Cli::try_parse_from([
            "fabricctl",
            "pki",
            "init",
            "--dir",
            "/pki",
            "--cluster",
            "a",
            "--hosts",
            "h1,h2",
        ])
        .unwrap();
        let Command::Pki(PkiCommand::Init(p)) = cli.command else {
            panic!("not pki init")
        };
        assert_eq!(p.hosts, ["h1", "h2"]);
        assert_eq!(
            (p.server_name.as_str(), p.managed_by.as_str()),
            ("localhost", "docker-compose")
        );
        assert!(Cli::try_parse_from(["fabricctl", "pki", "init", "--dir", "/pki"]).is_err());
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli = Cli::try_parse_from([
            "fabricctl",
            "status",
            "-o",
            "json",
            "--endpoint",
            "https://h:1",
        ])
        .unwrap();
        assert_eq!(cli.global.endpoint.as_deref(), Some("https://h:1"));
        assert!(matches!(
            cli.command,
            Command::Status(StatusArgs {
                output: Output::Json,
                ..
            })
        ));
    }
}
