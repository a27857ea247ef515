//! `cert-expiry-2013`: the certificates were renewed, in the wrong place.
//!
//! In 2013 the team *did* rotate: "On January 7th, 2013 the storage team
//! updated the three certificates in the Secret Store and included them in
//! a future release of the service", but the release was not flagged as
//! carrying certificates, waited behind others, and was not deployed in
//! time. The Secret Store's alerts watched the store, so once it held the
//! new certificates "no additional alerts were presented". Three
//! certificates, the same in every region, "expired within three minutes of
//! each other".
//!
//! Here three storage services (blob, table, queue) serve certificates that
//! expire within three minutes of each other, 200 days after the start.
//! A model of the Secret Store (this file's `SecretStore`) scans weekly and
//! notifies from 180 days ahead until the store holds newer certificates.
//! Both phases renew in the store on "January 7th", 46 days before expiry.
//!
//! - As in 2013: nothing watches what is served (the controller's
//!   certificate windows are off), the release goes out half a day after
//!   the expiry, and every client refuses the endpoints until then.
//! - With Fabric: at deploy the controller names certificates of different
//!   services expiring together (`certificate.together`: "partition the
//!   certificates ... across time"); its watch reads the certificates the
//!   roles serve (`fabric-core/src/expiry.rs`): a warning 180 days ahead, an
//!   incident at 90 ("less than 3 months ... will create an operational
//!   incident"), and renewing the store does not clear it: only a deploy of
//!   the new certificates does. The open incident flags the release, which
//!   goes out the day after the store is renewed.
//!
//! The `UP` column counts role instances whose served certificate a
//! date-checking client accepts.

use super::{Line, Outcome, Phase, Report, line};
use crate::{SimConfig, World};
use fabric_core::{CertificateInfo, CoreConfig, DeploymentSpec, EventKind, Name, RoleSpec};
use std::time::{Duration, SystemTime};

const DAY: Duration = Duration::from_secs(86_400);
/// The replay's start: 200 days before the expiry.
const START: u64 = 1_344_124_800;
/// The three certificates expire this long after the start, the second
/// and third 1 and 3 minutes later.
const EXPIRY: Duration = Duration::from_secs(200 * 86_400);
const SPREAD: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(60),
    Duration::from_secs(180),
];
const SERVICES: [&str; 3] = ["blob", "table", "queue"];
/// "January 7th": 46 days before the expiry (the postmortem dates the
/// renewal, not the expiry; the replay places it so).
const RENEWED_IN_STORE: Duration = Duration::from_secs(154 * 86_400);
/// As in 2013, the release with the new certificates is deployed this long
/// after the expiry (the outage "lasted about a day").
const LATE_RELEASE: Duration = Duration::from_secs(12 * 3600);

/// The postmortem's words, at the replay's times (the renewal date is the
/// postmortem's; the others are placed by the replay's own calendar).
const MILESTONES: &[(Duration, &str)] = &[
    (
        Duration::from_secs(20 * 86_400),
        "Alerts of pending expirations are sent to the teams managing the service starting \
         180 days in advance.",
    ),
    (
        RENEWED_IN_STORE,
        "On January 7th, 2013 the storage team updated the three certificates in the Secret \
         Store and included them in a future release of the service. However, the team failed \
         to flag the storage service release as a release that included certificate updates.",
    ),
    (
        RENEWED_IN_STORE,
        "because the certificate had already been updated in the Secret Store, no additional \
         alerts were presented to the team",
    ),
    (
        EXPIRY,
        "The certificates in question all expired within three minutes of each other",
    ),
];

/// The 2013 Secret Store, as the postmortem describes it: "scanning occurs
/// on a weekly basis"; notices "starting 180 days in advance" for the
/// certificates *it* holds.
struct SecretStore {
    /// The expiry of what the store holds, per certificate.
    holds: Vec<SystemTime>,
    last_scan: Option<Duration>,
}

