//! Fabric's command line.
//!
//! `fabricctl up` runs a whole local cluster (a fabric controller and N host
//! agents, supervised like an init system); `status`, `events`, `deploy`,
//! `scale`, `delete`, `node` and `cluster` talk to a fabric controller over
//! mutual TLS with the admin certificate.
//!
//! - [`cli`]: the command line (clap).
//! - [`context`]: `<state>/context.json`, how later commands find the cluster.
//! - [`target`]: which controller to call and the mTLS channel to it.
//! - [`error`]: one-line, human error messages for every failure.
//! - [`status`], [`events`]: the read-only commands and their output formats.
//! - [`definition`]: service definition files (TOML) and the PEMs they name.
//! - [`deploy`], [`scale`], [`delete`]: service management;
//!   [`instances`] shows role instances for them and for `status`.
//! - [`node`], [`cluster`]: the operator's side of Human Investigate
//!   (repair a node, resume the cluster) and the degradation switches.
//! - [`chaos`]: faults by name on a local cluster (power-off, kill-agent,
//!   kill-guest, pause, kill-fc).
//! - [`watch`]: a WatchEvents subscription that survives controller restarts.
//! - [`up`]: the local cluster launcher and supervisor.
//! - [`scenario`]: the 2009, 2012 and 2013 incidents, simulated or on real
//!   local clusters of their own.
//! - [`https`]: a client's HTTPS view of a role endpoint (pinned or CA-checked).
//! - [`supervise`]: one program under that supervisor (a host container's init).
//! - [`pki_init`]: a cluster's certificates and an operator context, for
//!   docker-compose.
//! - [`bins`], [`output`], [`timefmt`]: finding daemon binaries, writing to
//!   stdout safely, formatting times.

pub mod bins;
pub mod chaos;
pub mod cli;
pub mod cluster;
pub mod context;
pub mod definition;
pub mod delete;
pub mod deploy;
pub mod error;
pub mod events;
pub use fabric_daemon::https;
pub mod instances;
pub mod node;
pub mod output;
pub mod package;
pub mod pki_init;
pub mod scale;
pub mod scenario;
pub mod status;
pub mod status_lines;
pub mod supervise;
pub mod target;
pub mod timefmt;
pub mod up;
pub mod update;
pub mod watch;

use cli::{Cli, ClusterCommand, Command, NodeCommand, PkiCommand};
use std::process::ExitCode;

/// Runs one command line to completion and returns the process exit code.
/// Failures print a single `fabricctl: ...` line on stderr.
pub fn main_with(cli: Cli) -> ExitCode {
    init_tracing();
    fabric_pki::install_crypto_provider();
    // A current-thread runtime on the main thread: children are spawned from
    // this thread, and PR_SET_PDEATHSIG fires when the *thread* that forked
    // them exits, so it must be the one that lives as long as the process.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fabricctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fabricctl: {}", error::one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Up(args) => up::run(&cli.global, args).await,
        Command::Status(args) => status::run(&cli.global, args).await,
        Command::Events(args) => events::run(&cli.global, args).await,
        Command::Deploy(args) => deploy::run(&cli.global, args).await,
        Command::Delete(args) => delete::run(&cli.global, args).await,
        Command::Scale(args) => scale::run(&cli.global, args).await,
        Command::Node(NodeCommand::Repair(args)) => node::run(&cli.global, args).await,
        Command::Cluster(ClusterCommand::Resume) => cluster::resume(&cli.global).await,
        Command::Cluster(ClusterCommand::Set(args)) => cluster::set(&cli.global, args).await,
        Command::Cluster(ClusterCommand::Recover(args)) => {
            cluster::recover(&cli.global, args).await
        }
        Command::Package(command) => package::run(&cli.global, command).await,
        Command::Update(command) => update::run(&cli.global, command).await,
        Command::Chaos(command) => chaos::run(&cli.global, command).await,
        Command::Pki(PkiCommand::Init(args)) => pki_init::run(args),
        Command::Supervise(args) => supervise::run(args).await,
        Command::Scenario(command) => scenario::run(&cli.global, command).await,
    }
}

/// fabricctl's own diagnostics go to stderr, filtered by `FABRICCTL_LOG`
/// (default `warn`); `RUST_LOG` is left to the daemons.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FABRICCTL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
