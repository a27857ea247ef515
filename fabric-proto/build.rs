//! Compiles `proto/fabric/v1/*.proto` with the pure-Rust `protox` compiler, so
//! building Fabric never needs a `protoc` binary. The file descriptor set is
//! also written to OUT_DIR for gRPC server reflection.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let files = [
        "fabric/v1/controller.proto",
        "fabric/v1/host.proto",
        "fabric/v1/guest.proto",
        "fabric/v1/software.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let fds = protox::compile(files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("fabric_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
