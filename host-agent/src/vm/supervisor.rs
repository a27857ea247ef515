//! The supervisor task: sleeps until the earliest VM deadline (a connect or
//! heartbeat timeout, or a pending spawn) or until something moved the
//! deadlines, then carries out what is due.

use super::manager::VmManager;
use std::sync::Arc;

/// Runs until the task is dropped.
pub async fn run(vms: Arc<VmManager>) {
    loop {
        vms.run_due();
        match vms.next_deadline() {
            Some(at) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = vms.woken() => {}
                }
            }
            None => vms.woken().await,
        }
    }
}
