#!/usr/bin/env bash
# Builds Fabric's container image, fabric:dev, without pulling anything.
#
# 1. compiles fabric-controller, host-agent, guest-agent and fabricctl as
#    fully static release binaries (glibc linked in, so they run in an empty
#    root);
# 2. lays out a root filesystem: /usr/local/bin/<binaries>,
#    /etc/nsswitch.conf (hosts: files dns), /tmp, /var/lib/fabric, and
#    Debian's etcd and etcdctl (/usr/bin) with the C libraries they load
#    (cluster a of docker-compose.yml keeps its replicated controller's
#    state in three etcd members run from this image);
# 3. `docker build` of docker/Dockerfile (FROM scratch) on that root.
#
# Works on any Linux machine with Rust, a Docker engine and Debian's
# etcd-server and etcd-client packages; no registry is needed. Usage: scripts/build-images.sh [IMAGE_TAG]   (default fabric:dev)
set -euo pipefail
cd "$(dirname "$0")/.."

tag="${1:-fabric:dev}"
arch="$(uname -m)"
target="${arch}-unknown-linux-gnu"
bins=(fabric-controller host-agent guest-agent fabric-netplug fabricctl)

if ! docker info >/dev/null 2>&1; then
  echo "build-images: no Docker engine reachable (is the daemon running?)" >&2
  exit 1
fi
etcd_bins=()
for bin in etcd etcdctl; do
  path="$(command -v "$bin" || true)"
  if [ -z "$path" ]; then
    echo "build-images: no $bin here: install Debian's etcd-server and etcd-client (the image carries them for cluster a's controller replicas)" >&2
    exit 1
  fi
  etcd_bins+=("$(readlink -f "$path")")
done

# The explicit --target keeps crt-static off build scripts and proc macros,
# which must stay dynamic host binaries.
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --target "$target" \
  -p fabric-controller -p host-agent -p guest-agent -p fabric-netplug -p fabricctl

# Cargo's output directory, wherever CARGO_TARGET_DIR puts it.
target_dir="${CARGO_TARGET_DIR:-target}"
out="$target_dir/$target/release"
context="$target_dir/image"
rm -rf "$context"
mkdir -p "$context/rootfs/usr/local/bin" "$context/rootfs/etc" \
  "$context/rootfs/tmp" "$context/rootfs/var/lib/fabric"
chmod 1777 "$context/rootfs/tmp"
for bin in "${bins[@]}"; do
  if ! ldd "$out/$bin" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
    echo "build-images: $out/$bin is not static" >&2
    exit 1
  fi
  install -m 0755 "$out/$bin" "$context/rootfs/usr/local/bin/$bin"
  # Symbols only make the image bigger; backtraces keep function names.
  strip --strip-debug "$context/rootfs/usr/local/bin/$bin" 2>/dev/null || true
done
# etcd is Debian's dynamically linked build: its binaries go in with every
# library ldd names, at the same paths, so the loader finds them in the
# otherwise empty root.
for path in "${etcd_bins[@]}"; do
  install -D -m 0755 "$path" "$context/rootfs/usr/bin/$(basename "$path")"
  for lib in $(ldd "$path" | grep -oE '/[^ ]+'); do
    install -D -m 0755 "$(readlink -f "$lib")" "$context/rootfs$lib"
  done
done
install -m 0644 docker/nsswitch.conf "$context/rootfs/etc/nsswitch.conf"
cp docker/Dockerfile "$context/Dockerfile"

# The classic builder: BuildKit would want a frontend image from a registry.
DOCKER_BUILDKIT=0 docker build --quiet -t "$tag" "$context" >/dev/null
size="$(docker image inspect --format '{{.Size}}' "$tag")"
echo "build-images: $tag built ($((size / 1024 / 1024)) MiB): ${bins[*]} etcd etcdctl"
