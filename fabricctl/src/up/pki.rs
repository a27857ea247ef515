//! The certificates a local cluster needs, created once and then reused.

use crate::up::layout::{StateLayout, hollow_name, host_name};
use anyhow::Context as _;
use fabric_pki::PkiLayout;
use fabric_pki::layout::CertPaths;

/// Paths of every certificate `up` hands out.
pub struct ClusterPki {
    pub layout: PkiLayout,
    pub controller: CertPaths,
    pub admin: CertPaths,
    /// host-1..host-N, in order.
    pub hosts: Vec<CertPaths>,
    /// How many hollow hosts have certificates (hollow-1..hollow-N).
    pub hollow: u32,
}

impl ClusterPki {
    pub fn ca(&self) -> std::path::PathBuf {
        self.layout.ca_cert()
    }
}

/// Creates (or loads) the CA and issues missing certificates.
pub fn prepare(
    layout: &StateLayout,
    cluster: &str,
    hosts: u32,
    hollow: u32,
) -> anyhow::Result<ClusterPki> {
    let pki = PkiLayout::new(layout.pki());
    let now = time::OffsetDateTime::now_utc();
    let ca = pki
        .init(cluster, &[], now)
        .with_context(|| format!("cannot set up the cluster PKI in {}", pki.dir.display()))?;
    let hosts = (1..=hosts)
        .map(|i| {
            let node = host_name(i);
            pki.ensure_host(&ca, &node, &[], now)
                .with_context(|| format!("cannot issue the certificate of {node}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    for i in 1..=hollow {
        let node = hollow_name(i);
        pki.ensure_host(&ca, &node, &[], now)
            .with_context(|| format!("cannot issue the certificate of {node}"))?;
    }
    Ok(ClusterPki {
        hollow,
        controller: pki.controller(),
        admin: pki.admin(),
        layout: pki,
        hosts,
    })
}
