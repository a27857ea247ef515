//! Running the networking plugin (`fabric-netplug`) and programming it.
//!
//! With `--netplug-bin`, a VM's role no longer serves on its server's
//! public address itself: its guest agent binds a private address, this
//! host agent gives the VM a public endpoint ([`PublicEndpoints`]), and the
//! plugin forwards one to the other. What the controller (and every client)
//! sees is the public endpoint, so it reaches the VM only if the plugin
//! works: the 2012 secondary outage's failure, made observable.
//!
//! The plugin is a process of its own (its own process group, like a VM):
//! a host agent that restarts, or execs into a package, finds it running
//! and keeps it if it is the plugin it would start (same program and
//! arguments), so endpoints keep forwarding throughout; otherwise (a package
//! brought another plugin) it replaces it. A plugin that dies is started
//! again within a second. The bindings file is rewritten whole whenever the
//! VMs' endpoints change, in the interface version this host agent speaks
//! (`--netplug-api`).

use crate::vm::VmManager;
use fabric_netplug::bindings::{self, Binding};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How often the watchdog looks at the plugin and the bindings.
const LOOK: Duration = Duration::from_millis(200);

/// Where public role endpoints go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicEndpoints {
    /// The address the plugin binds.
    pub bind_ip: IpAddr,
    /// The address reported to the controller (clients use it).
    pub advertise_ip: IpAddr,
    /// Inclusive port range; `None`: a free port.
    pub ports: Option<(u16, u16)>,
}

impl PublicEndpoints {
    /// A public endpoint for a VM: a port of the range no other VM of this
    /// host has and nothing else holds now, or a port the system has free
    /// now. Returns the bind address and the advertised one. The check is a
    /// probe, so a port can still be taken before the plugin binds it; the
    /// plugin then reports it and the VM gets another
    /// (`VmManager::set_plugin_view`).
    pub fn allocate(&self, taken: &HashSet<u16>) -> Option<(SocketAddr, SocketAddr)> {
        let free = |p: u16| std::net::TcpListener::bind((self.bind_ip, p)).is_ok();
        let port = match self.ports {
            Some((first, last)) => (first..=last).find(|p| !taken.contains(p) && free(*p))?,
            None => std::net::TcpListener::bind((self.bind_ip, 0))
                .ok()?
                .local_addr()
                .ok()?
                .port(),
        };
        Some((
            SocketAddr::new(self.bind_ip, port),
            SocketAddr::new(self.advertise_ip, port),
        ))
    }
}

/// The plugin as this host agent runs it.
pub struct NetPlug {
    dir: PathBuf,
    bin: PathBuf,
    /// The bindings interface version this host agent writes.
    api: u32,
    /// Extra arguments (a package's plugin flags).
    extra: Vec<String>,
    version: String,
}

impl NetPlug {
    pub fn new(
        state_dir: &Path,
        bin: PathBuf,
        api: u32,
        extra: Vec<String>,
        version: String,
    ) -> Self {
        Self {
            dir: state_dir.join("netplug"),
            bin,
            api,
            extra,
            version,
        }
    }

