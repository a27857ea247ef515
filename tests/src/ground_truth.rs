//! Ground truth read from each host agent directly, not from the
//! controller's view: what VMs a server really runs. Chaos and healing tests
//! compare the two.

use fabric_pki::PkiLayout;
use fabric_pki::tls::TlsFiles;
use fabric_proto::v1::host_service_client::HostServiceClient;
use fabric_proto::v1::{GetHostStatusRequest, VmState};
use std::path::Path;

/// The admin certificate of the local cluster in `state_dir`.
pub fn admin_files(state_dir: &Path) -> TlsFiles {
    let layout = PkiLayout::new(state_dir.join("pki"));
    TlsFiles::new(layout.ca_cert(), &layout.admin())
}

/// (VM id, state, incarnation) of every VM host agent `endpoint` reports.
pub async fn host_vms(
    endpoint: &str,
    files: &TlsFiles,
) -> Result<Vec<(String, VmState, u64)>, String> {
    let url = format!("https://{endpoint}");
    let channel = crate::connect(&url, files)
        .await
        .map_err(|e| format!("connect {url}: {e}"))?;
    let status = HostServiceClient::new(channel)
        .get_host_status(GetHostStatusRequest {})
        .await
        .map_err(|e| format!("GetHostStatus {url}: {e}"))?
        .into_inner();
    Ok(status
        .vms
        .into_iter()
        .map(|vm| {
            let state = vm.state();
            (vm.vm_id, state, vm.incarnation)
        })
        .collect())
}
