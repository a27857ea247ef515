//! Real incidents replayed in virtual time against the real core: the 2012
//! leap-day cascade and its secondary outage, the 2009 serial recovery, the
//! 2013 certificate expiry; each printed by [`render`] at the incident's
//! clock with the postmortem's milestones among its events.
//!
//! Each scenario runs the simulated [`crate::World`] twice, first as the incident
//! happened and then with Fabric's improvements, and returns a [`Report`]:
//! a timeline (virtual time since the scenario's start), a summary, and an
//! [`Outcome`] that tests and `fabricctl scenario run --simulate` check. A
//! run takes well under a second of real time for hours of cluster time.
//!
//! - [`leap_day`] replays `leap-day-2012`;
//! - [`serial_recovery`] replays `serial-recovery-2009`;
//! - [`cert_expiry`] replays `cert-expiry-2013`;
//! - [`secondary_outage`] replays `secondary-outage-2012`.

pub mod cert_expiry;
pub mod leap_day;
pub mod leap_day_story;
pub mod secondary_outage;
pub mod serial_recovery;

use fabric_core::{ClusterEvent, DeploymentSpec, Name, RoleSpec};
use std::time::{Duration, SystemTime};

/// One line of a timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Virtual time since the scenario started.
    pub at: Duration,
    pub text: String,
}

/// What one scenario showed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub name: &'static str,
    /// "as it happened" first, then "with Fabric's improvements".
    pub phases: Vec<Phase>,
    /// Side-by-side findings, one per line.
    pub summary: Vec<String>,
    /// How times read: the incident's own clock, or time since the start.
    pub clock: Option<IncidentClock>,
    /// Said once under the summary: what the replay made up (names, texts,
    /// sizes) that a student must not take for the postmortem's.
    pub invented: Vec<String>,
    /// How the postmortem's milestones are marked ("2012"); "then" if unset.
    pub source: &'static str,
}

/// The incident's wall clock, for printing a replay's times as the
/// postmortem gives them (2012: PST).
#[derive(Clone, Copy, Debug)]
pub struct IncidentClock {
    /// "PST".
    pub zone: &'static str,
    /// The incident's local time at each phase's start, in seconds since
    /// 1970-01-01T00:00 of that zone.
    pub start: u64,
}

/// One run of a scenario.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub title: String,
    pub timeline: Vec<Line>,
    pub outcome: Outcome,
    /// The postmortem's own words, at the incident time they name (since
    /// the phase's start), printed among the phase's events.
    pub milestones: Vec<Line>,
    /// (when, instances clients could reach) at each change, and of how
    /// many: the "customer instances up" column. Empty: no column.
    pub serving: Vec<(Duration, usize)>,
    pub instances: usize,
}

/// The measured facts of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Servers that went to Human Investigate.
    pub servers_hi: usize,
    /// Role instances service healing moved.
    pub healed: usize,
    /// When the HI threshold tripped, if it did.
    pub threshold_tripped: Option<Duration>,
    /// When a software fault was classified, and its cause.
    pub software_fault: Option<(Duration, String)>,
    /// Until every role instance was Running again, if it was.
    pub all_running_after: Option<Duration>,
    /// Per deployment: the longest time it had no instance Running.
    pub longest_outage: Vec<(String, Duration)>,
    /// Certificate events raised, by kind name, with when.
    pub certificate_events: Vec<(Duration, String)>,
    /// Time clients were served an expired certificate.
    pub expired_served_for: Duration,
}

/// Every scenario by name, with a one-line description.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "leap-day-2012",
        "guest agents fail on Feb 29; strikes, HI, healing spreads it, the threshold trips (then: fail fast + classification)",
    ),
    (
        "serial-recovery-2009",
        "an OS upgrade times out several servers; healing one at a time versus in parallel; the HI threshold's brake; single- vs two-instance services",
    ),
    (
        "cert-expiry-2013",
        "certificates renewed in the Secret Store but not deployed: alerts that watch the store go quiet; Fabric watches what is served",
    ),
    (
        "secondary-outage-2012",
        "the repair: an older host agent with a newer networking plugin, blasted (then: refused, or walked by update domain behind an endpoint gate)",
    ),
];

/// Runs scenario `name` in virtual time.
pub fn run(name: &str) -> Option<Report> {
    match name {
        "leap-day-2012" => Some(leap_day::run()),
        "serial-recovery-2009" => Some(serial_recovery::run()),
        "cert-expiry-2013" => Some(cert_expiry::run()),
        "secondary-outage-2012" => Some(secondary_outage::run()),
        _ => None,
    }
}

/// A deployment with one role of `instances`, serving a certificate valid
/// until `not_after`.
pub(crate) fn service(name: &str, instances: u32, not_after: SystemTime) -> DeploymentSpec {
    DeploymentSpec {
        priority: 0,
        name: Name::parse("deployment", name).expect("valid name"),
        roles: vec![RoleSpec {
            guest: Default::default(),
            name: Name::parse("role", "web").expect("valid name"),
            instances,
            certificates: vec![fabric_core::CertificateInfo {
                name: "https".into(),
                fingerprint: format!("{:0>64}", hex::encode(name)),
                not_after,
            }],
        }],
    }
}

