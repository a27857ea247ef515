#!/usr/bin/env bash
# Runs Fabric's whole test suite on a fresh machine.
#
# Installs what the tests need besides Rust (Python grpcio for the interop
# test, Debian's chromium and chromium-driver for the dashboard test,
# Prometheus's promtool, Debian's etcd for the etcd tests, Debian's waagent
# for the waagent tests), builds every binary once (real-process tests spawn
# them), builds the fabric:dev container image when a Docker engine is
# reachable (the compose chaos suite runs the docker-compose stack from it),
# then runs all tests. Real-process tests find the binaries in target/debug.
#
# Without Docker the chaos suite is skipped with a notice, or fails when
# CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f tests/interop/requirements.txt ]; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi

# Installs Debian packages for a command the tests need when it is missing
# (as root with apt-get; otherwise the test that needs it says more). The
# package index is refreshed once, before the first install.
apt_updated=no
need() {
  local command="$1" what="$2"
  shift 2
  command -v "$command" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if [ "$apt_updated" = no ]; then
      apt-get update -qq
      apt_updated=yes
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  else
    echo "test.sh: no $command and cannot apt-get it: $what will say more" >&2
  fi
}

# The dashboard's browser test drives Debian's Chromium through chromedriver.
need chromedriver "the dashboard browser test" chromium chromium-driver
# The metrics test lints /metrics with Prometheus's own promtool.
need promtool "the metrics test" prometheus
# The replicated controller's store is Debian's etcd (fabric-etcd's tests
# run real members; the compose image carries it).
need etcd "the etcd tests" etcd-server etcd-client
# The waagent tests run Azure's real Linux guest agent, Debian's waagent
# (WALinuxAgent 2.7.3; it brings openssl).
need waagent "the waagent tests" waagent

cargo build --workspace --bins --locked
if docker info >/dev/null 2>&1; then
  ./scripts/build-images.sh
else
  echo "test.sh: no Docker engine reachable: not building fabric:dev (the compose chaos suite will say more)" >&2
fi
cargo test --workspace --locked