impl SecretStore {
    /// A weekly scan's notice at `now`, if one is due and a certificate the
    /// store holds is within 180 days.
    fn scan(&mut self, since_start: Duration, wall: SystemTime) -> Option<String> {
        if self
            .last_scan
            .is_some_and(|t| since_start.saturating_sub(t) < DAY * 7)
        {
            return None;
        }
        self.last_scan = Some(since_start);
        let soon: Vec<u64> = self
            .holds
            .iter()
            .filter_map(|t| t.duration_since(wall).ok())
            .filter(|left| *left <= DAY * 180)
            .map(|left| left.as_secs() / 86_400)
            .collect();
        let first = soon.iter().min()?;
        Some(format!(
            "Secret Store weekly scan: {} certificate(s) expire in {first} days: notice to the \
             owning team",
            soon.len()
        ))
    }
}

/// A storage service with one role of two instances serving certificate
/// `fingerprint`, valid to `not_after`.
fn storage(name: &str, not_after: SystemTime, fingerprint: char) -> DeploymentSpec {
    DeploymentSpec {
        priority: 0,
        name: Name::parse("deployment", name).expect("valid name"),
        roles: vec![RoleSpec {
            guest: Default::default(),
            name: Name::parse("role", "front").expect("valid name"),
            instances: 2,
            certificates: vec![CertificateInfo {
                name: "https".into(),
                fingerprint: fingerprint.to_string().repeat(64),
                not_after,
            }],
        }],
    }
}

/// What one phase showed, beside its [`Outcome`].
struct Facts {
    store_notices: usize,
    /// When the store stopped sending notices (it was renewed).
    store_silent_from: Option<Duration>,
}

fn phase(fabric: bool) -> (Phase, Facts) {
    let start_wall = SystemTime::UNIX_EPOCH + Duration::from_secs(START);
    let mut core = CoreConfig {
        heartbeat_interval: Duration::from_secs(3600),
        node_timeout: Duration::from_secs(3 * 3600),
        unresponsive_grace: Duration::from_secs(3 * 3600),
        ..CoreConfig::default()
    };
    if !fabric {
        // 2013: nothing watched the production endpoints.
        core.certificate_warning = Duration::ZERO;
        core.certificate_incident = Duration::ZERO;
        core.certificate_spread = Duration::ZERO;
    }
    let mut w = World::new(SimConfig {
        core,
        hosts: 4,
        step: Duration::from_secs(3600),
        start: start_wall,
        ..SimConfig::default()
    });
    let start = w.now.mono;
    let expiries: Vec<SystemTime> = SPREAD.iter().map(|d| start_wall + EXPIRY + *d).collect();
    // The deploys' own events (certificates expiring together) count.
    let first_event = w.events.len();
    for (name, not_after) in SERVICES.iter().zip(&expiries) {
        w.deploy(storage(name, *not_after, 'a')).expect("deploy");
    }
    let mut store = SecretStore {
        holds: expiries.clone(),
        last_scan: None,
    };
    let mut served = expiries.clone();
    let instances = SERVICES.len() * 2;
    let mut timeline: Vec<Line> = Vec::new();
    let mut serving: Vec<(Duration, usize)> = Vec::new();
    let mut facts = Facts {
        store_notices: 0,
        store_silent_from: None,
    };
    let mut released = None;
    let mut seen = first_event;
    while w.now.mono - start < EXPIRY + DAY * 2 {
        w.step();
        let at = w.now.mono - start;
        for e in &w.events[seen..] {
            if e.kind.as_str().starts_with("certificate.") || e.kind == EventKind::DeploymentRotated
            {
                timeline.push(line(e, start));
            }
        }
        seen = w.events.len();
        if let Some(notice) = store.scan(at, w.now.wall) {
            facts.store_notices += 1;
            timeline.push(Line { at, text: notice });
        }
        // January 7th: renewed in the store, and put in a release.
        if at >= RENEWED_IN_STORE && facts.store_silent_from.is_none() {
            store.holds = expiries.iter().map(|t| *t + DAY * 365).collect();
            facts.store_silent_from = Some(at);
            timeline.push(Line {
                at,
                text: "the Secret Store holds the renewed certificates; the release carrying \
                       them is not flagged and waits behind others"
                    .into(),
            });
        }
        // The release goes out: late as in 2013, or flagged by Fabric's
        // open incident the day after the renewal.
        let due = if fabric {
            let incident_open = w
                .core
                .expiring_certificates(w.now.wall)
                .iter()
                .any(|c| c.level >= fabric_core::expiry::ExpiryLevel::Incident);
            incident_open && at >= RENEWED_IN_STORE + DAY
        } else {
            at >= EXPIRY + LATE_RELEASE
        };
        if due && released.is_none() {
            released = Some(at);
            served = expiries.iter().map(|t| *t + DAY * 365).collect();
            timeline.push(Line {
                at,
                text: if fabric {
                    "the release is deployed: an open certificate incident flags it".into()
                } else {
                    "the release with the renewed certificates is finally deployed".into()
                },
            });
            for (name, not_after) in SERVICES.iter().zip(&served) {
                w.deploy(storage(name, *not_after, 'b')).expect("rotate");
            }
        }
        let up = served.iter().filter(|t| w.now.wall < **t).count() * 2;
        if serving.last().is_none_or(|(_, n)| *n != up) {
            serving.push((at, up));
        }
    }
    let refused: Duration = serving
        .iter()
        .zip(
            serving
                .iter()
                .skip(1)
                .map(|(t, _)| *t)
                .chain([w.now.mono - start]),
        )
        .filter(|((_, n), _)| *n < instances)
        .map(|((from, _), to)| to.saturating_sub(*from))
        .sum();
    let certificate_events = w
        .events
        .iter()
        .filter(|e| e.kind.as_str().starts_with("certificate."))
        .map(|e| (e.at.mono - start, e.kind.as_str().to_owned()))
        .collect();
    timeline.sort_by_key(|l| l.at);
    let title = if fabric {
        "with Fabric: the controller watches what the roles serve; the store renewed on Jan 7 \
         changes nothing until a deploy does"
    } else {
        "as in 2013: renewed in the Secret Store on Jan 7, alerts watch the store, the release \
         waits"
    };
    (
        Phase {
            title: title.into(),
            timeline,
            outcome: Outcome {
                certificate_events,
                expired_served_for: refused,
                ..Outcome::default()
            },
            milestones: MILESTONES
                .iter()
                .map(|(at, text)| Line {
                    at: *at,
                    text: (*text).into(),
                })
                .collect(),
            serving,
            instances,
        },
        facts,
    )
}

