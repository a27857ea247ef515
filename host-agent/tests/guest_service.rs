//! GuestService in process, over real TLS: a fake controller (mTLS
//! NodeService) serves a fixed certificate, a fake launcher hands out the
//! start tokens a real guest agent would get in its environment, and a tonic
//! client plays the guest agent.

use fabric_pki::PkiLayout;
use fabric_pki::tls::{LoadedTls, TlsFiles};
use fabric_proto::v1::{
    self as pb, guest_service_client::GuestServiceClient, node_service_client::NodeServiceClient,
    node_service_server::NodeService, node_service_server::NodeServiceServer,
};
use fabric_sealing::SealContext;
use host_agent::guest_service::GuestApi;
use host_agent::state::HostState;
use host_agent::vm::process::{GuestProcess, LaunchSpec, Launcher, ProcessError};
use host_agent::vm::{Policy, VmManager, VmSettings, supervisor};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Server};
use tonic::{Code, Request, Response, Status};

const CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\nZmFrZQ==\n-----END CERTIFICATE-----\n";
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n-----END PRIVATE KEY-----\n";

/// The controller's side, as far as the host agent's VMs need it.
#[derive(Default)]
struct FakeController {
    faults: Arc<Mutex<Vec<pb::FaultReport>>>,
}

#[tonic::async_trait]
impl NodeService for FakeController {
    async fn register(
        &self,
        _: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(pb::RegisterResponse::default()))
    }
    async fn heartbeat(
        &self,
        _: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(pb::HeartbeatResponse::default()))
    }
    async fn report_fault(
        &self,
        request: Request<pb::FaultReport>,
    ) -> Result<Response<pb::FaultReportAck>, Status> {
        self.faults.lock().unwrap().push(request.into_inner());
        Ok(Response::new(pb::FaultReportAck {}))
    }
    async fn fetch_secrets(
        &self,
        request: Request<pb::FetchSecretsRequest>,
    ) -> Result<Response<pb::FetchSecretsResponse>, Status> {
        // Only a host may fetch: the mTLS identity says who calls.
        let caller = fabric_pki::tls::peer_identity(&request)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        assert_eq!(caller.role, fabric_pki::Role::Host);
        Ok(Response::new(pb::FetchSecretsResponse {
            certificates: vec![pb::RoleCertificate {
                name: "ssl".into(),
                cert_pem: CERT_PEM.into(),
                key_pem: KEY_PEM.into(),
            }],
            secrets_version: "v1".into(),
        }))
    }
    type FetchArtifactStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::ArtifactChunk, Status>> + Send>,
    >;
    async fn fetch_artifact(
        &self,
        _: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        Err(Status::unimplemented(
            "this fake controller holds no packages",
        ))
    }
    type WatchDesiredStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<pb::DesiredChanged, Status>> + Send>,
    >;
    async fn watch_desired(
        &self,
        _: Request<pb::WatchDesiredRequest>,
    ) -> Result<Response<Self::WatchDesiredStream>, Status> {
        Err(Status::unimplemented("this fake controller pushes nothing"))
    }
}

/// Hands the tokens to the test instead of to a process.
struct FakeLauncher(mpsc::UnboundedSender<(String, u64, String)>);

impl Launcher for FakeLauncher {
    fn launch(&self, spec: &LaunchSpec, token: &str) -> Result<GuestProcess, ProcessError> {
        let _ = self
            .0
            .send((spec.vm_id.clone(), spec.incarnation, token.to_owned()));
        Ok(GuestProcess::detached())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    vms: Arc<VmManager>,
    guest: GuestServiceClient<Channel>,
    launches: mpsc::UnboundedReceiver<(String, u64, String)>,
    faults: Arc<Mutex<Vec<pb::FaultReport>>>,
}

impl Harness {
    async fn start() -> Self {
        fabric_pki::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path().join("pki"));
        let now = time::OffsetDateTime::now_utc();
        let ca = layout.init("test", &[], now).unwrap();
        layout.ensure_host(&ca, "host-1", &[], now).unwrap();
        let host_files = TlsFiles::new(layout.ca_cert(), &layout.host("host-1"));
        let host_tls = host_files.load().unwrap();
        let fc_tls = TlsFiles::new(layout.ca_cert(), &layout.controller())
            .load()
            .unwrap();

        // The fake controller, mTLS.
        let faults = Arc::new(Mutex::new(Vec::new()));
        let fc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fc_addr = fc_listener.local_addr().unwrap();
        let fc = FakeController {
            faults: faults.clone(),
        };
        tokio::spawn(
            Server::builder()
                .tls_config(fc_tls.server_config())
                .unwrap()
                .add_service(NodeServiceServer::new(fc))
                .serve_with_incoming(TcpIncoming::from(fc_listener)),
        );
        let controller = NodeServiceClient::new(fabric_daemon::failover::Failover::new(
            vec![(
                format!("https://{fc_addr}"),
                Endpoint::from_shared(format!("https://{fc_addr}"))
                    .unwrap()
                    .tls_config(host_tls.client_config("localhost"))
                    .unwrap()
                    .connect_lazy(),
            )],
            std::time::Duration::from_secs(3),
        ));

