//! What this server runs, and restarting into the package a rollout names.
//!
//! A heartbeat reply may carry a target (see fabric-core's `rollout`): a
//! package, or "base" (the binaries the server was set up with). The host
//! agent then:
//!
//! 1. fetches the package's three artifacts from the controller into
//!    `<state>/packages/<version>/`, each checked against the manifest's
//!    SHA-256 before it is kept (a corrupted or substituted binary is never
//!    run);
//! 2. records the package as this server's in `<state>/packages/current.json`
//!    (written whole, then renamed);
//! 3. replaces itself (exec, same pid) with the package's host agent, run
//!    with the base's arguments plus the package's flags. The new host agent
//!    re-adopts the running VMs exactly as a restarted one does: VMs are
//!    separate processes and keep serving throughout.
//!
//! Whoever supervises the host agent (fabricctl up, a container) always
//! starts the base binary. The base reads `current.json` at start and, if
//! it names a package, execs into it again, so a host agent killed during or
//! after an update comes back on the package its server was moved to, not on
//! the base. The base records its own executable and arguments
//! (`base.json`) so a package host agent can go back to it.

use fabric_proto::v1::{self as pb, node_service_client::NodeServiceClient};
use serde::{Deserialize, Serialize};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

/// Pause after a failed update before the next attempt.
const RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// What this host agent runs, from its flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Running {
    /// `None`: the base binaries.
    pub package: Option<String>,
    pub host_agent: String,
    pub guest_agent: String,
    pub plugin: String,
}

impl Running {
    pub fn to_pb(&self) -> pb::RunningSoftware {
        pb::RunningSoftware {
            package: self.package.clone().unwrap_or_default(),
            host_agent: self.host_agent.clone(),
            guest_agent: self.guest_agent.clone(),
            plugin: self.plugin.clone(),
        }
    }
}

/// One file of an installed package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalledFile {
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub flags: Vec<String>,
}

/// A package whose files are on this server, verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    pub version: String,
    pub host_agent: InstalledFile,
    pub guest_agent: InstalledFile,
    pub plugin: InstalledFile,
}

impl Installed {
    fn from_manifest(m: &pb::PackageManifest) -> anyhow::Result<Self> {
        let file = |what: &str, a: &Option<pb::Artifact>| -> anyhow::Result<InstalledFile> {
            let a = a
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("package {} has no {what}", m.version))?;
            // The controller validated these; a host checks again what it
            // turns into paths.
            let plain = !a.file.is_empty()
                && !a.file.starts_with('.')
                && a.file
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            anyhow::ensure!(
                plain,
                "package {} names a bad {what} file {:?}",
                m.version,
                a.file
            );
            Ok(InstalledFile {
                version: a.version.clone(),
                file: a.file.clone(),
                sha256: a.sha256.clone(),
                flags: a.flags.clone(),
            })
        };
        let version_ok = !m.version.is_empty()
            && !m.version.starts_with('.')
            && m.version
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
        anyhow::ensure!(version_ok, "bad package version {:?}", m.version);
        Ok(Self {
            version: m.version.clone(),
            host_agent: file("host agent", &m.host_agent)?,
            guest_agent: file("guest agent", &m.guest_agent)?,
            plugin: file("networking plugin", &m.plugin)?,
        })
    }

    fn files(&self) -> [&InstalledFile; 3] {
        [&self.host_agent, &self.guest_agent, &self.plugin]
    }

    /// The flags that make a host agent run this package.
    fn flags(&self, dir: &Path) -> Vec<String> {
        let mut flags = vec![
            "--package".into(),
            self.version.clone(),
            "--host-agent-version".into(),
            self.host_agent.version.clone(),
            "--guest-agent-version".into(),
            self.guest_agent.version.clone(),
            "--plugin-version".into(),
            self.plugin.version.clone(),
            "--guest-agent-bin".into(),
            dir.join(&self.guest_agent.file).display().to_string(),
            "--netplug-bin".into(),
            dir.join(&self.plugin.file).display().to_string(),
        ];
        flags.extend(self.host_agent.flags.iter().cloned());
        for f in &self.guest_agent.flags {
            flags.push(format!("--guest-agent-arg={f}"));
        }
        for f in &self.plugin.flags {
            flags.push(format!("--netplug-arg={f}"));
        }
        flags
    }
}

/// How this server was set up: the base executable and its arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Base {
    exe: PathBuf,
    args: Vec<String>,
}

/// `<state>/packages`: installed packages, `current.json`, `base.json`.
#[derive(Clone, Debug)]
pub struct Packages {
    dir: PathBuf,
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(ctx.finish().as_ref()))
}

