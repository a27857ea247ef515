//! Compiles etcd's v3 API protos (vendored in `proto/`, see its README) with
//! the pure-Rust `protox` compiler, as `fabric-proto` does for Fabric's own:
//! building Fabric never needs a `protoc` binary. Clients only: Fabric's
//! controller talks to etcd, it does not serve its API.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    let files = [
        "etcd/api/etcdserverpb/rpc.proto",
        "etcd/server/etcdserver/api/v3election/v3electionpb/v3election.proto",
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(files, [&root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(false)
        .compile_fds(fds)?;
    Ok(())
}
