//! `cert-expiry-2013`: a certificate in production runs out.
//!
//! In 2013 certificates expired in production: alerts watched the secret
//! store, not what was served, and nobody rotated in time. Here a service
//! is deployed with a certificate that expires in 200 days, and the
//! controller watches what the roles serve: a warning 180 days ahead, an
//! incident at 90. First nobody acts: the certificate expires and every
//! client refuses the endpoint until someone redeploys. Then the operator
//! rotates at the warning: no incident, clients never see an expired
//! certificate. A day of cluster time is a simulated hour step.
//!
//! Parts: fabric-core/src/expiry.rs (the watch),
//! fabricctl deploy (rotation), guest-agent/src/cert_resolver.rs (the role
//! swaps the served certificate without a restart).

use super::{Line, Outcome, Phase, Report, line, service};
use crate::{SimConfig, World};
use fabric_core::{CoreConfig, EventKind};
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);
/// 2013-02-22T00:00:00Z.
const START: u64 = 1_361_491_200;

fn phase(rotate_at_warning: bool) -> Phase {
    let start_wall = SystemTime::UNIX_EPOCH + Duration::from_secs(START);
    let mut w = World::new(SimConfig {
        core: CoreConfig {
            heartbeat_interval: Duration::from_secs(3600),
            node_timeout: Duration::from_secs(3 * 3600),
            unresponsive_grace: Duration::from_secs(3 * 3600),
            ..CoreConfig::default()
        },
        hosts: 4,
        step: Duration::from_secs(3600),
        start: start_wall,
        ..SimConfig::default()
    });
    let start = w.now.mono;
    let mut not_after = start_wall + DAY * 200;
    w.deploy(service("storefront", 2, not_after))
        .expect("deploy");
    let mut expired_served = Duration::ZERO;
    let mut rotated = false;
    let mut timeline: Vec<Line> = Vec::new();
    let mut seen = w.events.len();
    while w.now.mono - start < DAY * 220 {
        w.step();
        for e in &w.events[seen..] {
            if matches!(
                e.kind,
                EventKind::CertificateWarning
                    | EventKind::CertificateIncident
                    | EventKind::CertificateExpired
                    | EventKind::DeploymentRotated
            ) {
                timeline.push(line(e, start));
            }
        }
        let warned = w.events[seen..]
            .iter()
            .any(|e| e.kind == EventKind::CertificateWarning);
        seen = w.events.len();
        if rotate_at_warning && warned && !rotated {
            // The operator rotates: a new certificate, valid for a year.
            not_after = w.now.wall + DAY * 365;
            let mut spec = service("storefront", 2, not_after);
            spec.roles[0].certificates[0].fingerprint = "f".repeat(64);
            w.deploy(spec).expect("rotate");
            rotated = true;
        }
        if w.now.wall >= not_after {
            expired_served += w.config.step;
        }
    }
    let certificate_events = w
        .events
        .iter()
        .filter(|e| e.kind.as_str().starts_with("certificate."))
        .map(|e| (e.at.mono - start, e.kind.as_str().to_owned()))
        .collect();
    if expired_served > Duration::ZERO {
        timeline.push(Line {
            at: w.now.mono - start,
            text: format!(
                "clients refused the expired certificate for {} days (TLS handshakes fail: certificate expired)",
                expired_served.as_secs() / 86_400
            ),
        });
    }
    Phase {
        title: if rotate_at_warning {
            "the operator rotates at the 180-day warning".into()
        } else {
            "nobody rotates (2013)".into()
        },
        timeline,
        outcome: Outcome {
            certificate_events,
            expired_served_for: expired_served,
            ..Outcome::default()
        },
        ..Default::default()
    }
}

pub fn run() -> Report {
    let ignored = phase(false);
    let rotated = phase(true);
    let kinds = |p: &Phase| {
        p.outcome
            .certificate_events
            .iter()
            .map(|(t, k)| format!("{k} {}", super::clock(*t)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let summary = vec![
        "2013: alert 180 days ahead, an incident under 90; watch what is served".to_owned(),
        format!(
            "nobody rotates: {}; expired certificate served for {} days",
            kinds(&ignored),
            ignored.outcome.expired_served_for.as_secs() / 86_400
        ),
        format!(
            "rotated at the warning: {}; expired certificate served for {} days",
            kinds(&rotated),
            rotated.outcome.expired_served_for.as_secs() / 86_400
        ),
    ];
    Report {
        name: "cert-expiry-2013",
        phases: vec![ignored, rotated],
        summary,
        ..Default::default()
    }
}