        let (tx, launches) = mpsc::unbounded_channel();
        let vms = VmManager::new(
            VmSettings {
                state_dir: dir.path().join("state"),
                policy: Policy {
                    connect_timeout: Duration::from_secs(60),
                    heartbeat_timeout: Duration::from_secs(15),
                    clean_vm_strikes: 3,
                },
                heartbeat_interval: Duration::from_secs(3),
                role_endpoint: host_agent::config::RoleEndpoints::default()
                    .rule("127.0.0.1".parse().unwrap()),
                guest_agent_endpoint: host_agent::vm::endpoint::EndpointRule {
                    ip: "127.0.0.1".parse().unwrap(),
                    ports: None,
                },
                public: None,
                sync_records: true,
            },
            Box::new(FakeLauncher(tx)),
            controller,
            Arc::new(HostState::new("host-1".into(), "test".into())),
        );
        tokio::spawn(supervisor::run(vms.clone()));

        // The GuestService, TLS without client certificates.
        let guest_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let guest_addr = guest_listener.local_addr().unwrap();
        let guest_tls = host_agent::guest_tls::server_config(&host_tls, &host_files.key).unwrap();
        tokio::spawn(
            Server::builder()
                .tls_config(guest_tls)
                .unwrap()
                .add_service(pb::guest_service_server::GuestServiceServer::new(
                    GuestApi { vms: vms.clone() },
                ))
                .serve_with_incoming(TcpIncoming::from(guest_listener)),
        );
        let guest = GuestServiceClient::new(guest_channel(&host_tls, guest_addr).await);
        Self {
            _dir: dir,
            vms,
            guest,
            launches,
            faults,
        }
    }

    /// The next guest agent "started": (vm id, incarnation, token).
    async fn launched(&mut self) -> (String, u64, String) {
        tokio::time::timeout(Duration::from_secs(10), self.launches.recv())
            .await
            .expect("no launch within 10s")
            .unwrap()
    }

    fn report(&self, vm_id: &str) -> pb::VmReport {
        self.vms
            .reports()
            .into_iter()
            .find(|r| r.vm_id == vm_id)
            .expect("VM reported")
    }
}

/// A guest's channel: trusts the cluster CA, presents no certificate.
async fn guest_channel(tls: &LoadedTls, addr: std::net::SocketAddr) -> Channel {
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .expect("guest connects without a client certificate")
}

fn assignment(index: u32) -> pb::VmAssignment {
    pb::VmAssignment {
        vm_id: format!("web.frontend.{index}"),
        deployment: "web".into(),
        role: "frontend".into(),
        instance: index,
        incarnation: 1,
        secrets_version: "v1".into(),
        guest: String::new(),
    }
}

/// A transfer certificate like the guest agent's: self-signed, P-256.
fn transfer_cert() -> (Vec<u8>, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["vm".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.der().to_vec(), key.serialize_der())
}

fn hello(vm_id: &str, incarnation: u64, token: &str, der: &[u8]) -> pb::GuestHello {
    pb::GuestHello {
        vm_id: vm_id.into(),
        incarnation,
        token: token.into(),
        transfer_certificate_der: der.to_vec(),
        guest_agent_endpoint: "127.0.0.1:9".into(),
        agent_version: "0.1.0".into(),
    }
}