impl Packages {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("packages"),
        }
    }

    fn package_dir(&self, version: &str) -> PathBuf {
        self.dir.join(version)
    }

    fn current_path(&self) -> PathBuf {
        self.dir.join("current.json")
    }

    /// The package this server was moved to, if any.
    pub fn current(&self) -> anyhow::Result<Option<Installed>> {
        let path = self.current_path();
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!("{} is unreadable: {e}", path.display())
            })?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", path.display())),
        }
    }

    /// Every file of `p` is here with its manifest's digest.
    fn verify(&self, p: &Installed) -> anyhow::Result<()> {
        let dir = self.package_dir(&p.version);
        for f in p.files() {
            let path = dir.join(&f.file);
            let got = sha256_file(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            anyhow::ensure!(
                got == f.sha256,
                "{} has SHA-256 {got}, its package says {}",
                path.display(),
                f.sha256
            );
        }
        Ok(())
    }

    /// Called by a base host agent at start: remembers how it was started,
    /// for a package host agent that must go back to it.
    pub fn remember_base(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let base = Base {
            exe: std::env::current_exe()?,
            args: std::env::args().skip(1).collect(),
        };
        fabric_daemon::files::write_atomically(
            &self.dir.join("base.json"),
            serde_json::to_vec_pretty(&base)?,
        )?;
        Ok(())
    }

    fn base(&self) -> anyhow::Result<Base> {
        let path = self.dir.join("base.json");
        let bytes = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (how this server was set up)", path.display()))?;
        Ok(serde_json::from_slice(&bytes)?)
    }

    /// At start: if this server was moved to other software than this
    /// process runs, become it. Returns only if there is nothing to do, or
    /// the package is unusable (then it is forgotten, and this host agent
    /// runs on and reports what it runs: the rollout will ask again).
    pub fn resume(&self, running: &Running) -> anyhow::Result<()> {
        let current = match self.current() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e}; running as this binary");
                let _ = std::fs::remove_file(self.current_path());
                None
            }
        };
        let wanted = current.as_ref().map(|c| c.version.as_str());
        if wanted == running.package.as_deref() {
            return Ok(());
        }
        if let Some(c) = &current
            && let Err(e) = self.verify(c)
        {
            tracing::error!(package = %c.version, "installed package is not intact ({e}); forgetting it and running as this binary");
            let _ = std::fs::remove_file(self.current_path());
            return Ok(());
        }
        tracing::info!(
            package = wanted.unwrap_or("base"),
            "this server was moved to other software: restarting into it"
        );
        Err(self.exec_into(current.as_ref()))
    }

    /// Replaces this process with the host agent of `package` (`None`:
    /// base). Returns only if exec failed.
    fn exec_into(&self, package: Option<&Installed>) -> anyhow::Error {
        let base = match self.base() {
            Ok(b) => b,
            Err(e) => return e,
        };
        let (exe, args) = match package {
            Some(p) => {
                let dir = self.package_dir(&p.version);
                let mut args = base.args.clone();
                args.extend(p.flags(&dir));
                (dir.join(&p.host_agent.file), args)
            }
            None => (base.exe.clone(), base.args.clone()),
        };
        tracing::warn!(exe = %exe.display(), "exec: the host agent restarts into other software; VMs keep running");
        let err = std::process::Command::new(&exe).args(&args).exec();
        anyhow::anyhow!("cannot exec {}: {err}", exe.display())
    }
}

/// Carries out a target from a heartbeat reply, one at a time.
pub struct Updater {
    packages: Packages,
    client: NodeServiceClient<crate::controller_link::ControllerChannel>,
    running: Running,
    busy: AtomicBool,
}

impl Updater {
    pub fn new(
        packages: Packages,
        client: NodeServiceClient<crate::controller_link::ControllerChannel>,
        running: Running,
    ) -> Self {
        Self {
            packages,
            client,
            running,
            busy: AtomicBool::new(false),
        }
    }

    pub fn running(&self) -> &Running {
        &self.running
    }

    /// Starts moving to `target` unless this server runs it already or a
    /// move is under way. Failures are logged; the next heartbeat's reply
    /// names the target again, so a failed fetch is retried.
    pub fn consider(self: &Arc<Self>, target: Option<&pb::SoftwareTarget>) {
        let Some(target) = target else { return };
        let wanted = target.package.as_ref().map(|m| m.version.clone());
        if wanted == self.running.package || self.busy.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.clone();
        let target = target.clone();
        tokio::spawn(async move {
            let err = me.update(target).await;
            tracing::error!(
                "update failed: {err:#}; will try again when asked, in {RETRY:?} at the soonest"
            );
            // A fetch that keeps failing (a bad digest, a full disk) must
            // not turn into a download per heartbeat.
            tokio::time::sleep(RETRY).await;
            me.busy.store(false, Ordering::Release);
        });
    }

