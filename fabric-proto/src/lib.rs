//! Generated protobuf and gRPC types for Fabric (`fabric.v1`).
//!
//! These types stop at each crate's edge: the daemons convert them into their
//! own validated domain types on receipt (see `fabric_controller::api`).

/// The `fabric.v1` package: messages, clients and servers.
// PackageUpload's oneof holds a manifest or a chunk; a few hundred bytes on
// the stack per message is nothing beside the chunk it carries.
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("fabric.v1");
}

/// Encoded `FileDescriptorSet` of every Fabric proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/fabric_descriptor.bin"));

/// A reflection service builder for a server that serves `services` (their
/// full names, `NamedService::NAME`): it lists those, the standard health
/// service and reflection itself, and nothing else of Fabric's protos, so
/// grpcurl and Python's grpcio discover what this process really answers.
/// Call `.build_v1()` and `.build_v1alpha()` on two of these: Python's
/// reflection client still speaks only v1alpha.
pub fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let standard = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    services.iter().chain(&standard).fold(
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
        |builder, name| builder.with_service_name(*name),
    )
}
