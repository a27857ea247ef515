//! The guest agent process.
//!
//! Today it only creates transfer certificates (`make-transfer-cert`), which also lets operators
//! replay the 2012 leap day failure with `--leap-day-bug`. The long-running agent that connects to
//! its host agent will be a further subcommand (`run`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
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