/// A package manifest for the simulator: its files are never read, so
/// their digests are placeholders.
pub(crate) fn package(
    name: &str,
    host_agent: &str,
    guest_agent: &str,
    plugin: &str,
    compatible: &str,
) -> fabric_core::Manifest {
    use fabric_core::software::{Artifact, Plugin, Version};
    let version = |v: &str| Version::parse("version", v).expect("valid version");
    let artifact = |v: &str, file: &str| Artifact {
        version: version(v),
        file: file.into(),
        size: 1,
        sha256: "0".repeat(64),
        flags: Vec::new(),
    };
    fabric_core::Manifest {
        version: version(name),
        host_agent: artifact(host_agent, "host-agent"),
        guest_agent: artifact(guest_agent, "guest-agent"),
        plugin: Plugin {
            artifact: artifact(plugin, "netplug"),
            compatible_host_agents: vec![compatible.into()],
        },
        forced: false,
    }
}

/// A postmortem's milestones, given in minutes after a phase's start, as
/// lines for [`Phase::milestones`].
pub(crate) fn milestones_at_minutes(list: &[(u64, &str)]) -> Vec<Line> {
    list.iter()
        .map(|(m, text)| Line {
            at: Duration::from_secs(m * 60),
            text: (*text).into(),
        })
        .collect()
}

/// A timeline line for event `e` of a run that started at `start` (mono).
pub(crate) fn line(e: &ClusterEvent, start: Duration) -> Line {
    Line {
        at: e.at.mono.saturating_sub(start),
        text: format!(
            "{:<26} {:<8} {}",
            e.kind.as_str(),
            e.node.as_ref().map_or("-", |n| n.as_str()),
            e.reason
        ),
    }
}

/// A timeline of `events` since `start`: every event on a line of its own,
/// except those of the `counted` kinds, which repeat for hours (a VM
/// reinitialized every 25 minutes): those are counted per hour, on a line
/// at the hour's end, so none is dropped without a word.
pub(crate) fn timeline(
    events: &[ClusterEvent],
    start: Duration,
    counted: &[fabric_core::EventKind],
) -> Vec<Line> {
    let hour = |e: &ClusterEvent| e.at.mono.saturating_sub(start).as_secs() / 3600;
    let mut lines = Vec::new();
    let mut tally: std::collections::BTreeMap<(u64, &str), usize> = Default::default();
    for e in events {
        if counted.contains(&e.kind) {
            *tally.entry((hour(e), e.kind.as_str())).or_default() += 1;
        } else {
            lines.push(line(e, start));
        }
    }
    for ((h, kind), n) in tally {
        lines.push(Line {
            at: Duration::from_secs((h + 1) * 3600 - 1),
            text: format!("({n} x {kind} in this hour, counted rather than listed)"),
        });
    }
    lines.sort_by_key(|l| l.at);
    lines
}

/// "1h15m00s" style for a virtual time.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        format!("day {:>3} {:02}h", s / 86_400, (s % 86_400) / 3600)
    } else {
        format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    }
}

/// Width of a printed report: no line is longer.
pub const WIDTH: usize = 100;

/// A report as `fabricctl scenario run --simulate` prints it: each phase's
/// events with the postmortem's milestones among them, at the incident's
/// clock when it has one, with the customers' instances up beside each
/// line; events of one kind in the same minute share a line that counts
/// them and names every server, so nothing is dropped. No line is longer
/// than [`WIDTH`].
pub fn render(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for p in &r.phases {
        out.push(String::new());
        wrap_into(&mut out, "== ", &format!("{}: {}", r.name, p.title), "   ");
        let zone = r.clock.map_or("since start", |c| c.zone);
        let up = !p.serving.is_empty();
        let head = format!(
            "  {:<17} {:>6}  WHAT",
            format!("TIME ({zone})"),
            if up { "UP" } else { "" }
        );
        out.push(head.trim_end().to_owned());
        let mark = format!(
            "{} | ",
            if r.source.is_empty() {
                "then"
            } else {
                r.source
            }
        );
        for (at, source, text) in merged(p, &mark) {
            let when = match r.clock {
                Some(c) => wall_clock(c.start + at.as_secs()),
                None => clock(at),
            };
            let served = if up {
                let i = p.serving.partition_point(|(t, _)| *t <= at);
                let n = i.checked_sub(1).map_or(0, |i| p.serving[i].1);
                format!("{n}/{}", p.instances)
            } else {
                String::new()
            };
            let prefix = format!("  {when:<17} {served:>6}  {source}");
            let indent = " ".repeat(prefix.chars().count());
            wrap_into(&mut out, &prefix, &text, &indent);
        }
    }
    out.push(String::new());
    out.push("summary".into());
    for s in &r.summary {
        wrap_into(&mut out, "  ", s, "    ");
    }
    if !r.invented.is_empty() {
        out.push(String::new());
        out.push("made up by the replay, not the postmortem's:".into());
        for s in &r.invented {
            wrap_into(&mut out, "  - ", s, "    ");
        }
    }
    out
}

