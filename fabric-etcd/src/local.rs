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

fn free_port() -> std::io::Result<u16> {
    // Bound and released: another process could take it in between, which
    // etcd then reports as an address in use (the caller sees its log).
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl LocalEtcd {
    /// Starts `count` members under `dir` (one data directory and one log
    /// file each), logging to `<dir>/<name>.log`. Returns once they are
    /// spawned; the first call to them waits for them to elect a leader.
    pub fn start(dir: &Path, count: usize) -> std::io::Result<Self> {
        let bin = etcd_bin().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no etcd binary: install Debian's etcd-server (apt-get install etcd-server) \
                 or set FABRIC_ETCD_BIN",
            )
        })?;
        let ports: Vec<(u16, u16)> = (0..count)
            .map(|_| Ok((free_port()?, free_port()?)))
            .collect::<std::io::Result<_>>()?;
        let initial = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("etcd-{i}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.into_iter().enumerate() {
            let name = format!("etcd-{i}");
            let data = dir.join(&name);
            std::fs::create_dir_all(&data)?;
            let log = std::fs::File::create(dir.join(format!("{name}.log")))?;
            let child = Command::new(&bin)
                .args(["--name", &name, "--data-dir"])
                .arg(&data)
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                    "--listen-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                    "--initial-cluster",
                    &initial,
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "fabric-local",
                ])
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            members.push(Member {
                name,
                client: format!("127.0.0.1:{client}"),
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
