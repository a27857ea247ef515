//! Telling a launcher where we listen: the bound address (port 0 picks any
//! free port) written to a file, via a temporary file and a rename so a
//! reader never sees half an address.

use std::net::SocketAddr;
use std::path::Path;

pub fn write(path: &Path, addr: SocketAddr) -> anyhow::Result<()> {
    fabric_daemon::files::write_atomically(path, addr.to_string())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}
