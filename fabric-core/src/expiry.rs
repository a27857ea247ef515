//! Watching certificates expire: every deployed certificate and the
//! cluster's own (its CA and the controller's).
//!
//! The 2013 outage came from certificates that expired in production while
//! the alerts watched the secret store rather than what was served. Here the
//! controller watches the certificates the roles actually serve (the ones in
//! each deployment, which host agents hand to the guest agents) and its own:
//! a warning event `certificate_warning` before expiry (180 days by
//! default), an incident under `certificate_incident` (90 days), and an
//! event when one has expired. Each is raised once per certificate and level
//! in a controller's life (a restart raises the current level again, which
//! an operator would want to see). Status lists every certificate inside the
//! warning window with what to rotate.

use super::deployment::Name;
use super::events::{ClusterEvent, EventKind};
use super::{FabricCore, Moment};
use std::time::{Duration, SystemTime};

/// How close a certificate is to its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExpiryLevel {
    /// Inside the warning window.
    Warning,
    /// Inside the incident window.
    Incident,
    /// Past its not-after date: clients refuse it.
    Expired,
}

impl ExpiryLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpiryLevel::Warning => "warning",
            ExpiryLevel::Incident => "incident",
            ExpiryLevel::Expired => "expired",
        }
    }
}

/// A certificate of the cluster itself, given by the shell at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterCertificate {
    /// "cluster CA", "controller".
    pub name: String,
    pub not_after: SystemTime,
}

/// One certificate inside the warning window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiringCertificate {
    /// `None` for a cluster certificate.
    pub deployment: Option<Name>,
    pub role: Option<Name>,
    pub certificate: String,
    pub fingerprint: String,
    pub not_after: SystemTime,
    pub level: ExpiryLevel,
}

impl ExpiringCertificate {
    /// What an operator should do, naming the deployment and role.
    pub fn advice(&self) -> String {
        match (&self.deployment, &self.role) {
            (Some(d), Some(r)) => format!(
                "rotate certificate {:?} of deployment {d}, role {r}: redeploy its service definition with a new certificate",
                self.certificate
            ),
            _ if self.certificate == "cluster CA" => {
                "renew the cluster CA, then reissue every certificate it signed".to_owned()
            }
            _ => format!(
                "renew the {}: issue a new one from the cluster CA and restart with it",
                self.certificate
            ),
        }
    }

    fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.deployment.as_ref().map_or("", |d| d.as_str()),
            self.role.as_ref().map_or("", |r| r.as_str()),
            self.certificate,
            self.fingerprint
        )
    }
}

impl FabricCore {
    /// Tells the core which certificates the cluster itself runs on.
    pub fn watch_cluster_certificates(&mut self, certificates: Vec<ClusterCertificate>) {
        self.cluster_certificates = certificates;
    }

    /// The cluster's own certificates, as given to
    /// [`FabricCore::watch_cluster_certificates`].
    pub fn cluster_certificates(&self) -> &[ClusterCertificate] {
        &self.cluster_certificates
    }

