//! A local etcd cluster of real `etcd` processes (Debian's `etcd-server`
//! package) on loopback, for tests and for a laptop's replicated
//! controller: each member its own data directory and two free ports
//! (clients, peers), all killed when this is dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The `etcd` binary: `$FABRIC_ETCD_BIN`, else `etcd` on the PATH.
pub fn etcd_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("FABRIC_ETCD_BIN") {
        return Some(PathBuf::from(bin));
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("etcd"))
            .find(|candidate| candidate.is_file())
    })
}

/// One member as started.
pub struct Member {
    pub name: String,
    /// `127.0.0.1:PORT` for clients.
    pub client: String,
    child: Option<Child>,
}

/// Members of one local etcd cluster.
pub struct LocalEtcd {
    pub members: Vec<Member>,
}

/// A port free now on loopback.
pub fn free_port() -> std::io::Result<u16> {
    // Bound and released: another process could take it in between, which
    // etcd then reports as an address in use (the caller sees its log).
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// How one member of a local cluster is started: what `fabricctl up`
/// supervises, and what [`LocalEtcd::start`] spawns.
#[derive(Clone, Debug)]
pub struct MemberPlan {
    pub name: String,
    /// `127.0.0.1:PORT` for clients.
    pub client: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Where its log goes: `<dir>/<name>.log`.
    pub log: PathBuf,
}

/// Plans a local cluster of `count` members under `dir` (one data
/// directory each, created here), on free loopback ports.
pub fn plan(dir: &Path, count: usize) -> std::io::Result<Vec<MemberPlan>> {
    let ports: Vec<(u16, u16)> = (0..count)
        .map(|_| Ok((free_port()?, free_port()?)))
        .collect::<std::io::Result<_>>()?;
    plan_on(dir, &ports)
}

/// [`plan`] on given (client, peer) ports: a member's data remembers its
/// peers' addresses, so a cluster started again on the same directory
/// must use the same ports.
pub fn plan_on(dir: &Path, ports: &[(u16, u16)]) -> std::io::Result<Vec<MemberPlan>> {
    let bin = etcd_bin().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no etcd binary: install Debian's etcd-server (apt-get install etcd-server) \
             or set FABRIC_ETCD_BIN",
        )
    })?;
    let initial = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("etcd-{i}=http://127.0.0.1:{peer}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members = Vec::new();
    for (i, &(client, peer)) in ports.iter().enumerate() {
        let name = format!("etcd-{i}");
        let data = dir.join(&name);
        std::fs::create_dir_all(&data)?;
        let args = vec![
            "--name".into(),
            name.clone(),
            "--data-dir".into(),
            data.display().to_string(),
            "--listen-client-urls".into(),
            format!("http://127.0.0.1:{client}"),
            "--advertise-client-urls".into(),
            format!("http://127.0.0.1:{client}"),
            "--listen-peer-urls".into(),
            format!("http://127.0.0.1:{peer}"),
            "--initial-advertise-peer-urls".into(),
            format!("http://127.0.0.1:{peer}"),
            "--initial-cluster".into(),
            initial.clone(),
            "--initial-cluster-state".into(),
            "new".into(),
            "--initial-cluster-token".into(),
            "fabric-local".into(),
            // Old revisions go after an hour, so history does not grow
            // without end (nothing here compacts it otherwise).
            "--auto-compaction-mode".into(),
            "periodic".into(),
            "--auto-compaction-retention".into(),
            "1h".into(),
        ];
        members.push(MemberPlan {
            log: dir.join(format!("{name}.log")),
            name,
            client: format!("127.0.0.1:{client}"),
            program: bin.clone(),
            args,
        });
    }
    Ok(members)
}

impl LocalEtcd {
    /// Starts `count` members under `dir` (see [`plan`]). Returns once
    /// they are spawned; [`LocalEtcd::wait_ready`] waits for a leader.
    pub fn start(dir: &Path, count: usize) -> std::io::Result<Self> {
        let mut members = Vec::new();
        for plan in plan(dir, count)? {
            let log = std::fs::File::create(&plan.log)?;
            let child = Command::new(&plan.program)
                .args(&plan.args)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            members.push(Member {
                name: plan.name,
                client: plan.client,
                child: Some(child),
            });
        }
        Ok(Self { members })
    }

    /// Every member's client address.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// Waits until the cluster answers a linearizable read (it has elected
    /// a Raft leader), for at most `within`.
    pub fn wait_ready(&self, within: std::time::Duration) -> Result<(), String> {
        let etcd = crate::BlockingEtcd::new(&self.endpoints(), std::time::Duration::from_secs(1))
            .map_err(|e| e.to_string())?;
        let started = std::time::Instant::now();
        loop {
            match etcd.call(|etcd| async move { etcd.get_prefix(b"/").await }) {
                Ok(_) => return Ok(()),
                // Expected while the members find each other.
                Err(_) if started.elapsed() < within => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => return Err(format!("etcd not ready after {within:?}: {e}")),
            }
        }
    }

    /// SIGKILLs member `i` (a crashed etcd member).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members.get_mut(i).and_then(|m| m.child.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether tests that need a real etcd can run: true if a binary is found;
/// otherwise false with a loud notice, or a panic when CI=true (CI installs
/// Debian's etcd-server and must not skip them).
pub fn available_for_tests(test: &str) -> bool {
    if etcd_bin().is_some() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test}: no etcd binary (apt-get install etcd-server); CI=true needs it");
    }
    eprintln!("\n!!! {test} SKIPPED: no etcd (apt-get install etcd-server)\n");
    false
}

impl Drop for LocalEtcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