    fn bindings_path(&self) -> PathBuf {
        self.dir.join("bindings.json")
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// The plugin's full command line, to start it and to recognise it.
    fn argv(&self) -> Vec<String> {
        let mut argv = vec![
            self.bin.display().to_string(),
            "--bindings".into(),
            self.bindings_path().display().to_string(),
            "--status".into(),
            self.dir.join("status.json").display().to_string(),
            "--plugin-version".into(),
            self.version.clone(),
        ];
        argv.extend(self.extra.iter().cloned());
        argv
    }

    /// The recorded plugin process, if it still runs exactly our command
    /// line (pids are reused; a zombie's command line is empty).
    fn running(&self) -> Option<(u32, bool)> {
        let pid: u32 = std::fs::read_to_string(self.pid_path())
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let ours = args
            .iter()
            .any(|a| *a == self.bindings_path().display().to_string());
        ours.then_some((pid, args == self.argv()))
    }

    /// Adopts the plugin if it is ours, else (re)starts it.
    async fn ensure(&self) -> anyhow::Result<()> {
        match self.running() {
            Some((_, true)) => return Ok(()),
            Some((pid, false)) => {
                tracing::info!(
                    pid,
                    "replacing the networking plugin (another version or flags)"
                );
                crate::vm::process::kill_group(pid);
                // Let it release its ports before ours binds them.
                for _ in 0..50 {
                    let gone = std::fs::read(format!("/proc/{pid}/cmdline"))
                        .map_or(true, |c| c.is_empty());
                    if gone {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            None => {}
        }
        std::fs::create_dir_all(&self.dir)?;
        // A dead plugin's last word is not the new one's.
        let _ = std::fs::remove_file(self.dir.join("status.json"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("plugin.log"))?;
        let argv = self.argv();
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start the networking plugin {}: {e}", argv[0]))?;
        let pid = child.id().unwrap_or(0);
        fabric_daemon::files::write_atomically(&self.pid_path(), pid.to_string())?;
        tracing::info!(pid, version = %self.version, "networking plugin started");
        tokio::spawn(async move {
            let status = child.wait().await;
            tracing::warn!(pid, ?status, "networking plugin exited");
        });
        Ok(())
    }

    /// Writes the bindings file if `bindings` differ from what it holds.
    fn publish(&self, bindings: &[Binding]) -> anyhow::Result<()> {
        let text = bindings::encode(self.api, bindings)?;
        let path = self.bindings_path();
        if std::fs::read_to_string(&path).is_ok_and(|t| t == text) {
            return Ok(());
        }
        std::fs::create_dir_all(&self.dir)?;
        fabric_daemon::files::write_atomically(&path, text)?;
        Ok(())
    }

    /// What the plugin says it forwards (its status file); nothing if it
    /// has not said.
    fn view(&self) -> crate::vm::PluginView {
        #[derive(serde::Deserialize)]
        struct Status {
            bound: Vec<String>,
            #[serde(default)]
            failed: Vec<String>,
            error: Option<String>,
        }
        if !matches!(self.running(), Some((_, true))) {
            return crate::vm::PluginView::nothing("the networking plugin is not running");
        }
        let path = self.dir.join("status.json");
        match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Status>(&b).ok())
        {
            Some(s) => crate::vm::PluginView {
                bound: s.bound.into_iter().collect(),
                failed: s.failed.into_iter().collect(),
                error: s.error,
            },
            None => crate::vm::PluginView::nothing("the networking plugin has not reported yet"),
        }
    }

    /// Keeps the plugin running and its bindings current, until dropped
    /// with the returned task.
    pub fn spawn(self, vms: Arc<VmManager>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(LOOK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut looks = 0u64;
            loop {
                ticker.tick().await;
                if let Err(e) = self.publish(&vms.bindings()) {
                    tracing::warn!("cannot write the networking plugin's bindings: {e}");
                }
                vms.set_plugin_view(self.view());
                // The process every fifth look (each is a /proc read).
                if looks.is_multiple_of(5)
                    && let Err(e) = self.ensure().await
                {
                    tracing::error!("{e}");
                }
                looks += 1;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two consecutive ports free on 127.0.0.1 now.
    fn free_pair() -> u16 {
        loop {
            let first = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if first < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", first + 1)).is_ok() {
                return first;
            }
        }
    }

    #[test]
    fn public_ports_come_from_the_range_and_are_never_shared() {
        let first = free_pair();
        let p = PublicEndpoints {
            bind_ip: "127.0.0.1".parse().unwrap(),
            advertise_ip: "127.0.0.2".parse().unwrap(),
            ports: Some((first, first + 1)),
        };
        let (bind, shown) = p.allocate(&HashSet::new()).unwrap();
        assert_eq!(bind.to_string(), format!("127.0.0.1:{first}"));
        assert_eq!(shown.to_string(), format!("127.0.0.2:{first}"));
        let (bind, _) = p.allocate(&HashSet::from([first])).unwrap();
        assert_eq!(bind.port(), first + 1);
        assert!(p.allocate(&HashSet::from([first, first + 1])).is_none());
    }

    #[test]
    fn a_port_another_process_holds_is_passed_over() {
        let first = free_pair();
        let p = PublicEndpoints {
            bind_ip: "127.0.0.1".parse().unwrap(),
            advertise_ip: "127.0.0.1".parse().unwrap(),
            ports: Some((first, first + 1)),
        };
        let _held = std::net::TcpListener::bind(("127.0.0.1", first)).unwrap();
        let (bind, _) = p.allocate(&HashSet::new()).unwrap();
        assert_eq!(bind.port(), first + 1, "the held port was handed out");
        assert!(p.allocate(&HashSet::from([first + 1])).is_none());
    }

    #[test]
    fn without_a_range_a_free_port_is_taken() {
        let p = PublicEndpoints {
            bind_ip: "127.0.0.1".parse().unwrap(),
            advertise_ip: "127.0.0.1".parse().unwrap(),
            ports: None,
        };
        let (bind, shown) = p.allocate(&HashSet::new()).unwrap();
        assert_ne!(bind.port(), 0);
        assert_eq!(bind, shown);
    }
}
