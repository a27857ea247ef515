//! Where the real WALinuxAgent keeps its state for one VM, and how it is
//! started against that VM's wire server.
//!
//! In Azure the agent finds the wire server at 168.63.129.16:80. Here it
//! must not: when `<Lib.Dir>/Protocol` says `WireProtocol`, the agent takes
//! `<Lib.Dir>/WireServerEndpoint` verbatim (`get_protocol` in
//! common/protocol/util.py), so each VM's Lib.Dir names its own loopback
//! port. The daemon (`waagent -daemon`) insists on the Azure address, so
//! the agent runs in two steps of its own code, in one process
//! ([`AgentDir::command`]):
//! 1. what the daemon does when it finds the protocol,
//!    `WireProtocol(endpoint).detect()`: asks the versions, makes the
//!    transfer certificate (`openssl req -x509 -nodes -subj
//!    /CN=LinuxTransport -days 730 -newkey rsa:2048`) and fetches the first
//!    goal state with its certificates: the first step of guest
//!    initialization in the postmortem's words;
//! 2. then it becomes (exec) its goal-state loop alone, `waagent
//!    -run-exthandlers -debug` (without `-debug` it exits, finding no
//!    daemon as its parent), which reports status.

use std::io;
use std::path::{Path, PathBuf};

/// Settings that keep the agent to its guest-agent duties on a machine
/// that is not an Azure VM.
const SETTINGS: &[(&str, &str)] = &[
    // No provisioning: Fabric's VM is already provisioned.
    ("Provisioning.Agent", "disabled"),
    // Goal state from the wire server only (no HostGAPlugin vmSettings).
    ("Debug.EnableFastTrack", "n"),
    // It would add iptables rules for 168.63.129.16.
    ("OS.EnableFirewall", "n"),
    ("ResourceDisk.Format", "n"),
    // Fabric rolls its agents itself.
    ("AutoUpdate.Enabled", "n"),
    // Cgroups would need root and systemd.
    ("Debug.CgroupCheckPeriod", "300"),
    ("Logs.Verbose", "n"),
];

/// The daemon's protocol detection, run by the agent's own modules with
/// this VM's configuration (the first argument), then the goal-state loop
/// (the rest of the arguments, exec'd: one process, one pid).
const DETECT_THEN_RUN: &str = "\
import os, sys
from azurelinuxagent.common import conf
conf.load_conf_from_file(sys.argv[1])
from azurelinuxagent.common.protocol.util import get_protocol_util
from azurelinuxagent.common.protocol.wire import WireProtocol
WireProtocol(get_protocol_util().get_wireserver_endpoint()).detect()
sys.stdout.flush()
os.execv(sys.argv[2], sys.argv[2:])
";

/// `waagent` on PATH, else in /usr/sbin (where Debian installs it, often
/// not on a non-root PATH).
pub fn find_waagent() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("waagent"))
        .find(|p| p.is_file())
}

/// One VM's agent directory: `<dir>/waagent.conf` and `<dir>/lib/`.
#[derive(Clone, Debug)]
pub struct AgentDir {
    /// The agent's Lib.Dir: its transfer certificate, the certificates it
    /// opened (`<thumbprint>.crt` and `.prv`), its goal-state copies.
    pub lib_dir: PathBuf,
    /// Its configuration file.
    pub config: PathBuf,
}

impl AgentDir {
    /// Lays out `dir` for an agent talking to the wire server at
    /// `endpoint` (`host:port`). The Lib.Dir is private to its owner: it
    /// will hold the transfer key and the role's keys.
    pub fn prepare(dir: &Path, endpoint: &str) -> io::Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let lib_dir = dir.join("lib");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&lib_dir)?;
        std::fs::write(lib_dir.join("Protocol"), "WireProtocol")?;
        std::fs::write(lib_dir.join("WireServerEndpoint"), endpoint)?;
        let mut conf = format!("Lib.Dir={}\n", lib_dir.display());
        for (key, value) in SETTINGS {
            conf.push_str(&format!("{key}={value}\n"));
        }
        let config = dir.join("waagent.conf");
        std::fs::write(&config, conf)?;
        Ok(Self { lib_dir, config })
    }

    /// The command (program, arguments) that runs the agent for this VM:
    /// its interpreter running the daemon's first step with the agent's own
    /// code, which then becomes `waagent -run-exthandlers -debug` (see the
    /// module doc). `waagent` is the agent's script; its interpreter is the
    /// one its `#!` line names, the one that sees the agent's modules.
    pub fn command(&self, waagent: &Path) -> io::Result<(PathBuf, Vec<String>)> {
        let script = std::fs::read_to_string(waagent)?;
        let python = script
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("#!"))
            .and_then(|l| l.split_whitespace().next())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} has no #! line naming its Python", waagent.display()),
                )
            })?;
        let mut args = vec![
            "-c".into(),
            DETECT_THEN_RUN.into(),
            self.config.display().to_string(),
            waagent.display().to_string(),
        ];
        args.extend([
            "-run-exthandlers".into(),
            "-debug".into(),
            format!("-configuration-path:{}", self.config.display()),
        ]);
        Ok((PathBuf::from(python), args))
    }

    /// The certificate and key files the agent wrote for `thumbprint`,
    /// once it has opened its certificates.
    pub fn opened(&self, thumbprint: &str) -> (PathBuf, PathBuf) {
        (
            self.lib_dir.join(format!("{thumbprint}.crt")),
            self.lib_dir.join(format!("{thumbprint}.prv")),
        )
    }
}
