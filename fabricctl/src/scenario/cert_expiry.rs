//! `cert-expiry-2013` on real processes.
//!
//! A service's HTTPS certificate approaches its expiry date. Time is scaled
//! so that a day is 100 ms: the certificate lives 200 days (20 s), the
//! controller warns 180 days before expiry and raises an incident at 90
//! (`--certificate-warning 18s --certificate-incident 9s`). The service's
//! two instances are probed throughout as its clients would: trusting the
//! owner's CA, with dates checked. Two phases, each on a cluster of its own:
//!
//! 1. as in 2013: the team renews the certificate in its Secret Store on
//!    "January 7th" (day 154) but the release carrying it is not deployed
//!    in time, and nothing watches what is served (the controller's
//!    certificate windows are off, as 2013's alerts watched only the
//!    store): no warning, no incident; the certificate expires and every
//!    client handshake fails from that moment;
//! 2. with Fabric: the operator rotates at the first warning (`fabricctl
//!    deploy` of the same service with a new certificate); the guest agents
//!    swap it in without a restart, no incident is raised and no client
//!    ever fails.
//!
//! Parts: fabric-core/src/expiry.rs (the watch),
//! guest-agent/src/cert_resolver.rs (serving a rotated certificate).

use super::local::{POLL, ScenarioCluster, running_instances, since};
use super::service_files::ServiceOwner;
use crate::cli::GlobalArgs;
use crate::events::short_line;
use anyhow::bail;
use std::time::{Duration, SystemTime};
use time::OffsetDateTime;

/// One scaled day.
const DAY: Duration = Duration::from_millis(100);
const LIFETIME_DAYS: u32 = 200;
/// What the replay watches after the expiry date.
const AFTER_EXPIRY_DAYS: u32 = 30;
/// The rotated certificate's lifetime: two years, far outside the warning.
const ROTATED_DAYS: u32 = 730;
const INSTANCES: u32 = 2;
/// "On January 7th, 2013 the storage team updated the three certificates
/// in the Secret Store": placed 46 days before the expiry.
const RENEWED_IN_STORE_DAY: u32 = 154;

