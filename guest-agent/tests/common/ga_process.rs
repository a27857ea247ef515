//! The guest agent as the host agent runs it: the real binary, token in the environment, logs to
//! a file (printed when a test fails, to see why).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use tokio::process::{Child, Command};

use super::fake_host::{NODE, Pki, START_TOKEN};
use super::{DEADLINE, eventually};

pub const VM_ID: &str = "web.frontend.0";
pub const INCARNATION: u64 = 3;

/// A running `guest-agent run`, killed when dropped.
pub struct GaProcess {
    pub child: Child,
    pub log: PathBuf,
    pub vm_dir: PathBuf,
}

impl GaProcess {
    /// Starts the agent for [`VM_ID`]/[`INCARNATION`] against `host_url` with `extra` flags.
    pub fn spawn(pki: &Pki, host_url: &str, work: &Path, token: &str, extra: &[&str]) -> Self {
        let vm_dir = work.join("vms").join(VM_ID);
        std::fs::create_dir_all(&vm_dir).unwrap();
        let log = work.join("ga.log");
        let mut command = Command::new(env!("CARGO_BIN_EXE_guest-agent"));
        command
            .arg("run")
            .args(["--vm-id", VM_ID])
            .args(["--incarnation", &INCARNATION.to_string()])
            .args(["--host-agent", host_url])
            .arg("--ca")
            .arg(pki.ca_path())
            .arg("--vm-dir")
            .arg(&vm_dir)
            .args(["--node", NODE])
            .args(["--listen-ip", "127.0.0.1"])
            .args(extra)
            .env("FABRIC_GUEST_TOKEN", token)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        let child = command.spawn().unwrap();
        Self { child, log, vm_dir }
    }

    /// Starts the agent with the right start token.
    pub fn spawn_ok(pki: &Pki, host_url: &str, work: &Path, extra: &[&str]) -> Self {
        Self::spawn(pki, host_url, work, START_TOKEN, extra)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (with the deadline) for the process to exit.
    pub async fn exit_status(&mut self) -> ExitStatus {
        match tokio::time::timeout(DEADLINE, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("guest agent did not exit; log:\n{}", self.log_text()),
        }
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) {
        eventually(&format!("{needle:?} in the guest agent log"), || async {
            self.log_text().contains(needle).then_some(())
        })
        .await;
    }

    /// Sends SIGTERM, as the host agent does to stop a VM's agent gracefully.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("still running") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
}
