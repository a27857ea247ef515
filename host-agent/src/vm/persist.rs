//! Each VM's on-disk record, `<state>/vms/<vm_id>.json`, so a restarted host
//! agent can re-adopt the guest agents that kept running without it.
//!
//! Only public facts and digests are written: ids, the incarnation, the pid,
//! endpoints, the transfer certificate (public) and its fingerprint, the
//! secrets version, and the SHA-256 of the session token. Never a start
//! token, a session token or a secret. Writes are atomic (a temporary file
//! renamed over the record), so a host agent killed mid-write leaves the old
//! record or the new one, never half of one.

use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What a host agent remembers of one VM across its own restarts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredVm {
    pub vm_id: String,
    pub deployment: String,
    pub role: String,
    pub instance: u32,
    /// `fabric` or `waagent` (absent in records of older host agents:
    /// Fabric's).
    #[serde(default)]
    pub guest: String,
    pub incarnation: u64,
    /// `pending`, `starting`, `provisioned`, `running` or `reinitializing`.
    pub phase: String,
    pub clean: bool,
    pub strikes: u32,
    /// The guest agent's pid (also its process group id).
    pub pid: Option<u32>,
    /// The role's HTTPS endpoint (the guest's own).
    pub endpoint: String,
    /// Where a networking plugin makes it reachable (see netplug.rs).
    #[serde(default)]
    pub public_endpoint: String,
    #[serde(default)]
    pub public_bind: String,
    /// Where the guest agent's GuestAgentService listens.
    pub guest_agent_endpoint: String,
    pub guest_agent_version: String,
    pub transfer_cert_fingerprint: String,
    /// The transfer certificate, DER as hex (public).
    pub transfer_cert_der_hex: String,
    pub secrets_version: String,
    /// SHA-256 of the session token, hex; empty before Hello.
    pub session_token_sha256: String,
    /// Why the VM was last reinitialized.
    pub detail: String,
}

/// `<state>/vms/<vm_id>.json`.
pub fn record_path(state_dir: &Path, vm_id: &str) -> PathBuf {
    state_dir.join("vms").join(format!("{vm_id}.json"))
}

/// Writes `vm`'s record atomically (a temporary file renamed over the old
/// one), fsynced first if `sync`. Failures are logged: a lost record only
/// costs re-adoption (the VM is then reinitialized by the next host agent).
pub fn save(state_dir: &Path, vm: &StoredVm, sync: bool) {
    let path = record_path(state_dir, &vm.vm_id);
    if let Err(e) = write_atomically(&path, vm, sync) {
        tracing::warn!(path = %path.display(), "cannot write VM record: {e}");
    }
}

fn write_atomically(path: &Path, vm: &StoredVm, sync: bool) -> io::Result<()> {
    let text = serde_json::to_vec_pretty(vm).map_err(io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        if sync {
            file.sync_all()?;
        }
    }
    std::fs::rename(&tmp, path)
}

/// Removes `vm_id`'s record (the VM was stopped).
pub fn remove(state_dir: &Path, vm_id: &str) {
    let path = record_path(state_dir, vm_id);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), "cannot remove VM record: {e}"),
    }
}

/// Every readable record under `<state>/vms/`. Unreadable ones are logged
/// and removed (their VMs are then wiped like any unknown leftover).
pub fn load_all(state_dir: &Path) -> Vec<StoredVm> {
    let Ok(entries) = std::fs::read_dir(state_dir.join("vms")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".json.tmp") {
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let Some(vm_id) = name.strip_suffix(".json") else {
            continue;
        };
        let parsed = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| {
                serde_json::from_slice::<StoredVm>(&bytes).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(vm) if vm.vm_id == vm_id && super::process::valid_vm_id(vm_id) => out.push(vm),
            Ok(_) => {
                tracing::warn!(path = %path.display(), "VM record names another VM; ignoring it");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), "unreadable VM record ({e}); ignoring it");
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    out.sort_by(|a, b| a.vm_id.cmp(&b.vm_id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_replace_atomically() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("vms")).unwrap();
        let mut vm = StoredVm {
            vm_id: "web.frontend.0".into(),
            incarnation: 3,
            phase: "running".into(),
            pid: Some(42),
            ..StoredVm::default()
        };
        save(dir.path(), &vm, true);
        vm.incarnation = 4;
        // Unsynced (hollow hosts): still whole, still renamed into place.
        save(dir.path(), &vm, false);
        assert_eq!(load_all(dir.path()), vec![vm.clone()]);
        assert!(!dir.path().join("vms/web.frontend.0.json.tmp").exists());
        std::fs::write(dir.path().join("vms/bad.json"), "{").unwrap();
        assert_eq!(load_all(dir.path()), vec![vm]);
        assert!(!dir.path().join("vms/bad.json").exists());
        remove(dir.path(), "web.frontend.0");
        assert!(load_all(dir.path()).is_empty());
    }
}