    /// Every certificate within the warning window at `now`, most urgent
    /// (soonest expiry) first.
    pub fn expiring_certificates(&self, now: SystemTime) -> Vec<ExpiringCertificate> {
        let level = |not_after: SystemTime| -> Option<ExpiryLevel> {
            let left = not_after.duration_since(now).unwrap_or(Duration::ZERO);
            if not_after <= now {
                Some(ExpiryLevel::Expired)
            } else if left <= self.config.certificate_incident {
                // Inclusive, so the tick woken at the crossing
                // (`next_expiry_change`) raises it.
                Some(ExpiryLevel::Incident)
            } else if left <= self.config.certificate_warning {
                Some(ExpiryLevel::Warning)
            } else {
                None
            }
        };
        let deployed = self.deployments.values().flat_map(|d| {
            d.roles.iter().flat_map(move |r| {
                r.certificates.iter().filter_map(move |c| {
                    Some(ExpiringCertificate {
                        deployment: Some(d.name.clone()),
                        role: Some(r.name.clone()),
                        certificate: c.name.clone(),
                        fingerprint: c.fingerprint.clone(),
                        not_after: c.not_after,
                        level: level(c.not_after)?,
                    })
                })
            })
        });
        let own = self.cluster_certificates.iter().filter_map(|c| {
            Some(ExpiringCertificate {
                deployment: None,
                role: None,
                certificate: c.name.clone(),
                fingerprint: String::new(),
                not_after: c.not_after,
                level: level(c.not_after)?,
            })
        });
        let mut all: Vec<_> = deployed.chain(own).collect();
        all.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.key().cmp(&b.key())));
        all
    }

    /// `certificate.together` for `spec` if one of its certificates expires
    /// within `certificate_spread` of another deployment's: the 2013 remedy
    /// "partition the certificates ... across time so an uncaught
    /// expiration does not create a widespread, simultaneous event".
    pub(super) fn certificates_together(
        &mut self,
        now: Moment,
        spec: &crate::DeploymentSpec,
    ) -> Option<ClusterEvent> {
        let window = self.config.certificate_spread;
        if window.is_zero() {
            return None;
        }
        let apart = |a: SystemTime, b: SystemTime| {
            a.duration_since(b)
                .or_else(|_| b.duration_since(a))
                .unwrap_or_default()
        };
        let mine: Vec<SystemTime> = spec
            .roles
            .iter()
            .flat_map(|r| r.certificates.iter().map(|c| c.not_after))
            .collect();
        let mut others: Vec<(String, std::time::Duration)> = Vec::new();
        for d in self.deployments.values().filter(|d| d.name != spec.name) {
            let closest = d
                .roles
                .iter()
                .flat_map(|r| r.certificates.iter())
                .flat_map(|c| mine.iter().map(move |m| apart(*m, c.not_after)))
                .min();
            if let Some(gap) = closest.filter(|gap| *gap <= window) {
                others.push((d.name.to_string(), gap));
            }
        }
        if others.is_empty() {
            return None;
        }
        let named: Vec<String> = others
            .iter()
            .map(|(name, gap)| {
                format!(
                    "{name} ({} apart)",
                    humantime::format_duration(std::time::Duration::from_secs(gap.as_secs()))
                )
            })
            .collect();
        Some(self.events.record(
            now,
            EventKind::CertificateTogether,
            None,
            format!(
                "certificates of {} expire within {} of those of {}: one expiry nobody catches \
                 would take them all at once; spread them across time",
                spec.name,
                humantime::format_duration(window),
                named.join(", ")
            ),
        ))
    }

    /// The monotonic time at which the next certificate crosses into a new
    /// level (warning, incident, expired), so the watch raises it on time
    /// instead of at the next idle look; mapped from the wall clock through
    /// `now`.
    pub(super) fn next_expiry_change(&self, now: Moment) -> Option<Duration> {
        let deployed = self.deployments.values().flat_map(|d| {
            d.roles
                .iter()
                .flat_map(|r| r.certificates.iter().map(|c| c.not_after))
        });
        let own = self.cluster_certificates.iter().map(|c| c.not_after);
        deployed
            .chain(own)
            .flat_map(|not_after| {
                [
                    not_after.checked_sub(self.config.certificate_warning),
                    not_after.checked_sub(self.config.certificate_incident),
                    Some(not_after),
                ]
            })
            .flatten()
            .filter_map(|crossing| crossing.duration_since(now.wall).ok())
            .filter(|wait| !wait.is_zero())
            .min()
            .map(|wait| now.mono + wait)
    }

    /// Raises an event for each certificate that reached a new level, and
    /// forgets certificates no longer in the window (rotated or removed), so
    /// a later redeploy of the same one is watched afresh.
    pub(super) fn watch_expiry(&mut self, now: Moment) -> Vec<ClusterEvent> {
        let expiring = self.expiring_certificates(now.wall);
        let mut raised = std::collections::BTreeMap::new();
        let mut events = Vec::new();
        for c in expiring {
            let key = c.key();
            let known = self.expiry_raised.get(&key).copied();
            raised.insert(key, known.map_or(c.level, |l| l.max(c.level)));
            if known.is_some_and(|l| l >= c.level) {
                continue;
            }
            let (kind, when) = match c.level {
                ExpiryLevel::Warning => (
                    EventKind::CertificateWarning,
                    "expires within the warning window",
                ),
                ExpiryLevel::Incident => (
                    EventKind::CertificateIncident,
                    "expires within the incident window",
                ),
                ExpiryLevel::Expired => (EventKind::CertificateExpired, "has expired"),
            };
            let left = c
                .not_after
                .duration_since(now.wall)
                .unwrap_or(Duration::ZERO);
            events.push(self.events.record_timed(
                now,
                kind,
                None,
                format!(
                    "{}{} {when} ({} left): {}",
                    c.certificate,
                    match (&c.deployment, &c.role) {
                        (Some(d), Some(r)) => format!(" of {d}/{r}"),
                        _ => String::new(),
                    },
                    humantime::format_duration(Duration::from_secs(left.as_secs())),
                    c.advice()
                ),
                Some(left),
            ));
        }
        self.expiry_raised = raised;
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CertificateInfo, CoreConfig, DeploymentSpec, RoleSpec};

    const DAY: Duration = Duration::from_secs(86_400);

    fn moment(wall: SystemTime) -> Moment {
        Moment {
            mono: Duration::ZERO,
            wall,
        }
    }

    fn spec(not_after: SystemTime) -> DeploymentSpec {
        DeploymentSpec {
            priority: 0,
            name: Name::parse("deployment", "web").unwrap(),
            roles: vec![RoleSpec {
                guest: Default::default(),
                name: Name::parse("role", "frontend").unwrap(),
                instances: 1,
                certificates: vec![CertificateInfo {
                    name: "https".into(),
                    fingerprint: "ab".repeat(32),
                    not_after,
                }],
            }],
        }
    }

    #[test]
    fn certificates_expiring_together_are_named_at_deploy() {
        let start = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let named = |name: &str, not_after| DeploymentSpec {
            name: Name::parse("deployment", name).unwrap(),
            ..spec(not_after)
        };
        let together = |events: &[ClusterEvent]| {
            events
                .iter()
                .find(|e| e.kind == EventKind::CertificateTogether)
                .map(|e| e.reason.clone())
        };
        let with_a_server = |config: CoreConfig| {
            let mut core = FabricCore::new(config, moment(start));
            core.register(
                moment(start),
                crate::NodeId::new("host-1"),
                crate::NodeInfo {
                    capacity_vm_slots: 8,
                    ..crate::NodeInfo::default()
                },
                "b",
            );
            core
        };
        let mut core = with_a_server(CoreConfig::default());
        let (_, e) = core
            .deploy(moment(start), named("blob", start + DAY * 200))
            .unwrap();
        assert_eq!(together(&e), None, "alone: nothing to say");
        // Three minutes apart, as in 2013: named, with the gap.
        let (_, e) = core
            .deploy(
                moment(start),
                named("table", start + DAY * 200 + Duration::from_secs(180)),
            )
            .unwrap();
        let reason = together(&e).expect("expiring together");
        assert!(
            reason.contains("table") && reason.contains("blob (3m apart)"),
            "{reason}"
        );
        // Two days apart: spread enough.
        let (_, e) = core
            .deploy(moment(start), named("queue", start + DAY * 202))
            .unwrap();
        assert_eq!(together(&e), None);
        // A window of zero turns the check off.
        let config = CoreConfig {
            certificate_spread: Duration::ZERO,
            ..CoreConfig::default()
        };
        let mut core = with_a_server(config);
        core.deploy(moment(start), named("blob", start + DAY * 200))
            .unwrap();
        let (_, e) = core
            .deploy(moment(start), named("table", start + DAY * 200))
            .unwrap();
        assert_eq!(together(&e), None);
    }

    #[test]
    fn each_level_is_raised_once_and_names_what_to_rotate() {
        let start = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let mut core = FabricCore::new(CoreConfig::default(), moment(start));
        core.deployments.insert(
            Name::parse("deployment", "web").unwrap(),
            spec(start + DAY * 200),
        );
        core.watch_cluster_certificates(vec![ClusterCertificate {
            name: "cluster CA".into(),
            not_after: start + DAY * 3650,
        }]);
        let kinds = |events: Vec<ClusterEvent>| events.iter().map(|e| e.kind).collect::<Vec<_>>();
        // 200 days left: nothing yet.
        assert!(core.watch_expiry(moment(start)).is_empty());
        assert!(core.expiring_certificates(start).is_empty());
        // 179 days: one warning, then silence.
        let t = start + DAY * 21;
        let e = core.watch_expiry(moment(t));
        assert_eq!(kinds(e.clone()), [EventKind::CertificateWarning]);
        assert!(e[0].reason.contains("web/frontend"), "{}", e[0].reason);
        assert!(
            e[0].reason.contains("rotate certificate \"https\""),
            "{}",
            e[0].reason
        );
        assert!(core.watch_expiry(moment(t)).is_empty());
        // 89 days: the incident.
        let t = start + DAY * 111;
        assert_eq!(
            kinds(core.watch_expiry(moment(t))),
            [EventKind::CertificateIncident]
        );
        let listed = core.expiring_certificates(t);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].level, ExpiryLevel::Incident);
        // Past the date.
        let t = start + DAY * 201;
        assert_eq!(
            kinds(core.watch_expiry(moment(t))),
            [EventKind::CertificateExpired]
        );
        // The cluster CA enters its window years later, on its own.
        let t = start + DAY * 3600;
        let e = core.watch_expiry(moment(t));
        assert!(
            e.iter().any(|e| e.reason.starts_with("cluster CA")),
            "{e:?}"
        );
    }

    #[test]
    fn the_next_crossing_is_a_deadline() {
        let start = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let mut core = FabricCore::new(CoreConfig::default(), moment(start));
        let at = |mono: Duration, wall: SystemTime| Moment { mono, wall };
        assert_eq!(core.next_expiry_change(moment(start)), None);
        core.deployments.insert(
            Name::parse("deployment", "web").unwrap(),
            spec(start + DAY * 200),
        );
        // Mono 5 s at `start`: the warning (180 days before) is 20 days on.
        let mono = Duration::from_secs(5);
        assert_eq!(
            core.next_expiry_change(at(mono, start)),
            Some(mono + DAY * 20)
        );
        // Inside the warning window, the incident is next, then the expiry.
        assert_eq!(
            core.next_expiry_change(at(mono, start + DAY * 20)),
            Some(mono + DAY * 90)
        );
        assert_eq!(
            core.next_expiry_change(at(mono, start + DAY * 150)),
            Some(mono + DAY * 50)
        );
        // Expired: nothing further to wait for.
        assert_eq!(core.next_expiry_change(at(mono, start + DAY * 200)), None);
    }

    #[test]
    fn a_rotated_certificate_leaves_the_list() {
        let start = SystemTime::UNIX_EPOCH + DAY * 20_000;
        let mut core = FabricCore::new(CoreConfig::default(), moment(start));
        let name = Name::parse("deployment", "web").unwrap();
        core.deployments
            .insert(name.clone(), spec(start + DAY * 30));
        assert_eq!(core.watch_expiry(moment(start)).len(), 1);
        let mut rotated = spec(start + DAY * 400);
        rotated.roles[0].certificates[0].fingerprint = "cd".repeat(32);
        core.deployments.insert(name, rotated);
        assert!(core.watch_expiry(moment(start)).is_empty());
        assert!(core.expiring_certificates(start).is_empty());
    }
}
