#!/usr/bin/env bash
# Runs Fabric's whole test suite on a fresh machine.
#
# Installs what the tests need besides Rust (Python grpcio for the interop
# test, Debian's chromium and chromium-driver for the dashboard test,
# Prometheus's promtool, Debian's etcd for the etcd tests, Debian's waagent
# for the wire-server test), builds every binary once (real-process tests
# spawn them), builds
# the fabric:dev container image when a Docker engine is reachable (the
# compose chaos suite runs the docker-compose stack from it), then runs all
# tests. Real-process tests find the binaries in target/debug.
#
# Without Docker the chaos suite is skipped with a notice, or fails when
# CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -f tests/interop/requirements.txt ]; then
  python3 -m pip install --quiet --disable-pip-version-check -r tests/interop/requirements.txt
fi

# The dashboard's browser test drives Debian's Chromium through chromedriver.
if ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "test.sh: no chromedriver and cannot apt-get it: the dashboard browser test will say more" >&2
  fi
fi

# The metrics test lints /metrics with Prometheus's own promtool.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
  else
    echo "test.sh: no promtool and cannot apt-get it: the metrics test will say more" >&2
  fi
fi

# The replicated controller's store is Debian's etcd (fabric-etcd's tests
# run real members).
if ! command -v etcd >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server etcd-client >/dev/null
  else
    echo "test.sh: no etcd and cannot apt-get it: the etcd tests will say more" >&2
  fi
fi

# The wire server's test runs Azure's real Linux guest agent, Debian's
# waagent (WALinuxAgent 2.7.3; it brings openssl).
if ! command -v waagent >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq waagent >/dev/null
  else
    echo "test.sh: no waagent and cannot apt-get it: the waagent test will say more" >&2
  fi
fi

cargo build --workspace --bins --locked
if docker info >/dev/null 2>&1; then
  ./scripts/build-images.sh
else
  echo "test.sh: no Docker engine reachable: not building fabric:dev (the compose chaos suite will say more)" >&2
fi
cargo test --workspace --locked