#[tokio::test]
async fn hello_checks_tokens_and_certificates_and_seals_secrets() {
    let mut h = Harness::start().await;
    h.vms.apply_desired(&[assignment(0), assignment(1)]);
    let mut tokens = std::collections::HashMap::new();
    for _ in 0..2 {
        let (vm, incarnation, token) = h.launched().await;
        assert_eq!(incarnation, 1);
        tokens.insert(vm, token);
    }
    let token0 = tokens["web.frontend.0"].clone();
    let token1 = tokens["web.frontend.1"].clone();
    let (der, key) = transfer_cert();

    // A wrong token, and another VM's token.
    let err = h
        .guest
        .hello(hello("web.frontend.0", 1, &"0".repeat(64), &der))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = h
        .guest
        .hello(hello("web.frontend.0", 1, &token1, &der))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(!err.message().contains(&token1), "never echo tokens");
    // A VM that is not here.
    let err = h
        .guest
        .hello(hello("web.frontend.9", 1, &token0, &der))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // A non-P-256 transfer certificate: refused, and the VM reinitialized
    // with a new incarnation and token.
    let ed_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let ed_cert = rcgen::CertificateParams::new(vec!["vm".to_owned()])
        .unwrap()
        .self_signed(&ed_key)
        .unwrap();
    let err = h
        .guest
        .hello(hello("web.frontend.0", 1, &token0, ed_cert.der()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("P-256"), "{err:?}");
    let report = h.report("web.frontend.0");
    assert_eq!(report.strikes, 1);
    assert!(report.detail.contains("P-256"), "{report:?}");
    // Garbage, over the same refusal path, needs a live token: none left.
    let err = h
        .guest
        .hello(hello("web.frontend.0", 1, &token0, b"garbage"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let (vm, incarnation, token0) = h.launched().await;
    assert_eq!((vm.as_str(), incarnation), ("web.frontend.0", 2));

    // A valid Hello: the secrets open for this VM and incarnation only.
    let welcome = h
        .guest
        .hello(hello("web.frontend.0", 2, &token0, &der))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            welcome.deployment.as_str(),
            welcome.role.as_str(),
            welcome.instance
        ),
        ("web", "frontend", 0)
    );
    assert_eq!(welcome.node_id, "host-1");
    assert_eq!(welcome.secrets_version, "v1");
    assert_eq!(
        welcome.heartbeat_interval,
        Some(prost_types::Duration {
            seconds: 3,
            nanos: 0
        })
    );
    assert_eq!(welcome.secrets.len(), 1);
    let secret = &welcome.secrets[0];
    let sealed = fabric_sealing::SealedSecret {
        name: secret.name.clone(),
        encapsulated_key: secret.encapsulated_key.clone(),
        ciphertext: secret.ciphertext.clone(),
    };
    let plain = fabric_sealing::open(&key, &SealContext::new("web.frontend.0", 2), &sealed)
        .expect("opens for its own VM and incarnation");
    assert_eq!(
        std::str::from_utf8(&plain).unwrap(),
        format!("{CERT_PEM}{KEY_PEM}")
    );
    assert!(fabric_sealing::open(&key, &SealContext::new("web.frontend.0", 3), &sealed).is_err());
    assert!(fabric_sealing::open(&key, &SealContext::new("web.frontend.1", 2), &sealed).is_err());
    let report = h.report("web.frontend.0");
    assert_eq!(report.state, pb::VmState::VmProvisioned as i32);
    assert_eq!(report.incarnation, 2);
    assert_eq!(report.transfer_cert_fingerprint.len(), 64);

    // The token is spent.
    let err = h
        .guest
        .hello(hello("web.frontend.0", 2, &token0, &der))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("token already used"), "{err:?}");

    // Heartbeats need the session token; ROLE_RUNNING makes the VM dirty
    // and clears its strikes.
    let beat = |session: &str, sequence| pb::GuestHeartbeatRequest {
        vm_id: "web.frontend.0".into(),
        incarnation: 2,
        session_token: session.into(),
        sequence,
        role_state: pb::RoleState::RoleRunning as i32,
        role_endpoint: "127.0.0.1:8443".into(),
    };
    let err = h.guest.guest_heartbeat(beat(&token0, 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    h.guest
        .guest_heartbeat(beat(&welcome.session_token, 1))
        .await
        .unwrap();
    let report = h.report("web.frontend.0");
    assert_eq!(report.state, pb::VmState::VmRunning as i32);
    assert!(!report.clean);
    assert_eq!(report.strikes, 0);
    assert_eq!(report.endpoint, "127.0.0.1:8443");
    // The other VM was not affected by any of this.
    let other = h.report("web.frontend.1");
    assert_eq!((other.incarnation, other.strikes), (1, 0));
    assert_eq!(other.state, pb::VmState::VmStarting as i32);
}

#[tokio::test]
async fn clean_failures_report_one_fault() {
    let mut h = Harness::start().await;
    h.vms.apply_desired(&[assignment(0)]);
    for round in 1..=4u64 {
        let (vm, incarnation, token) = h.launched().await;
        assert_eq!(incarnation, round);
        h.guest
            .report_guest_failure(pb::GuestFailure {
                vm_id: vm,
                incarnation,
                token,
                stage: "transfer_certificate".into(),
                error: "Feb 29 has no successor year".into(),
                agent_version: "0.1.0".into(),
            })
            .await
            .unwrap();
    }
    assert_eq!(h.report("web.frontend.0").strikes, 4);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.faults.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no fault report");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let faults = h.faults.lock().unwrap().clone();
    assert_eq!(faults.len(), 1, "one report per streak: {faults:?}");
    // The reason is kept word for word: the controller classifies reasons
    // starting "guest agent" as guest-software candidates.
    assert_eq!(
        faults[0].reason,
        "guest agent failed creating transfer certificate: Feb 29 has no successor year"
    );
    assert_eq!(faults[0].vm_ids, ["web.frontend.0"]);
    assert_eq!(faults[0].agent_version, "0.1.0");

    // Unlisted VMs stop and vanish from the reports.
    h.vms.apply_desired(&[]);
    assert!(h.vms.reports().is_empty());
}

/// Issue 13, finding 1: a hostile guest reports endpoints that are not its
/// own. Each is refused as that VM's failure (reinitialized, a strike while
/// clean), its neighbour keeps running, and nothing of it reaches a report.
#[tokio::test]
async fn a_hostile_role_endpoint_fails_only_its_own_vm() {
    let mut h = Harness::start().await;
    h.vms.apply_desired(&[assignment(0), assignment(1)]);
    let mut tokens = std::collections::HashMap::new();
    for _ in 0..2 {
        let (vm, _, token) = h.launched().await;
        tokens.insert(vm, token);
    }
    let (der, _) = transfer_cert();
    let mut sessions = std::collections::HashMap::new();
    for vm in ["web.frontend.0", "web.frontend.1"] {
        let welcome = h
            .guest
            .hello(hello(vm, 1, &tokens[vm], &der))
            .await
            .unwrap()
            .into_inner();
        sessions.insert(vm, welcome.session_token);
    }
    let beat = |vm: &str, incarnation, session: &str, endpoint: &str| pb::GuestHeartbeatRequest {
        vm_id: vm.into(),
        incarnation,
        session_token: session.into(),
        sequence: 1,
        role_state: pb::RoleState::RoleRunning as i32,
        role_endpoint: endpoint.into(),
    };
    // The neighbour serves at 127.0.0.1:8443.
    h.guest
        .guest_heartbeat(beat(
            "web.frontend.1",
            1,
            &sessions["web.frontend.1"],
            "127.0.0.1:8443",
        ))
        .await
        .unwrap();

    let attacks = [
        ("127.0.0.1:8443", "already another VM's"),
        ("6.6.6.6:443", "not on 127.0.0.1"),
        (&*"9".repeat(60 * 1024), "longer than"),
    ];
    let mut session = sessions["web.frontend.0"].clone();
    for (incarnation, (endpoint, why)) in (1..).zip(attacks) {
        if incarnation > 1 {
            let (_, _, token) = h.launched().await;
            session = h
                .guest
                .hello(hello("web.frontend.0", incarnation, &token, &der))
                .await
                .unwrap()
                .into_inner()
                .session_token;
        }
        let err = h
            .guest
            .guest_heartbeat(beat("web.frontend.0", incarnation, &session, endpoint))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().contains(why), "{why}: {}", err.message());
        let report = h.report("web.frontend.0");
        assert_eq!(report.state, pb::VmState::VmReinitializing as i32);
        assert!(report.endpoint.is_empty(), "{report:?}");
        assert!(report.detail.contains(why), "{report:?}");
        let neighbour = h.report("web.frontend.1");
        assert_eq!(neighbour.state, pb::VmState::VmRunning as i32);
        assert_eq!(neighbour.endpoint, "127.0.0.1:8443");
    }
    // The VM was clean throughout, so each refusal was a strike against it,
    // and its third made one fault report, whose cause is the guest's
    // software, not the server's hardware.
    assert_eq!(h.report("web.frontend.0").strikes, 3);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.faults.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "no fault report");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let faults = h.faults.lock().unwrap().clone();
    assert_eq!(faults[0].cause, pb::FaultCause::GuestInitError as i32);
    assert_eq!(faults[0].vm_ids, ["web.frontend.0"]);
}

/// Issue 13, finding 8: a server in Human Investigate starts nothing, not
/// even a VM it would reinitialize, until it is repaired.
#[tokio::test]
async fn a_server_in_human_investigate_starts_nothing_until_repaired() {
    let mut h = Harness::start().await;
    h.vms.apply_desired(&[assignment(0)]);
    let (vm, incarnation, token) = h.launched().await;
    h.vms.set_quarantined(true);
    h.guest
        .report_guest_failure(pb::GuestFailure {
            vm_id: vm.clone(),
            incarnation,
            token,
            stage: "role".into(),
            error: "crashed".into(),
            agent_version: "0.1.0".into(),
        })
        .await
        .unwrap();
    // The respawn would come after 250 ms; nothing comes in 2 s.
    let held = tokio::time::timeout(Duration::from_secs(2), h.launches.recv()).await;
    assert!(held.is_err(), "a quarantined server started {held:?}");
    let report = h.report(&vm);
    assert!(report.detail.contains("Human Investigate"), "{report:?}");
    // Repaired: the VM held back starts at once.
    h.vms.set_quarantined(false);
    let (again, next, _) = h.launched().await;
    assert_eq!((again.as_str(), next), (vm.as_str(), incarnation + 1));
}
