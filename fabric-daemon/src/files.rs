//! A file written whole or not at all.
//!
//! Readers (a supervisor waiting for an address file, a restarted daemon
//! reading its state) must never see half a file: write a sibling, then
//! rename it over the target, which POSIX makes atomic.

use std::io;
use std::path::Path;

/// Writes `contents` to `path` through a temporary sibling and a rename.
pub fn write_atomically(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("addr");
        write_atomically(&path, "127.0.0.1:1").unwrap();
        write_atomically(&path, "127.0.0.1:2").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "127.0.0.1:2");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }
}
