//! The healing and Human Investigate settings `up` hands to the controller.
//!
//! Like the guest settings ([`super::guest`]), they are checked before
//! anything starts: a bad `--hi-threshold` is one line from fabricctl, not a
//! controller exiting in a restart loop.

use crate::cli::UpArgs;
use crate::error::CtlError;
use std::time::Duration;

/// Checks `--hi-threshold`: a positive node count ("2") or a share of the
/// nodes from 1% to 100% ("20%"). Returns it as the controller expects it.
pub fn parse_hi_threshold(text: &str) -> Result<String, String> {
    let text = text.trim();
    let shape = || format!("{text:?} must be a node count like 2 or a percentage like 20%");
    match text.strip_suffix('%') {
        Some(p) => match p.trim().parse::<u32>() {
            Ok(p) if (1..=100).contains(&p) => Ok(format!("{p}%")),
            Ok(_) => Err(format!("{text:?} must be between 1% and 100%")),
            Err(_) => Err(shape()),
        },
        None => match text.parse::<u32>() {
            Ok(0) => Err(format!("{text:?} must be at least 1 node")),
            Ok(n) => Ok(n.to_string()),
            Err(_) => Err(shape()),
        },
    }
}

/// Checks the healing flags of `args`.
pub fn validate(args: &UpArgs) -> Result<(), CtlError> {
    let bad = |flag, detail: String| Err(CtlError::BadFlag { flag, detail });
    if let Err(detail) = parse_hi_threshold(&args.hi_threshold) {
        return bad("--hi-threshold", detail);
    }
    if args.healing_concurrency < 1 {
        return bad("--healing-concurrency", "must be at least 1".into());
    }
    if args.software_fault_min_nodes < 2 {
        return bad(
            "--software-fault-min-nodes",
            "must be at least 2 (one server is not a pattern)".into(),
        );
    }
    Ok(())
}

/// The fabric-controller flags for the healing settings of `args` (call
/// [`validate`] first).
pub fn controller_args(args: &UpArgs) -> Vec<String> {
    let threshold =
        parse_hi_threshold(&args.hi_threshold).unwrap_or_else(|_| args.hi_threshold.clone());
    vec![
        "--hi-threshold".into(),
        threshold,
        "--unresponsive-grace".into(),
        duration(args.unresponsive_grace),
        "--healing-concurrency".into(),
        args.healing_concurrency.to_string(),
        "--fault-classification".into(),
        args.fault_classification.is_on().to_string(),
        "--classification-hold".into(),
        duration(args.classification_hold),
        "--software-fault-min-nodes".into(),
        args.software_fault_min_nodes.to_string(),
        // Whole seconds: humantime would print 180 days as "5months 27days ...".
        "--certificate-warning".into(),
        format!("{}s", args.certificate_warning.as_secs()),
        "--certificate-incident".into(),
        format!("{}s", args.certificate_incident.as_secs()),
    ]
}

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
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
            controller_args(&a).join(" "),
            "--hi-threshold 2 --unresponsive-grace 10s --healing-concurrency 16 \
             --fault-classification true --classification-hold 20s --software-fault-min-nodes 2 \
             --certificate-warning 15552000s --certificate-incident 7776000s"
        );
    }

    #[test]
    fn every_flag_is_passed_on() {
        let a = up(&[
            "--hi-threshold",
            " 20% ",
            "--unresponsive-grace",
            "1m",
            "--healing-concurrency",
            "1",
            "--fault-classification",
            "off",
            "--classification-hold",
            "500ms",
            "--software-fault-min-nodes",
            "3",
            "--certificate-warning",
            "40s",
            "--certificate-incident",
            "20s",
        ]);
        validate(&a).unwrap();
        assert_eq!(
            controller_args(&a).join(" "),
            "--hi-threshold 20% --unresponsive-grace 1m --healing-concurrency 1 \
             --fault-classification false --classification-hold 500ms --software-fault-min-nodes 3 \
             --certificate-warning 40s --certificate-incident 20s"
        );
    }

    #[test]
    fn hi_thresholds() {
        assert_eq!(parse_hi_threshold("3").unwrap(), "3");
        assert_eq!(parse_hi_threshold("1%").unwrap(), "1%");
        assert_eq!(parse_hi_threshold("100%").unwrap(), "100%");
        assert_eq!(parse_hi_threshold("20 %").unwrap(), "20%");
        for bad in ["0", "0%", "101%", "-1", "x", "", "%", "2.5", "20%%"] {
            assert!(parse_hi_threshold(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_values_are_clear() {
        assert_eq!(
            error(&["--hi-threshold", "0"]),
            "invalid --hi-threshold: \"0\" must be at least 1 node"
        );
        assert_eq!(
            error(&["--hi-threshold", "150%"]),
            "invalid --hi-threshold: \"150%\" must be between 1% and 100%"
        );
        assert_eq!(
            error(&["--hi-threshold", "many"]),
            "invalid --hi-threshold: \"many\" must be a node count like 2 or a percentage like 20%"
        );
        assert_eq!(
            error(&["--healing-concurrency", "0"]),
            "invalid --healing-concurrency: must be at least 1"
        );
        assert_eq!(
            error(&["--software-fault-min-nodes", "1"]),
            "invalid --software-fault-min-nodes: must be at least 2 (one server is not a pattern)"
        );
        // Not a switch position or a duration: clap refuses before validation.
        for bad in [
            &["--fault-classification", "maybe"][..],
            &["--unresponsive-grace", "soon"],
            &["--classification-hold", "-1s"],
        ] {
            let mut argv = vec!["fabricctl", "up"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }
}
