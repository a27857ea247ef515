//! Packages of the fabric's own software built from this workspace's
//! binaries, for rollout tests (see `fabricctl::package::FromBuild`).

use crate::bins;
use std::path::{Path, PathBuf};

pub use fabricctl::package::FromBuild as TestPackage;

/// Writes `package` under `parent` from the binaries the tests run.
pub fn write(package: &TestPackage<'_>, parent: &Path) -> PathBuf {
    package
        .write(parent, &bins::bin_dir())
        .unwrap_or_else(|e| panic!("cannot write package {}: {e}", package.version))
}
