//! One user per VM: what keeps one VM from reading another's secrets.
//!
//! Each VM's directory holds its opened secrets and transfer key, and its
//! guest agent's environment holds its start token. Run as the host agent's
//! user, every VM could read every other VM's (issue 13, finding 7). When the
//! host agent runs as root and `--vm-users` is on, each VM instead runs as a
//! numeric user of its own (`--vm-uid-base` and up; no /etc/passwd entry is
//! needed, so it works in a `FROM scratch` image), with no supplementary
//! groups, in a 0700 directory it owns, with its own copy of the cluster CA
//! certificate (the host's may sit in a directory it cannot enter). A VM keeps
//! its user for the host agent's life, and a restarted host agent learns the
//! users of VMs that outlived it from their directories' owners, so no two
//! VMs ever share one.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// How this host's VMs are kept apart, for logs and /metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Each VM runs as its own user.
    PerVmUsers,
    /// `--vm-users` was asked for, but the host agent is not root.
    SharedNotRoot,
    /// `--vm-users` is off: every VM runs as the host agent's user.
    SharedOff,
}

impl Isolation {
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::PerVmUsers => "per-vm-users",
            Isolation::SharedNotRoot => "shared-user-not-root",
            Isolation::SharedOff => "shared-user",
        }
    }
}

/// The users given to VMs.
#[derive(Debug)]
pub struct VmUsers {
    base: u32,
    assigned: Mutex<BTreeMap<String, u32>>,
}

impl VmUsers {
    /// Users from `base` up; VMs already in `vms_dir` keep theirs.
    pub fn new(base: u32, vms_dir: &Path) -> Self {
        let mut assigned = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(vms_dir) {
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() && meta.uid() >= base {
                    assigned.insert(entry.file_name().to_string_lossy().into_owned(), meta.uid());
                }
            }
        }
        Self {
            base,
            assigned: Mutex::new(assigned),
        }
    }

    /// The user of `vm_id`: the one it had, or the lowest no VM has.
    pub fn user_of(&self, vm_id: &str) -> u32 {
        let mut assigned = self.assigned.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(uid) = assigned.get(vm_id) {
            return *uid;
        }
        let taken: std::collections::BTreeSet<u32> = assigned.values().copied().collect();
        let uid = (self.base..)
            .find(|u| !taken.contains(u))
            .expect("fewer VMs than user ids");
        assigned.insert(vm_id.to_owned(), uid);
        uid
    }

    /// Hands `vm_dir` to `uid` (0700) with a copy of the CA certificate;
    /// returns the copy's path, for the guest agent's --ca.
    pub fn prepare(&self, vm_dir: &Path, uid: u32, ca: &Path) -> io::Result<PathBuf> {
        let own_ca = vm_dir.join("cluster-ca.pem");
        std::fs::copy(ca, &own_ca)?;
        for path in [own_ca.as_path(), vm_dir] {
            std::os::unix::fs::chown(path, Some(uid), Some(uid))?;
        }
        std::fs::set_permissions(vm_dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(own_ca)
    }
}

/// What `--vm-users` gives on this process.
pub fn isolation(asked: bool) -> Isolation {
    match (asked, nix::unistd::geteuid().is_root()) {
        (true, true) => Isolation::PerVmUsers,
        (true, false) => Isolation::SharedNotRoot,
        (false, _) => Isolation::SharedOff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vm_gets_a_user_of_its_own_and_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let users = VmUsers::new(20_000, dir.path());
        let a = users.user_of("web.frontend.0");
        let b = users.user_of("web.frontend.1");
        assert_ne!(a, b);
        assert!(a >= 20_000 && b >= 20_000);
        assert_eq!(
            users.user_of("web.frontend.0"),
            a,
            "kept across incarnations"
        );
    }

    /// As root only (CI and containers run as root): a VM's directory is its
    /// own, and a restarted host agent learns who owns which.
    #[test]
    fn directories_are_handed_over_and_remembered() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("not root: chown cannot be tested here");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "CA").unwrap();
        let vms = dir.path().join("vms");
        let vm = vms.join("web.frontend.0");
        std::fs::create_dir_all(&vm).unwrap();
        let users = VmUsers::new(30_000, &vms);
        let uid = users.user_of("web.frontend.0");
        let own_ca = users.prepare(&vm, uid, &ca).unwrap();
        let meta = std::fs::metadata(&vm).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (uid, 0o700));
        assert_eq!(std::fs::metadata(&own_ca).unwrap().uid(), uid);
        let again = VmUsers::new(30_000, &vms);
        assert_eq!(again.user_of("web.frontend.0"), uid);
        assert_ne!(again.user_of("web.api.0"), uid);
    }
}
