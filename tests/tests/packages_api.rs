//! The package calls in process, over mutual TLS: an upload is checked byte
//! for byte against its manifest, a host reads only files a stored
//! manifest names, and each refusal carries the right status and says why.

use fabric_core::CoreConfig;
use fabric_proto::v1::{
    self as pb, node_service_client::NodeServiceClient,
    operator_service_client::OperatorServiceClient, package_upload::Part,
};
use fabric_tests::{RunningController, TestPki, connect};
use tokio_stream::StreamExt;
use tonic::Code;

fn artifact(version: &str, file: &str, bytes: &[u8]) -> pb::Artifact {
    pb::Artifact {
        version: version.into(),
        file: file.into(),
        size: bytes.len() as u64,
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref()),
        flags: vec![],
    }
}

fn manifest() -> pb::PackageManifest {
    pb::PackageManifest {
        version: "p2".into(),
        host_agent: Some(artifact("2.0", "host-agent", b"HOST")),
        guest_agent: Some(artifact("2.0", "guest-agent", b"GUEST")),
        plugin: Some(artifact("net-2", "netplug", b"PLUGIN")),
        plugin_compatible_host_agents: vec!["2.*".into()],
        forced: false,
    }
}

/// The upload stream: the manifest, then `bytes` in 3-byte chunks.
fn upload(
    m: pb::PackageManifest,
    bytes: &[u8],
) -> impl tokio_stream::Stream<Item = pb::PackageUpload> {
    let mut parts = vec![pb::PackageUpload {
        part: Some(Part::Header(pb::AddPackageHeader {
            manifest: Some(m),
            force: false,
        })),
    }];
    parts.extend(bytes.chunks(3).map(|c| pb::PackageUpload {
        part: Some(Part::Chunk(pb::ArtifactChunk { data: c.to_vec() })),
    }));
    tokio_stream::iter(parts)
}

async fn fetch(
    host: &mut NodeServiceClient<tonic::transport::Channel>,
    package: &str,
    file: &str,
) -> Result<Vec<u8>, tonic::Status> {
    let mut stream = host
        .fetch_artifact(pb::FetchArtifactRequest {
            package: package.into(),
            file: file.into(),
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend(chunk?.data);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_checked_and_hosts_read_only_what_a_manifest_names() {
    let pki = TestPki::new("alpha", &["host-1"]);
    let state = tempfile::tempdir().unwrap();
    let fc = RunningController::start_with_state(
        &pki,
        CoreConfig::default(),
        Some(state.path().to_owned()),
    )
    .await;
    let mut admin = OperatorServiceClient::new(connect(&fc.url(), &pki.admin()).await.unwrap());
    let mut host = NodeServiceClient::new(connect(&fc.url(), &pki.host("host-1")).await.unwrap());

    // Wrong bytes: refused, naming the digest, and nothing is kept.
    let err = admin
        .add_package(upload(manifest(), b"HOSTGUESSPLUGIN"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("SHA-256"), "{}", err.message());
    // Too many bytes: refused.
    let err = admin
        .add_package(upload(manifest(), b"HOSTGUESTPLUGIN!"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let listed = admin
        .list_packages(pb::ListPackagesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.packages.is_empty(), "{listed:?}");

    // A host may not upload.
    let mut as_host =
        OperatorServiceClient::new(connect(&fc.url(), &pki.host("host-1")).await.unwrap());
    let err = as_host
        .add_package(upload(manifest(), b"HOSTGUESTPLUGIN"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // The right bytes: kept, and a host reads each file back whole.
    let added = admin
        .add_package(upload(manifest(), b"HOSTGUESTPLUGIN"))
        .await
        .unwrap()
        .into_inner();
    assert!(added.added, "{added:?}");
    assert_eq!(
        fetch(&mut host, "p2", "guest-agent").await.unwrap(),
        b"GUEST"
    );

    // Only files a stored manifest names, never a path from the wire.
    for (package, file, code) in [
        ("p2", "../../controller-state.json", Code::NotFound),
        ("p2", "package.toml", Code::NotFound),
        ("p3", "host-agent", Code::NotFound),
        ("../p2", "host-agent", Code::InvalidArgument),
    ] {
        let err = fetch(&mut host, package, file).await.unwrap_err();
        assert_eq!(err.code(), code, "{package}/{file}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_without_a_state_directory_keeps_no_packages() {
    let pki = TestPki::new("alpha", &[]);
    let fc = RunningController::start(&pki, CoreConfig::default()).await;
    let mut admin = OperatorServiceClient::new(connect(&fc.url(), &pki.admin()).await.unwrap());
    let err = admin
        .add_package(upload(manifest(), b"HOSTGUESTPLUGIN"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("--state-dir"), "{}", err.message());
}