pub fn run() -> Report {
    let (then, then_facts) = phase(false);
    let (now, now_facts) = phase(true);
    let kinds = |p: &Phase| {
        let mut seen: Vec<String> = Vec::new();
        for (t, k) in &p.outcome.certificate_events {
            let text = format!("{k} day {}", t.as_secs() / 86_400);
            if !seen.contains(&text) {
                seen.push(text);
            }
        }
        if seen.is_empty() {
            "none".to_owned()
        } else {
            seen.join(", ")
        }
    };
    let summary = vec![
        "2013: renewed in the Secret Store on Jan 7; the store's alerts stopped; the release was \
         late; three certificates expired within three minutes"
            .to_owned(),
        format!(
            "as in 2013: {} store notices, none after day {}; controller events: {}; clients \
             refused for {:.1} hours",
            then_facts.store_notices,
            then_facts
                .store_silent_from
                .map_or(0, |t| t.as_secs() / 86_400),
            kinds(&then),
            then.outcome.expired_served_for.as_secs_f64() / 3600.0
        ),
        format!(
            "with Fabric: {} store notices (the same); controller events: {}; clients refused \
             for {:.1} hours",
            now_facts.store_notices,
            kinds(&now),
            now.outcome.expired_served_for.as_secs_f64() / 3600.0
        ),
    ];
    Report {
        name: "cert-expiry-2013",
        phases: vec![then, now],
        summary,
        source: "2013",
        invented: vec![
            "the calendar: the postmortem dates the renewal (January 7th), not the expiry; the \
             replay puts the expiry 46 days later and starts 200 days before it"
                .into(),
            "three storage services of two instances in one cluster (2013: the same \
             certificates in every region)"
                .into(),
            "how late the release was: half a day after the expiry here".into(),
            "that an open incident flags the release: the postmortem's remedy is to track \
             builds with certificate updates and treat a certificate under 3 months as a \
             Service Impacting Event"
                .into(),
        ],
        ..Default::default()
    }
}