/// The controller's certificate windows: 180 and 90 scaled days with
/// Fabric; off as in 2013, when nothing watched what was served.
fn flags(fabric: bool) -> Vec<String> {
    let (warning, incident) = if fabric { ("18s", "9s") } else { ("0s", "0s") };
    [
        "--certificate-warning",
        warning,
        "--certificate-incident",
        incident,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn days(d: Duration) -> f64 {
    d.as_secs_f64() / DAY.as_secs_f64()
}

fn scaled(days: u32) -> time::Duration {
    time::Duration::try_from(DAY * days).expect("a few seconds")
}

#[derive(Default)]
struct Outcome {
    warning: Option<Duration>,
    incident: Option<Duration>,
    expired: Option<Duration>,
    rotated: Option<Duration>,
    probes: u32,
    /// Probes that failed before / after the expiry date.
    failed_before: u32,
    failed_after: u32,
    /// The first failure a client saw.
    first_error: Option<(Duration, String)>,
    /// Probes that got the rotated certificate.
    served_rotated: u32,
}

async fn phase(global: &GlobalArgs, rotate: bool) -> anyhow::Result<Outcome> {
    let label = if rotate {
        "cert-expiry-rotated"
    } else {
        "cert-expiry-2013"
    };
    let owner = ServiceOwner::new(label)?;
    let mut cluster = ScenarioCluster::start(global, label, 2, &flags(rotate)).await?;
    cluster.wait_ready(2).await?;
    let mut after = 0;
    cluster.events_after(&mut after).await?;
    // Certificates carry whole seconds: the expiry is a whole second, and
    // day 0 is 200 days before it, so the days printed are the
    // certificate's own.
    let expires = (OffsetDateTime::now_utc() + scaled(LIFETIME_DAYS))
        .replace_nanosecond(0)
        .expect("zero is a valid nanosecond");
    let day0 = SystemTime::from(expires) - DAY * LIFETIME_DAYS;
    let elapsed = || SystemTime::now().duration_since(day0).unwrap_or_default();
    let roles = [("web", INSTANCES)];
    let service = owner.write("store", "store", &roles, expires)?;
    cluster.deploy(&service.path).await?;
    cluster
        .wait_running(INSTANCES as usize, Duration::from_secs(30))
        .await?;
    crate::output::line(&format!(
        "  day {:>5.1}  deployed store with a certificate valid for {LIFETIME_DAYS} days",
        days(elapsed())
    ));
    let expiry = DAY * LIFETIME_DAYS;
    let trust = owner.trust();
    let mut outcome = Outcome::default();
    let mut rotated_der = None;
    let mut renewed_in_store = false;
    while elapsed() < expiry + DAY * AFTER_EXPIRY_DAYS {
        if !rotate && !renewed_in_store && elapsed() >= DAY * RENEWED_IN_STORE_DAY {
            renewed_in_store = true;
            crate::output::line(&format!(
                "  day {:>5.1}  \"January 7th\": the team renews the certificate in its Secret \
                 Store; the release carrying it is not flagged and waits (no deploy follows)",
                days(elapsed())
            ));
        }
        for e in cluster.events_after(&mut after).await? {
            let at = since(&e, day0);
            let slot = match e.kind.as_str() {
                "certificate.warning" => &mut outcome.warning,
                "certificate.incident" => &mut outcome.incident,
                "certificate.expired" => &mut outcome.expired,
                _ => continue,
            };
            slot.get_or_insert(at);
            crate::output::line(&format!("  day {:>5.1}  {}", days(at), short_line(&e)));
            if rotate && e.kind == "certificate.warning" && rotated_der.is_none() {
                let new = owner.write(
                    "store-rotated",
                    "store",
                    &roles,
                    OffsetDateTime::now_utc() + scaled(ROTATED_DAYS),
                )?;
                cluster.deploy(&new.path).await?;
                let at = elapsed();
                outcome.rotated = Some(at);
                rotated_der = Some(new.cert_der);
                crate::output::line(&format!(
                    "  day {:>5.1}  operator rotated: fabricctl deploy with a new certificate valid for {ROTATED_DAYS} days",
                    days(at)
                ));
            }
        }
        let status = cluster.status().await?;
        for i in running_instances(&status) {
            let served = crate::https::fetch(&i.endpoint, &trust).await;
            let at = elapsed();
            outcome.probes += 1;
            match served {
                Ok(s) => {
                    if rotated_der.as_ref() == Some(&s.leaf_der) {
                        outcome.served_rotated += 1;
                    }
                }
                Err(error) => {
                    if at < expiry {
                        outcome.failed_before += 1;
                    } else {
                        outcome.failed_after += 1;
                    }
                    if outcome.first_error.is_none() {
                        crate::output::line(&format!(
                            "  day {:>5.1}  clients of {} fail: {error}",
                            days(at),
                            i.instance_id
                        ));
                        outcome.first_error = Some((at, error));
                    }
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(outcome)
}

fn day_of(d: Option<Duration>) -> String {
    d.map_or("never".into(), |d| format!("day {:.0}", days(d)))
}

pub async fn run(global: &GlobalArgs) -> anyhow::Result<()> {
    for line in fabric_sim::scenarios::wrap(
        "",
        &format!(
            "cert-expiry-2013 on real processes: one service (2 instances) with a \
             {LIFETIME_DAYS}-day certificate; time scaled so a day is {}ms; clients check dates.",
            DAY.as_millis()
        ),
    ) {
        crate::output::line(&line);
    }
    crate::output::line(
        "\n== as in 2013: renewed in the Secret Store, not deployed; nothing watches what is served",
    );
    let then = phase(global, false).await?;
    crate::output::line(
        "\n== with Fabric: the controller warns from what is served; the operator rotates at the warning",
    );
    let now = phase(global, true).await?;
    crate::output::line("\nsummary");
    say(
        "2013: alerts began 180 days ahead but watched the Secret Store, not what was served; \
         the renewed certificate sat in a delayed release, and when the served one expired every \
         HTTPS connection to storage was refused",
    );
    say(&format!(
        "renewed in the store only: warning {}, incident {}, expired {}; of {} probes, {} failed \
         before the expiry date and {} after{}",
        day_of(then.warning),
        day_of(then.incident),
        day_of(then.expired),
        then.probes,
        then.failed_before,
        then.failed_after,
        then.first_error
            .as_ref()
            .map_or(String::new(), |(_, e)| format!(": {e}"))
    ));
    say(&format!(
        "rotated: warning {}, rotated {}, incident {}, expired {}; {} of {} probes failed; {} got \
         the rotated certificate",
        day_of(now.warning),
        day_of(now.rotated),
        day_of(now.incident),
        day_of(now.expired),
        now.failed_after + now.failed_before,
        now.probes,
        now.served_rotated
    ));
    // 2013: no warning from what was served, the store's renewal changed
    // nothing, and clients were refused after the expiry.
    let unrotated_ok = then.warning.is_none()
        && then.incident.is_none()
        && then.expired.is_some()
        && then.failed_before == 0
        && then.failed_after > 0;
    let rotated_ok = now.rotated.is_some()
        && now.incident.is_none()
        && now.expired.is_none()
        && now.failed_before + now.failed_after == 0
        && now.served_rotated > 0;
    if !unrotated_ok || !rotated_ok {
        bail!("the replay did not show what it should (see above)");
    }
    Ok(())
}

/// A summary line, wrapped to the report width.
fn say(text: &str) {
    for line in fabric_sim::scenarios::wrap("  ", text) {
        crate::output::line(&line);
    }
}
