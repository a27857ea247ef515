//! The guest-agent settings `up` hands to every host agent.
//!
//! They are checked here, before anything starts: a typo in `--guest-now`
//! should be one clear line from fabricctl, not N host agents exiting in a
//! restart loop with the same complaint in N log files.

use crate::cli::UpArgs;
use crate::error::CtlError;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The heartbeat period host agents ask of guest agents by default
/// (host-agent's `--guest-heartbeat-interval` default, and `up`'s).
pub const GUEST_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);

/// Checks the guest flags of `args`.
pub fn validate(args: &UpArgs) -> Result<(), CtlError> {
    let bad = |flag, detail: String| Err(CtlError::BadFlag { flag, detail });
    if args.guest_timeout.is_zero() {
        return bad("--guest-timeout", "must be greater than zero".into());
    }
    if args.guest_heartbeat_interval.is_zero() {
        return bad(
            "--guest-heartbeat-interval",
            "must be greater than zero".into(),
        );
    }
    // The host agent's own rule (it would exit at start, in a restart loop):
    // a guest heartbeating no faster than the timeout would be declared dead
    // between two punctual heartbeats.
    if args.guest_heartbeat_timeout <= args.guest_heartbeat_interval {
        return bad(
            "--guest-heartbeat-timeout",
            format!(
                "{} must be longer than the guests' heartbeat interval ({}, --guest-heartbeat-interval)",
                humantime::format_duration(args.guest_heartbeat_timeout),
                humantime::format_duration(args.guest_heartbeat_interval)
            ),
        );
    }
    if args.clean_vm_strikes < 1 {
        return bad("--clean-vm-strikes", "must be at least 1".into());
    }
    if args.guest_boot_time >= args.guest_timeout {
        return bad(
            "--guest-boot-time",
            format!(
                "{} must be shorter than --guest-timeout ({}), or every VM times out while it boots",
                humantime::format_duration(args.guest_boot_time),
                humantime::format_duration(args.guest_timeout)
            ),
        );
    }
    let parsed = args
        .guest_now
        .as_ref()
        .map(|text| (text, OffsetDateTime::parse(text, &Rfc3339)));
    if let Some((text, Err(e))) = parsed {
        return bad(
            "--guest-now",
            format!("{text:?} is not an RFC 3339 date-time (e.g. 2012-02-28T23:59:00Z): {e}"),
        );
    }
    Ok(())
}

/// The host-agent flags for the guest settings of `args`.
pub fn host_agent_args(args: &UpArgs) -> Vec<String> {
    let mut out: Vec<String> = vec![
        "--guest-listen".into(),
        "127.0.0.1:0".into(),
        "--guest-connect-timeout".into(),
        humantime::format_duration(args.guest_timeout).to_string(),
        "--guest-heartbeat-timeout".into(),
        humantime::format_duration(args.guest_heartbeat_timeout).to_string(),
        "--guest-heartbeat-interval".into(),
        humantime::format_duration(args.guest_heartbeat_interval).to_string(),
        "--clean-vm-strikes".into(),
        args.clean_vm_strikes.to_string(),
    ];
    if let Some(now) = &args.guest_now {
        out.extend(["--guest-now".into(), now.clone()]);
    }
    if args.leap_day_bug {
        out.push("--leap-day-bug".into());
    }
    if args.silent_guest_failures {
        out.push("--silent-guest-failures".into());
    }
    if !args.guest_boot_time.is_zero() {
        out.extend([
            "--guest-boot-time".into(),
            humantime::format_duration(args.guest_boot_time).to_string(),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn up(args: &[&str]) -> UpArgs {
        let mut argv = vec!["fabricctl", "up"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Up(up) => up,
            _ => panic!("not up"),
        }
    }

    fn error(args: &[&str]) -> String {
        validate(&up(args)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_are_valid_and_passed_on() {
        let a = up(&[]);
        validate(&a).unwrap();
        assert_eq!(
            host_agent_args(&a),
            [
                "--guest-listen",
                "127.0.0.1:0",
                "--guest-connect-timeout",
                "25m",
                "--guest-heartbeat-timeout",
                "15s",
                "--guest-heartbeat-interval",
                "3s",
                "--clean-vm-strikes",
                "3"
            ]
        );
    }

    #[test]
    fn every_flag_is_passed_on() {
        let a = up(&[
            "--guest-timeout",
            "20s",
            "--guest-heartbeat-timeout",
            "5s",
            "--guest-heartbeat-interval",
            "500ms",
            "--clean-vm-strikes",
            "2",
            "--leap-day-bug",
            "--guest-now",
            "2012-02-28T23:59:00Z",
            "--silent-guest-failures",
            "--guest-boot-time",
            "2s",
        ]);
        validate(&a).unwrap();
        assert_eq!(
            host_agent_args(&a).join(" "),
            "--guest-listen 127.0.0.1:0 --guest-connect-timeout 20s --guest-heartbeat-timeout 5s \
             --guest-heartbeat-interval 500ms --clean-vm-strikes 2 --guest-now 2012-02-28T23:59:00Z --leap-day-bug --silent-guest-failures \
             --guest-boot-time 2s"
        );
    }

    #[test]
    fn bad_values_are_clear() {
        assert_eq!(
            error(&["--clean-vm-strikes", "0"]),
            "invalid --clean-vm-strikes: must be at least 1"
        );
        assert_eq!(
            error(&["--guest-timeout", "0s"]),
            "invalid --guest-timeout: must be greater than zero"
        );
        assert_eq!(
            error(&["--guest-heartbeat-timeout", "2s"]),
            "invalid --guest-heartbeat-timeout: 2s must be longer than the guests' heartbeat interval (3s, --guest-heartbeat-interval)"
        );
        assert_eq!(
            error(&["--guest-heartbeat-interval", "15s"]),
            "invalid --guest-heartbeat-timeout: 15s must be longer than the guests' heartbeat interval (15s, --guest-heartbeat-interval)"
        );
        assert_eq!(
            error(&["--guest-heartbeat-interval", "0s"]),
            "invalid --guest-heartbeat-interval: must be greater than zero"
        );
        // A short interval allows a short timeout.
        validate(&up(&[
            "--guest-heartbeat-interval",
            "500ms",
            "--guest-heartbeat-timeout",
            "2s",
        ]))
        .unwrap();
        let e = error(&["--guest-now", "2012-02-29"]);
        assert!(
            e.starts_with(
                "invalid --guest-now: \"2012-02-29\" is not an RFC 3339 date-time (e.g. 2012-02-28T23:59:00Z): "
            ),
            "{e}"
        );
        assert!(!e.contains('\n'));
        assert_eq!(
            error(&["--guest-timeout", "3s", "--guest-boot-time", "3s"]),
            "invalid --guest-boot-time: 3s must be shorter than --guest-timeout (3s), or every VM times out while it boots"
        );
        validate(&up(&["--guest-now", "2012-02-29T00:00:00+01:00"])).unwrap();
        // Not even a duration: clap refuses it before validation.
        assert!(Cli::try_parse_from(["fabricctl", "up", "--guest-timeout", "soon"]).is_err());
    }
}
