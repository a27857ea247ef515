//! `fabricctl up --replicas N`: a local etcd cluster (three members of
//! Debian's etcd-server) and N controller replicas sharing their state in
//! it, each supervised like any other process.
//!
//! Only the leader listens, so each replica has its own fixed ports (gRPC
//! and dashboard), chosen once and kept in `<state>/replicas.json` with
//! etcd's: an etcd member's data remembers its peers' addresses, so a
//! cluster started again must come back on the same ones. Host agents and
//! `fabricctl` are given every replica's address; whoever answers leads.

use super::child::ChildSpec;
use super::layout::StateLayout;
use crate::cli::UpArgs;
use anyhow::Context as _;
use fabric_etcd::local::{MemberPlan, free_port, plan_on};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// etcd members `up` runs: three tolerate one failure.
pub const ETCD_MEMBERS: usize = 3;

/// The ports of a replicated local cluster, kept across runs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Ports {
    /// (client, peer) per etcd member.
    pub etcd: Vec<(u16, u16)>,
    /// (gRPC, dashboard) per controller replica.
    pub controllers: Vec<(u16, u16)>,
}

/// What `up` starts for a replicated controller.
pub struct Replicas {
    pub etcd: Vec<MemberPlan>,
    pub ports: Ports,
}

fn ports_file(layout: &StateLayout) -> PathBuf {
    layout.root.join("replicas.json")
}

fn etcd_dir(layout: &StateLayout) -> PathBuf {
    layout.root.join("etcd")
}

/// `None` for one controller. Refuses to switch a state directory between
/// one controller (state on disk) and replicas (state in etcd): the other
/// kind would start with no state while the hosts remember a cluster.
pub fn plan(layout: &StateLayout, args: &UpArgs) -> anyhow::Result<Option<Replicas>> {
    let on_disk = layout
        .controller_state()
        .join("controller-state.json")
        .exists();
    let in_etcd = etcd_dir(layout).exists();
    if args.replicas == 1 {
        if in_etcd {
            anyhow::bail!(
                "{} holds a cluster whose controller state is in etcd (started with \
                 --replicas); start it with --replicas again, or use another --state-dir",
                layout.root.display()
            );
        }
        return Ok(None);
    }
    if on_disk {
        anyhow::bail!(
            "{} holds a cluster run by one controller (its state on disk); --replicas \
             keeps state in etcd and would start an empty cluster the hosts do not know: \
             use another --state-dir",
            layout.root.display()
        );
    }
    let lease = args.leader_lease;
    if lease < Duration::from_secs(2) || lease.subsec_nanos() != 0 {
        anyhow::bail!("--leader-lease {lease:?} must be whole seconds, at least 2s");
    }
    let file = ports_file(layout);
    let wanted = args.replicas as usize;
    let kept: Option<Ports> = std::fs::read(&file)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let ports = match kept {
        Some(mut p) if p.etcd.len() == ETCD_MEMBERS => {
            while p.controllers.len() < wanted {
                p.controllers.push((free_port()?, free_port()?));
            }
            p.controllers.truncate(wanted);
            p
        }
        _ => Ports {
            etcd: (0..ETCD_MEMBERS)
                .map(|_| Ok((free_port()?, free_port()?)))
                .collect::<std::io::Result<_>>()?,
            controllers: (0..wanted)
                .map(|_| Ok((free_port()?, free_port()?)))
                .collect::<std::io::Result<_>>()?,
        },
    };
    fabric_daemon::files::write_atomically(&file, serde_json::to_vec_pretty(&ports)?)
        .with_context(|| format!("cannot write {}", file.display()))?;
    let etcd =
        plan_on(&etcd_dir(layout), &ports.etcd).context("cannot plan the local etcd cluster")?;
    Ok(Some(Replicas { etcd, ports }))
}

impl Replicas {
    /// Every replica's gRPC URL, comma-separated (host agents' --controller,
    /// context.json's endpoint).
    pub fn endpoints(&self) -> String {
        self.ports
            .controllers
            .iter()
            .map(|(grpc, _)| format!("https://127.0.0.1:{grpc}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every replica's dashboard (only the leader's answers).
    pub fn dashboards(&self) -> Vec<String> {
        self.ports
            .controllers
            .iter()
            .map(|(_, http)| format!("http://127.0.0.1:{http}/"))
            .collect()
    }

    pub fn etcd_specs(&self, layout: &StateLayout, env: &[(String, String)]) -> Vec<ChildSpec> {
        self.etcd
            .iter()
            .map(|m| ChildSpec {
                name: m.name.clone(),
                program: m.program.clone(),
                args: m.args.clone(),
                log: layout.log(&m.name),
                env: env.to_vec(),
                addr_file: None,
                keep_bound: Vec::new(),
            })
            .collect()
    }

    /// The replicas, from the one controller's spec: own ports, the etcd
    /// members, this replica's address, the lease's timings.
    pub fn controller_specs(&self, one: &ChildSpec, args: &UpArgs) -> Vec<ChildSpec> {
        let members: Vec<String> = self.etcd.iter().map(|m| m.client.clone()).collect();
        let lease = args.leader_lease;
        let duration = |d: Duration| format!("{}ms", d.as_millis());
        self.ports
            .controllers
            .iter()
            .enumerate()
            .map(|(i, (grpc, http))| {
                let mut spec = one.clone();
                spec.name = format!("{}-{}", one.name, i + 1);
                spec.log = one.log.with_file_name(format!("{}.log", spec.name));
                // Bound only while leading: no address file to wait for.
                spec.addr_file = None;
                spec.keep_bound = Vec::new();
                if let Some(at) = spec.args.iter().position(|a| a == "--addr-file") {
                    spec.args.drain(at..at + 2);
                }
                if let Some(at) = spec.args.iter().position(|a| a == "--http-addr-file") {
                    spec.args.drain(at..at + 2);
                }
                spec.set_flag("--listen", &format!("127.0.0.1:{grpc}"));
                spec.set_flag("--http-listen", &format!("127.0.0.1:{http}"));
                spec.set_flag("--advertise", &format!("https://127.0.0.1:{grpc}"));
                spec.set_flag("--etcd", &members.join(","));
                spec.set_flag("--leader-lease", &duration(lease));
                spec.set_flag("--renew-deadline", &duration(lease * 2 / 3));
                spec.set_flag("--retry-period", &duration(lease * 2 / 15));
                spec
            })
            .collect()
    }
}