    /// Returns only on failure (success execs).
    async fn update(&self, target: pb::SoftwareTarget) -> anyhow::Error {
        let Some(manifest) = target.package else {
            tracing::info!(
                update = target.update_id,
                "asked to go back to the base binaries"
            );
            if let Err(e) = std::fs::remove_file(self.packages.current_path())
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return e.into();
            }
            return self.packages.exec_into(None);
        };
        let installed = match Installed::from_manifest(&manifest) {
            Ok(i) => i,
            Err(e) => return e,
        };
        tracing::info!(update = target.update_id, package = %installed.version, "fetching package");
        for f in installed.files() {
            if let Err(e) = self.fetch(&installed.version, f).await {
                return e;
            }
        }
        let record = match serde_json::to_vec_pretty(&installed) {
            Ok(r) => r,
            Err(e) => return e.into(),
        };
        if let Err(e) =
            fabric_daemon::files::write_atomically(&self.packages.current_path(), record)
        {
            return e.into();
        }
        self.packages.exec_into(Some(&installed))
    }

    /// One artifact into the package's directory, verified before it is
    /// kept; an intact copy already there is not fetched again.
    async fn fetch(&self, version: &str, f: &InstalledFile) -> anyhow::Result<()> {
        let dir = self.packages.package_dir(version);
        let path = dir.join(&f.file);
        if sha256_file(&path).is_ok_and(|got| got == f.sha256) {
            return Ok(());
        }
        tokio::fs::create_dir_all(&dir).await?;
        let part = dir.join(format!("{}.part", f.file));
        let mut out = tokio::fs::File::create(&part).await?;
        let mut stream = self
            .client
            .clone()
            .fetch_artifact(pb::FetchArtifactRequest {
                package: version.to_owned(),
                file: f.file.clone(),
            })
            .await?
            .into_inner();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            ctx.update(&chunk.data);
            out.write_all(&chunk.data).await?;
        }
        out.sync_all().await?;
        drop(out);
        let got = hex::encode(ctx.finish().as_ref());
        if got != f.sha256 {
            let _ = tokio::fs::remove_file(&part).await;
            anyhow::bail!(
                "{} of package {version}: SHA-256 {got}, the manifest says {}; not kept",
                f.file,
                f.sha256
            );
        }
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(&part, std::fs::Permissions::from_mode(0o755)).await?;
        tokio::fs::rename(&part, &path).await?;
        tracing::info!(file = %path.display(), "artifact fetched and verified");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(file: &str, bytes: &[u8]) -> pb::Artifact {
        pb::Artifact {
            version: "2.0".into(),
            file: file.into(),
            size: bytes.len() as u64,
            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()),
            flags: vec!["--x".into()],
        }
    }

    fn manifest() -> pb::PackageManifest {
        pb::PackageManifest {
            version: "p2".into(),
            host_agent: Some(artifact("host-agent", b"ha")),
            guest_agent: Some(artifact("guest-agent", b"ga")),
            plugin: Some(artifact("netplug", b"np")),
            plugin_compatible_host_agents: vec!["2.*".into()],
            forced: false,
        }
    }

    #[test]
    fn a_manifest_never_names_a_path() {
        Installed::from_manifest(&manifest()).unwrap();
        let mut m = manifest();
        m.version = "../p2".into();
        assert!(Installed::from_manifest(&m).is_err());
        let mut m = manifest();
        m.guest_agent = Some(artifact("../../bin/sh", b"x"));
        assert!(Installed::from_manifest(&m).is_err());
        let mut m = manifest();
        m.plugin = None;
        assert!(Installed::from_manifest(&m).is_err());
    }

    #[test]
    fn the_package_flags_name_its_files_and_carry_its_own() {
        let p = Installed::from_manifest(&manifest()).unwrap();
        let flags = p.flags(Path::new("/s/packages/p2"));
        let joined = flags.join(" ");
        assert!(joined.contains("--package p2"), "{joined}");
        assert!(
            joined.contains("--guest-agent-bin /s/packages/p2/guest-agent"),
            "{joined}"
        );
        assert!(
            joined.contains("--netplug-bin /s/packages/p2/netplug"),
            "{joined}"
        );
        assert!(
            flags.contains(&"--guest-agent-arg=--x".to_owned()),
            "{joined}"
        );
        assert!(flags.contains(&"--netplug-arg=--x".to_owned()), "{joined}");
    }

    #[test]
    fn a_package_not_intact_is_forgotten_not_run() {
        let dir = tempfile::tempdir().unwrap();
        let packages = Packages::new(dir.path());
        let p = Installed::from_manifest(&manifest()).unwrap();
        let pdir = packages.package_dir("p2");
        std::fs::create_dir_all(&pdir).unwrap();
        std::fs::write(pdir.join("host-agent"), b"ha").unwrap();
        std::fs::write(pdir.join("guest-agent"), b"tampered").unwrap();
        std::fs::write(pdir.join("netplug"), b"np").unwrap();
        std::fs::create_dir_all(&packages.dir).unwrap();
        std::fs::write(packages.current_path(), serde_json::to_vec(&p).unwrap()).unwrap();
        assert!(packages.verify(&p).is_err());
        // Resuming as the base: the package is not intact, so it is
        // forgotten and this process runs on (no exec).
        packages.resume(&Running::default()).unwrap();
        assert!(packages.current().unwrap().is_none());
    }
}
