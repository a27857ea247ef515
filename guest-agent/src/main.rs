//! The guest agent process.
//!
//! `run` is the agent a host agent starts in each VM (see `guest_agent::run`);
//! `make-transfer-cert` only creates a transfer certificate, which lets operators replay the 2012
//! leap day failure with `--leap-day-bug` without a host agent. Both exit 1 on failure.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use guest_agent::calendar::CalendarClock;
use guest_agent::role_binding::RoleBinding;
use guest_agent::run::RunConfig;
use guest_agent::{TransferCert, write_transfer_cert};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Debug, Parser)]
#[command(
    name = "guest-agent",
    version,
    about = "Fabric guest agent (one per VM)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create this VM's transfer certificate and private key.
    MakeTransferCert(MakeTransferCertArgs),
    /// Run the agent of one VM: connect to the host agent, install secrets, serve the role.
    ///
    /// The one-time start token is read from the environment variable FABRIC_GUEST_TOKEN, never
    /// from the command line (argv is visible to every user in ps).
    Run(RunArgs),
}

/// Environment variable holding the start token.
const TOKEN_ENV: &str = "FABRIC_GUEST_TOKEN";

#[derive(Debug, Args)]
struct RunArgs {
    /// The VM id, <deployment>.<role>.<index>.
    #[arg(long)]
    vm_id: String,
    /// The VM incarnation.
    #[arg(long)]
    incarnation: u64,
    /// The host agent's GuestService URL, e.g. https://127.0.0.1:7001.
    #[arg(long)]
    host_agent: String,
    /// The TLS server name the host agent's certificate must carry.
    #[arg(long, default_value = "localhost")]
    host_agent_name: String,
    /// The cluster CA certificate (PEM) used to verify the host agent.
    #[arg(long)]
    ca: PathBuf,
    /// The VM directory; secrets are written under DIR/secrets/ with mode 0600.
    #[arg(long)]
    vm_dir: PathBuf,
    /// The node id, shown in the role's JSON.
    #[arg(long)]
    node: String,
    /// The IP the agent's gRPC server binds (port 0), and the role's endpoint unless
    /// --role-listen-ip says otherwise.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::LOCALHOST))]
    listen_ip: IpAddr,
    /// The IP the role's HTTPS endpoint binds (default: --listen-ip).
    #[arg(long)]
    role_listen_ip: Option<IpAddr>,
    /// Lowest port the role may bind; with --role-port-max, the role takes the first free port
    /// of the range (e.g. the ports a container publishes) instead of any free port.
    #[arg(long, requires = "role_port_max")]
    role_port_min: Option<u16>,
    /// Highest port the role may bind (see --role-port-min).
    #[arg(long, requires = "role_port_min")]
    role_port_max: Option<u16>,
    /// The IP to report as the role endpoint's, when clients reach it by another address than
    /// the bound one (e.g. 127.0.0.1 where a container's ports are published).
    #[arg(long)]
    role_advertise_ip: Option<IpAddr>,
    /// Start the calendar clock at this instant (RFC 3339); it then advances in real time.
    #[arg(long, value_parser = parse_rfc3339)]
    now: Option<OffsetDateTime>,
    /// Compute the transfer certificate's valid-to the 2012 way (fails on Feb 29) and exit as
    /// the 2012 guest agent did.
    #[arg(long)]
    leap_day_bug: bool,
    /// Do not report an init failure to the host agent before exiting (the 2012 behaviour).
    #[arg(long)]
    silent_failures: bool,
    /// How long the VM takes to boot before its guest agent starts (a modelled delay; a
    /// process starts in milliseconds where a VM takes tens of seconds).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    boot_time: std::time::Duration,
}

#[derive(Debug, Args)]
struct MakeTransferCertArgs {
    /// The current time, RFC 3339 (e.g. 2012-02-29T00:00:00Z); defaults to the system clock.
    #[arg(long, value_parser = parse_rfc3339)]
    now: Option<OffsetDateTime>,
    /// Directory to write transfer.pem and transfer.key (0600) into; created if missing.
    #[arg(long)]
    out: PathBuf,
    /// The VM's identifier, put in the certificate's common name.
    #[arg(long, default_value = "vm-0")]
    vm_id: String,
    /// The VM's incarnation, put in the certificate's common name.
    #[arg(long, default_value_t = 1)]
    incarnation: u64,
    /// Compute valid-to the 2012 way (year + 1): fails on Feb 29, as the 2012 guest agent did.
    #[arg(long)]
    leap_day_bug: bool,
}

fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::MakeTransferCert(args) => make_transfer_cert(args),
        Command::Run(args) => run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Like the 2012 agent: a guest agent without a transfer certificate terminates.
            eprintln!("guest-agent: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    // Logs go to stderr (stdout stays free for command output); RUST_LOG overrides "info".
    // The host agent sends stderr to a log file, where colour codes would only be noise.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let role = role_binding(&args)?;
    let start_token = std::env::var(TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
        .with_context(|| {
            format!("{TOKEN_ENV} is not set: the host agent passes the start token there")
        })?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        // The clock starts inside the runtime: it measures elapsed time with tokio's clock.
        let clock = match args.now {
            Some(now) => CalendarClock::starting_at(now),
            None => CalendarClock::system(),
        };
        let config = RunConfig {
            vm_id: args.vm_id,
            incarnation: args.incarnation,
            host_agent_url: args.host_agent,
            host_agent_name: args.host_agent_name,
            ca_path: args.ca,
            vm_dir: args.vm_dir,
            node: args.node,
            listen_ip: args.listen_ip,
            role,
            clock,
            leap_day_bug: args.leap_day_bug,
            silent_failures: args.silent_failures,
            boot_time: args.boot_time,
            start_token,
        };
        guest_agent::run::run(config, fabric_daemon::shutdown::signal()).await
    })?;
    Ok(())
}

/// The role's binding from the flags; a reversed port range is refused here, before any work.
fn role_binding(args: &RunArgs) -> anyhow::Result<RoleBinding> {
    let ports = match (args.role_port_min, args.role_port_max) {
        (Some(min), Some(max)) if min > max => {
            anyhow::bail!("--role-port-min {min} is above --role-port-max {max}")
        }
        (Some(min), Some(max)) => Some((min, max)),
        _ => None,
    };
    Ok(RoleBinding {
        ip: args.role_listen_ip.unwrap_or(args.listen_ip),
        ports,
        advertise_ip: args.role_advertise_ip,
    })
}

fn make_transfer_cert(args: MakeTransferCertArgs) -> anyhow::Result<()> {
    let now = args.now.unwrap_or_else(OffsetDateTime::now_utc);
    let cert = TransferCert::generate(now, &args.vm_id, args.incarnation, args.leap_day_bug)
        .context("creating the transfer certificate")?;
    let files = write_transfer_cert(&args.out, &cert)
        .with_context(|| format!("writing the transfer certificate to {}", args.out.display()))?;
    // Only public facts: the private key stays in its 0600 file.
    println!("certificate: {}", files.cert_path.display());
    println!("private key: {}", files.key_path.display());
    println!("fingerprint (sha256): {}", cert.fingerprint_sha256());
    println!("not before: {}", cert.not_before().format(&Rfc3339)?);
    println!("not after: {}", cert.not_after().format(&Rfc3339)?);
    Ok(())
}
