//! Where a host's VMs run: guest-agent processes (the default, see
//! [`super::process::ProcessLauncher`]), or another runtime a caller plugs in.
//!
//! The hollow hosts of `fabric-hollow` plug in one whose guests are tasks of
//! the same process that call this host agent's [`GuestApi`] directly (as
//! kubemark's hollow nodes run the real kubelet over a fake container
//! runtime): everything else (registration, heartbeats, the VM state
//! machine, clean-VM strikes, fencing, sealing) is this crate's own code,
//! unchanged.

use super::process::Launcher;
use crate::guest_service::GuestApi;
use std::sync::Arc;

/// A way to run this host's VMs other than as guest-agent processes.
pub trait VmRuntime: Send + Sync + 'static {
    /// What the VM manager starts each VM incarnation with.
    fn launcher(&self) -> Box<dyn Launcher>;
    /// Called once, before any VM is launched: the guest service the
    /// runtime's guests call (in-process, instead of over a listener).
    fn attach(&self, guests: Arc<GuestApi>);
    /// Whether each VM record is fsynced when written (see
    /// [`super::persist::save`]). Real servers do; a runtime running
    /// thousands of hosts on one disk (hollow hosts) may not: each real
    /// server has a disk of its own, and a record lost to a power cut only
    /// costs re-adoption.
    fn sync_records(&self) -> bool {
        true
    }
}
