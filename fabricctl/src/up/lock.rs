//! One `fabricctl up` per state directory.
//!
//! Two launchers sharing a state directory would fight over context.json and
//! the addr files. An exclusive flock on `<state>/run/launcher.lock`, held for
//! the launcher's life, settles it without races; the kernel drops it when
//! the launcher dies however it dies, so a stale lock never blocks a restart.

use crate::error::CtlError;
use crate::up::layout::StateLayout;
use anyhow::Context as _;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Seek, Write};

/// Held for as long as the launcher runs.
pub struct LauncherLock {
    _lock: Flock<File>,
}

/// Takes the lock and writes our pid into it, or explains who holds it.
pub fn acquire(layout: &StateLayout) -> anyhow::Result<LauncherLock> {
    let path = layout.lock_file();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => lock,
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(CtlError::AlreadyRunning {
                state_dir: layout.root.clone(),
                pid: text.trim().parse().ok(),
            }
            .into());
        }
        Err((_, errno)) => {
            return Err(
                anyhow::Error::from(errno).context(format!("cannot lock {}", path.display()))
            );
        }
    };
    lock.set_len(0)?;
    lock.rewind()?;
    writeln!(lock, "{}", std::process::id())?;
    Ok(LauncherLock { _lock: lock })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_launcher_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let layout = StateLayout::create(dir.path()).unwrap();
        let held = acquire(&layout).unwrap();
        let e = acquire(&layout).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "another `fabricctl up` (pid {}) is already running in {}",
                std::process::id(),
                layout.root.display()
            )
        );
        drop(held);
        assert!(acquire(&layout).is_ok());
    }
}
