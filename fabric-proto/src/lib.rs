//! Generated protobuf and gRPC types for Fabric (`fabric.v1`).
//!
//! These types stop at each crate's edge: the daemons convert them into their
//! own validated domain types on receipt (see `fabric_controller::api`).

/// The `fabric.v1` package: messages, clients and servers.
pub mod v1 {
    tonic::include_proto!("fabric.v1");
}

/// Encoded `FileDescriptorSet` of every Fabric proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fabric_descriptor.bin"));

/// A reflection service builder that knows Fabric's protos and the standard
/// health service, so grpcurl and Python's grpcio can discover them. Call
/// `.build_v1()` and `.build_v1alpha()` on two of these: Python's reflection
/// client still speaks only v1alpha.
pub fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}