/// A phase's lines in time order: milestones (`mark` and the quote) and
/// events, same-kind events of one minute grouped. (at, source, text).
fn merged<'a>(p: &Phase, mark: &'a str) -> Vec<(Duration, &'a str, String)> {
    let mut lines: Vec<(Duration, &'a str, String)> = Vec::new();
    let mut events = p.timeline.iter().peekable();
    let mut milestones = p.milestones.iter().peekable();
    loop {
        let take_milestone = match (milestones.peek(), events.peek()) {
            (Some(m), Some(e)) => m.at <= e.at,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_milestone {
            let m = milestones.next().expect("peeked");
            lines.push((m.at, mark, format!("\"{}\"", m.text)));
            continue;
        }
        let first = events.next().expect("peeked");
        let (kind, _) = kind_and_node(&first.text);
        let mut group = vec![first];
        while let Some(next) = events.peek() {
            let (k, _) = kind_and_node(&next.text);
            let same_minute = next.at.as_secs() / 60 == first.at.as_secs() / 60;
            let before_milestone = milestones.peek().is_none_or(|m| m.at > next.at);
            if k == kind && !kind.is_empty() && same_minute && before_milestone {
                group.push(events.next().expect("peeked"));
            } else {
                break;
            }
        }
        let text = if group.len() == 1 {
            squeeze(&first.text)
        } else {
            let nodes: Vec<&str> = group
                .iter()
                .map(|l| kind_and_node(&l.text).1)
                .filter(|n| *n != "-")
                .collect();
            let servers = if nodes.is_empty() {
                String::new()
            } else {
                format!(" ({})", nodes.join(" "))
            };
            format!(
                "{kind} x{}{servers}: first: {}",
                group.len(),
                squeeze(&first.text).splitn(3, ' ').nth(2).unwrap_or("")
            )
        };
        lines.push((first.at, "", text));
    }
    lines
}

/// An event line's kind and node ("node.human_investigate", "host-3");
/// empty for a line that is not an event's.
fn kind_and_node(text: &str) -> (&str, &str) {
    let mut words = text.split_whitespace();
    let kind = words.next().unwrap_or("");
    if kind.contains('.')
        && kind
            .chars()
            .all(|c| c.is_ascii_lowercase() || "._".contains(c))
    {
        (kind, words.next().unwrap_or("-"))
    } else {
        ("", "")
    }
}

/// Runs of spaces (the event lines' column padding) made one.
fn squeeze(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `text` word-wrapped to [`WIDTH`], the first line starting with `prefix`
/// and the others with as many spaces: for the real-process replays'
/// lines.
pub fn wrap(prefix: &str, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    wrap_into(&mut out, prefix, text, &" ".repeat(prefix.chars().count()));
    out
}

/// Word-wraps `text` to [`WIDTH`] into `out`: the first line starts with
/// `prefix`, the others with `indent`; a word longer than a line is cut.
fn wrap_into(out: &mut Vec<String>, prefix: &str, text: &str, indent: &str) {
    let mut line = prefix.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if !empty && len + 1 + word.chars().count() > WIDTH {
            out.push(line);
            line = indent.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
        while line.chars().count() > WIDTH {
            let cut: String = line.chars().take(WIDTH).collect();
            let rest: String = line.chars().skip(WIDTH).collect();
            out.push(cut);
            line = format!("{indent}{rest}");
        }
    }
    out.push(line.trim_end().to_owned());
}

/// "Feb 28 4:00:05PM" for a local time in seconds since 1970-01-01.
pub(crate) fn wall_clock(local: u64) -> String {
    let stamp =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(local))
            .to_string();
    // "2012-02-28T16:00:05Z"
    let month = match &stamp[5..7] {
        "01" => "Jan",
        "02" => "Feb",
        "03" => "Mar",
        "04" => "Apr",
        "05" => "May",
        "06" => "Jun",
        "07" => "Jul",
        "08" => "Aug",
        "09" => "Sep",
        "10" => "Oct",
        "11" => "Nov",
        _ => "Dec",
    };
    let day: u32 = stamp[8..10].parse().unwrap_or(0);
    let hour: u32 = stamp[11..13].parse().unwrap_or(0);
    let (h12, half) = match hour {
        0 => (12, "AM"),
        1..=11 => (hour, "AM"),
        12 => (12, "PM"),
        _ => (hour - 12, "PM"),
    };
    format!("{month} {day} {h12}:{}{half}", &stamp[14..19])
}
