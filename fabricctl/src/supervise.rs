//! `fabricctl supervise`: one program kept running, as a container's init.
//!
//! A host container runs its host agent and, as that agent's children, the
//! guest agents of its VMs. If the host agent were the container's main
//! process, killing it would stop the container and every VM with it: a
//! crashed host agent would look like a lost server. Under `supervise` the
//! host agent is restarted after `--restart-delay` (it then re-adopts its
//! running VMs), and because this process is a child subreaper the orphaned
//! guest agents are reparented to it and reaped here. It is the same
//! [`Supervisor`] that `fabricctl up` uses for a whole local cluster.
//!
//! SIGTERM (`docker stop`) stops the program and every orphan, SIGKILL after
//! the grace period.

use crate::cli::SuperviseArgs;
use crate::up::child::ChildSpec;
use crate::up::signals;
use crate::up::supervisor::{Supervisor, say};
use anyhow::Context as _;

pub async fn run(args: &SuperviseArgs) -> anyhow::Result<()> {
    let mut stop = signals::StopSignals::register().context("cannot handle signals")?;
    let mut sigchld = signals::child_signal().context("cannot handle SIGCHLD")?;
    nix::sys::prctl::set_child_subreaper(true).context("cannot become a child subreaper")?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| program_name(&args.program));
    // Power-off marks (see `fabricctl chaos`) are a local-cluster feature;
    // the supervisor only looks for them under this directory.
    let mut sup = Supervisor::new(std::env::temp_dir(), args.restart_delay);
    let idx = sup.add(ChildSpec {
        name: name.clone(),
        program: args.program.clone(),
        args: args.args.clone(),
        log: args.log.clone(),
        env: vec![],
        addr_file: None,
        keep_bound: Vec::new(),
    });
    let pid = sup
        .start(idx)
        .with_context(|| format!("cannot start {}", args.program.display()))?;
    say(&format!(
        "supervising {name} (pid {pid}); restart delay {}",
        humantime::format_duration(args.restart_delay)
    ));
    let signal = sup.supervise(&mut stop, &mut sigchld).await;
    say(&format!(
        "{signal} received; stopping {name} and its orphans"
    ));
    sup.shutdown(&mut sigchld).await;
    Ok(())
}

fn program_name(program: &std::path::Path) -> String {
    program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_is_the_program_file_name() {
        assert_eq!(
            program_name(std::path::Path::new("/usr/local/bin/host-agent")),
            "host-agent"
        );
    }
}
