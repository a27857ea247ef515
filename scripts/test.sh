#!/usr/bin/env bash
# Runs Fabric's whole test suite on a fresh machine.
#
# Installs what the tests need besides Rust (Python grpcio for the interop
# test), builds every binary once (real-process tests spawn them), then runs
# all tests. Real-process tests find the binaries in target/debug.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f tests/interop/requirements.txt ]; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi

cargo build --workspace --bins --locked
cargo test --workspace --locked
