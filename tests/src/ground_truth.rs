//! Ground truth read from each host agent directly, not from the
//! controller's view: what VMs a server really runs. Chaos and healing tests
//! compare the two.

use fabric_pki::PkiLayout;
use fabric_pki::tls::TlsFiles;
use fabric_proto::v1::host_service_client::HostServiceClient;
use fabric_proto::v1::{GetHostStatusRequest, HostStatus, VmState};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The admin certificate of the local cluster in `state_dir`.
pub fn admin_files(state_dir: &Path) -> TlsFiles {
    let layout = PkiLayout::new(state_dir.join("pki"));
    TlsFiles::new(layout.ca_cert(), &layout.admin())
}

/// What host agent `endpoint` says of itself (HostService.GetHostStatus).
pub async fn host_status(endpoint: &str, files: &TlsFiles) -> Result<HostStatus, String> {
    let url = format!("https://{endpoint}");
    let channel = crate::connect(&url, files)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    Ok(HostServiceClient::new(channel)
        .get_host_status(GetHostStatusRequest {})
        .await
        .map_err(|e| format!("GetHostStatus {url}: {e}"))?
        .into_inner())
}

/// (VM id, state, incarnation) of every VM host agent `endpoint` reports.
pub async fn host_vms(
    endpoint: &str,
    files: &TlsFiles,
) -> Result<Vec<(String, VmState, u64)>, String> {
    Ok(host_status(endpoint, files)
        .await?
        .vms
        .into_iter()
        .map(|vm| {
            let state = vm.state();
            (vm.vm_id, state, vm.incarnation)
        })
        .collect())
}

/// The package host agent `endpoint` runs ("" for the base binaries) and
/// its boot id.
pub async fn host_package(endpoint: &str, files: &TlsFiles) -> Result<(String, String), String> {
    let status = host_status(endpoint, files).await?;
    let package = status.software.map(|s| s.package).unwrap_or_default();
    Ok((package, status.boot_id))
}

/// From each host agent's own account (every node of `status` but the
/// `lost` ones), whether every instance `status` places is Running exactly
/// once, on the node it names, and nothing else runs: `Ok(())`, or what is
/// not so yet, for a poll to print.
pub fn running_once_where_placed(
    rt: &tokio::runtime::Runtime,
    status: &fabricctl::status::StatusJson,
    lost: &BTreeSet<String>,
    files: &TlsFiles,
) -> Result<(), String> {
    let placed: BTreeMap<&str, &str> = status
        .deployments
        .iter()
        .flat_map(|d| &d.instances)
        .map(|i| (i.id.as_str(), i.node.as_str()))
        .collect();
    let mut running: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for node in status.nodes.iter().filter(|n| !lost.contains(&n.id)) {
        let vms = rt
            .block_on(host_vms(&node.host_endpoint, files))
            .map_err(|e| format!("{}: {e}", node.id))?;
        for (vm, state, _) in vms {
            if state == VmState::VmRunning {
                running.entry(vm).or_default().push(&node.id);
            }
        }
    }
    let twice: Vec<_> = running.iter().filter(|(_, on)| on.len() > 1).collect();
    let astray: Vec<_> = placed
        .iter()
        .filter(|(id, node)| running.get(**id).map(Vec::as_slice) != Some(&[**node]))
        .take(5)
        .collect();
    if twice.is_empty() && astray.is_empty() && running.len() == placed.len() {
        return Ok(());
    }
    Err(format!(
        "{} running for {} placed; twice: {twice:?}; not Running where placed (first 5): \
         {astray:?}",
        running.len(),
        placed.len()
    ))
}
