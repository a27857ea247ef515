//! Ground truth read from each host agent directly, not from the
//! controller's view: what VMs a server really runs. Chaos and healing tests
//! compare the two.

use fabric_pki::PkiLayout;
use fabric_pki::tls::TlsFiles;
use fabric_proto::v1::host_service_client::HostServiceClient;
use fabric_proto::v1::{GetHostStatusRequest, HostStatus, VmState};
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
