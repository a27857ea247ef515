//! One VM's wire server: its goal state and documents on a loopback port
//! of its own, and what its guest did, for the host agent to watch.
//!
//! One port per VM because the agent names the server by `host:port`
//! alone (`<Lib.Dir>/WireServerEndpoint`) and asks fixed paths
//! (`/machine/?comp=goalstate`), so the port is what tells VMs apart.
//! Requests naming another container or role instance are refused (403),
//! a document of an incarnation no longer current is gone (410: the agent
//! then fetches the goal state again), bodies over [`BODY_LIMIT`] are
//! refused (413), and every refusal says why in plain text. Nothing a
//! guest sends can reach another VM's server or stop this one.

use crate::RoleCertificate;
use crate::certificates::{self, TransferCertificate};
use crate::documents::{self, Links};
use crate::{GoalState, PROTOCOL_VERSION};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The largest request body accepted: status blobs and health reports are
/// a few KiB.
pub const BODY_LIMIT: usize = 1 << 20;

/// What the guest reported in its status blob's `guestAgentStatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentStatus {
    /// `Ready` or `NotReady`.
    pub status: String,
    /// The agent's own version, e.g. `2.7.3.0`.
    pub version: String,
    pub message: String,
}

/// What the guest has done so far, as the host agent watches it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// Goal-state polls: the real agent's heartbeat.
    pub goal_state_polls: u64,
    /// The last request of any kind.
    pub last_request: Option<tokio::time::Instant>,
    /// The thumbprint of the transfer certificate it last sent.
    pub transfer_certificate: Option<String>,
    /// The incarnation whose certificates it was last given.
    pub certificates_incarnation: Option<u64>,
    /// Its last status blob.
    pub agent_status: Option<AgentStatus>,
    /// The `<State>` of its last health report.
    pub health: Option<String>,
    /// Requests refused (wrong VM, stale incarnation, malformed).
    pub refused: u64,
}

impl Observed {
    /// The guest said it is Ready, by status blob or health report: the
    /// guest's connect, for the host agent's guest timeout.
    pub fn ready(&self) -> bool {
        self.agent_status
            .as_ref()
            .is_some_and(|s| s.status == "Ready")
            || self.health.as_deref() == Some("Ready")
    }
}

/// What the Certificates document carries, for a transfer certificate:
/// the enveloped data (base64 lines), or why not.
pub type Enveloped =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>;

/// Where a VM's certificates come from. The server calls it at each
/// Certificates request with the transfer certificate the guest sent; the
/// source answers with the role's certificates enveloped to it, so the
/// server itself never holds a plaintext key.
pub trait CertificateSource: Send + Sync + 'static {
    fn envelope(&self, transfer: TransferCertificate, incarnation: u64) -> Enveloped;
}

/// A source holding the certificates themselves (tests, tools): it
/// envelopes them anew for each request.
#[derive(Default)]
pub struct StaticCertificates {
    certificates: Mutex<Vec<RoleCertificate>>,
}

impl StaticCertificates {
    pub fn new(certificates: Vec<RoleCertificate>) -> Self {
        Self {
            certificates: Mutex::new(certificates),
        }
    }

    /// Replaces the certificates (a rotation, with a new incarnation).
    pub fn set(&self, certificates: Vec<RoleCertificate>) {
        *self.certificates.lock().unwrap_or_else(|p| p.into_inner()) = certificates;
    }
}

impl CertificateSource for StaticCertificates {
    fn envelope(&self, transfer: TransferCertificate, _incarnation: u64) -> Enveloped {
        let certificates = self
            .certificates
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Box::pin(async move {
            // RSA and PBKDF2: off the async workers.
            tokio::task::spawn_blocking(move || {
                certificates::envelope(&certificates, &transfer).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| format!("enveloping did not finish: {e}"))?
        })
    }
}

struct Shared {
    goal: Mutex<GoalState>,
    source: Arc<dyn CertificateSource>,
    links: Links,
    observed: watch::Sender<Observed>,
}

impl Shared {
    fn goal(&self) -> GoalState {
        self.goal.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn note(&self, f: impl FnOnce(&mut Observed)) {
        self.observed.send_modify(|o| {
            o.last_request = Some(tokio::time::Instant::now());
            f(o);
        });
    }
}

/// A refusal: status and a sentence saying why.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

type Reply = Result<Response, Refusal>;

fn xml(body: String) -> Response {
    ([("content-type", "text/xml; charset=utf-8")], body).into_response()
}

/// A running wire server for one VM; stopped when dropped.
pub struct WireServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl WireServer {
    /// Serves `goal` on `listen` (a loopback address; port 0 picks one),
    /// its certificates from `source`.
    pub async fn start(
        listen: SocketAddr,
        goal: GoalState,
        source: Arc<dyn CertificateSource>,
    ) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        Self::serve(listener, goal, source)
    }

    /// Like [`WireServer::start`] on a listener bound already, from
    /// synchronous code inside a tokio runtime (the host agent's launcher).
    pub fn from_std(
        listener: std::net::TcpListener,
        goal: GoalState,
        source: Arc<dyn CertificateSource>,
    ) -> std::io::Result<Self> {
        listener.set_nonblocking(true)?;
        Self::serve(tokio::net::TcpListener::from_std(listener)?, goal, source)
    }

    fn serve(
        listener: tokio::net::TcpListener,
        goal: GoalState,
        source: Arc<dyn CertificateSource>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            goal: Mutex::new(goal),
            source,
            links: Links {
                base: format!("http://{addr}"),
            },
            observed: watch::channel(Observed::default()).0,
        });
        let router = router(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::warn!(error = %e, "wire server stopped");
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `host:port`, what `<Lib.Dir>/WireServerEndpoint` holds.
    pub fn endpoint(&self) -> String {
        self.addr.to_string()
    }

    /// Replaces the goal state; the guest picks it up at its next poll if
    /// the incarnation went up.
    pub fn set_goal_state(&self, goal: GoalState) {
        *self.shared.goal.lock().unwrap_or_else(|p| p.into_inner()) = goal;
    }

    /// Offers the next goal-state incarnation (the same documents, and the
    /// certificates the source gives now): the guest fetches it at its next
    /// poll. Returns the new incarnation.
    pub fn next_incarnation(&self) -> u64 {
        let mut goal = self.shared.goal.lock().unwrap_or_else(|p| p.into_inner());
        goal.incarnation += 1;
        goal.incarnation
    }

    /// What the guest has done, updated at each request.
    pub fn observe(&self) -> watch::Receiver<Observed> {
        self.shared.observed.subscribe()
    }
}

impl Drop for WireServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/machine", get(machine).post(report))
        .route("/machine/", get(machine).post(report))
        .route("/machine/{container}/{instance}", get(document))
        .route("/machine/{container}/status", put(status))
        .fallback(|| async {
            Refusal(StatusCode::NOT_FOUND, "no such wire-server resource".into())
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(trace))
        .with_state(shared)
}

/// Logs every exchange at debug level: the trace of a guest's start
/// (docs/waagent.md shows one).
async fn trace(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    // In a block of its own: a borrow of the request (whose body is not
    // Sync) held across the await would make the future not Send.
    let (cert_header, cipher, request_bytes) = {
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        (
            header("x-ms-guest-agent-public-x509-cert").len(),
            header("x-ms-cipher-name"),
            header("content-length"),
        )
    };
    let resp = next.run(req).await;
    let size = axum::body::HttpBody::size_hint(resp.body()).exact();
    tracing::debug!(
        %method,
        %uri,
        status = resp.status().as_u16(),
        response_bytes = size,
        transfer_cert_header_bytes = cert_header,
        cipher,
        request_bytes,
        "wire exchange"
    );
    resp
}

type Params = Query<HashMap<String, String>>;

fn comp(q: &Params) -> &str {
    q.get("comp").map_or("", String::as_str)
}

fn refuse(shared: &Shared, code: StatusCode, why: String) -> Refusal {
    shared.note(|o| o.refused += 1);
    tracing::info!(code = code.as_u16(), why, "wire server refused a request");
    Refusal(code, why)
}

/// The protocol version header every `/machine` request carries.
fn check_version(shared: &Shared, headers: &HeaderMap) -> Result<(), Refusal> {
    match headers.get("x-ms-version").and_then(|v| v.to_str().ok()) {
        Some(PROTOCOL_VERSION) => Ok(()),
        other => Err(refuse(
            shared,
            StatusCode::BAD_REQUEST,
            format!("x-ms-version {other:?}: this wire server speaks {PROTOCOL_VERSION} only"),
        )),
    }
}

async fn root(State(shared): State<Arc<Shared>>, q: Params) -> Reply {
    match comp(&q) {
        "versions" => {
            shared.note(|_| {});
            Ok(xml(documents::versions()))
        }
        other => Err(refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            format!("comp={other:?}: only comp=versions is served at /"),
        )),
    }
}

async fn machine(State(shared): State<Arc<Shared>>, headers: HeaderMap, q: Params) -> Reply {
    check_version(&shared, &headers)?;
    match comp(&q) {
        "goalstate" => {
            shared.note(|o| o.goal_state_polls += 1);
            Ok(xml(documents::goal_state(&shared.goal(), &shared.links)))
        }
        other => Err(refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            format!("comp={other:?}: only comp=goalstate is served at /machine"),
        )),
    }
}

/// `POST /machine?comp=health|telemetrydata|roleProperties`.
async fn report(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    q: Params,
    body: Bytes,
) -> Reply {
    check_version(&shared, &headers)?;
    match comp(&q) {
        "health" => {
            let text = String::from_utf8_lossy(&body);
            let Some(state) = documents::health_state(&text) else {
                return Err(refuse(
                    &shared,
                    StatusCode::BAD_REQUEST,
                    "a health report needs a <State>".into(),
                ));
            };
            tracing::info!(state, "guest health report");
            shared.note(|o| o.health = Some(state));
            Ok(StatusCode::OK.into_response())
        }
        // Accepted and dropped: Fabric has its own telemetry.
        "telemetrydata" | "roleProperties" => {
            shared.note(|_| {});
            Ok(StatusCode::OK.into_response())
        }
        other => Err(refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            format!("comp={other:?}: POST /machine takes health, telemetrydata or roleProperties"),
        )),
    }
}

/// The request names this VM's container and role instance, and the
/// current incarnation if it names one.
fn check_target(
    shared: &Shared,
    goal: &GoalState,
    container: &str,
    instance: Option<&str>,
    q: &Params,
) -> Result<(), Refusal> {
    if container != goal.container_id || instance.is_some_and(|i| i != goal.instance_id) {
        return Err(refuse(
            shared,
            StatusCode::FORBIDDEN,
            format!(
                "{container}/{}: not this VM's container and role instance",
                instance.unwrap_or("-")
            ),
        ));
    }
    match q.get("incarnation").map(|i| i.parse::<u64>()) {
        None => Ok(()),
        Some(Ok(i)) if i == goal.incarnation => Ok(()),
        Some(Ok(i)) => Err(refuse(
            shared,
            StatusCode::GONE,
            format!(
                "incarnation {i} is not current ({}): fetch the goal state again",
                goal.incarnation
            ),
        )),
        Some(Err(_)) => Err(refuse(
            shared,
            StatusCode::BAD_REQUEST,
            "incarnation must be a number".into(),
        )),
    }
}

async fn document(
    State(shared): State<Arc<Shared>>,
    Path((container, instance)): Path<(String, String)>,
    headers: HeaderMap,
    q: Params,
) -> Reply {
    check_version(&shared, &headers)?;
    let goal = shared.goal();
    check_target(&shared, &goal, &container, Some(&instance), &q)?;
    match (comp(&q), q.get("type").map(String::as_str)) {
        ("config", Some("hostingEnvironmentConfig")) => {
            shared.note(|_| {});
            Ok(xml(documents::hosting_environment(&goal)))
        }
        ("config", Some("sharedConfig")) => {
            shared.note(|_| {});
            Ok(xml(documents::shared_config(&goal)))
        }
        ("config", Some("extensionsConfig")) => {
            shared.note(|_| {});
            Ok(xml(documents::extensions_config(&goal, &shared.links)))
        }
        ("certificates", _) => certificates(&shared, goal, &headers).await,
        (comp, kind) => Err(refuse(
            &shared,
            StatusCode::BAD_REQUEST,
            format!("comp={comp:?} type={kind:?}: no such document"),
        )),
    }
}

/// The role's certificates, enveloped to the transfer certificate the
/// request carries: the first step of guest initialization in the
/// postmortem's words.
async fn certificates(shared: &Shared, goal: GoalState, headers: &HeaderMap) -> Reply {
    let Some(header) = headers
        .get("x-ms-guest-agent-public-x509-cert")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(refuse(
            shared,
            StatusCode::BAD_REQUEST,
            "the Certificates request must carry the guest's transfer certificate \
             (x-ms-guest-agent-public-x509-cert)"
                .into(),
        ));
    };
    let transfer = TransferCertificate::from_header(header)
        .map_err(|e| refuse(shared, StatusCode::BAD_REQUEST, e.to_string()))?;
    let cipher = headers
        .get("x-ms-cipher-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let thumbprint = transfer.thumbprint.clone();
    let incarnation = goal.incarnation;
    if !goal.has_certificates {
        return Err(refuse(
            shared,
            StatusCode::NOT_FOUND,
            "this VM's role has no certificates".into(),
        ));
    }
    let data = shared
        .source
        .envelope(transfer, incarnation)
        .await
        .map_err(|e| refuse(shared, StatusCode::SERVICE_UNAVAILABLE, e))?;
    tracing::info!(
        transfer_certificate = thumbprint,
        asked_cipher = cipher,
        incarnation,
        "certificates sealed to the guest's transfer certificate (AES-128-CBC)"
    );
    shared.note(|o| {
        o.transfer_certificate = Some(thumbprint);
        o.certificates_incarnation = Some(incarnation);
    });
    Ok(xml(documents::certificates(&goal, &data)))
}

/// `PUT` of the status blob (a block blob of JSON).
async fn status(
    State(shared): State<Arc<Shared>>,
    Path(container): Path<String>,
    q: Params,
    body: Bytes,
) -> Reply {
    let goal = shared.goal();
    check_target(&shared, &goal, &container, None, &q)?;
    let status =
        agent_status(&body).map_err(|why| refuse(&shared, StatusCode::BAD_REQUEST, why))?;
    shared.note(|o| {
        if o.agent_status.as_ref() != Some(&status) {
            tracing::info!(
                status = status.status,
                version = status.version,
                "guest agent status"
            );
        }
        o.agent_status = Some(status);
    });
    Ok(StatusCode::CREATED.into_response())
}

/// `aggregateStatus.guestAgentStatus` of a status blob.
fn agent_status(body: &[u8]) -> Result<AgentStatus, String> {
    let blob: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the status blob is not JSON: {e}"))?;
    let ga = &blob["aggregateStatus"]["guestAgentStatus"];
    let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let status = field(&ga["status"]);
    if status.is_empty() {
        return Err("the status blob has no aggregateStatus.guestAgentStatus.status".into());
    }
    Ok(AgentStatus {
        status,
        version: field(&ga["version"]),
        message: field(&ga["formattedMessage"]["message"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_blob_says_ready_or_why_not() {
        let blob = br#"{"version":"1.1","aggregateStatus":{"guestAgentStatus":
            {"version":"2.7.3.0","status":"Ready","formattedMessage":{"lang":"en-US","message":"Guest Agent is running"}}}}"#;
        let s = agent_status(blob).expect("a status");
        assert_eq!(s.status, "Ready");
        assert_eq!(s.version, "2.7.3.0");
        assert_eq!(s.message, "Guest Agent is running");
        assert!(agent_status(b"{").unwrap_err().contains("not JSON"));
        assert!(
            agent_status(b"{}")
                .unwrap_err()
                .contains("guestAgentStatus.status")
        );
    }

    #[tokio::test]
    async fn the_next_incarnation_is_served_in_place_of_the_last() {
        let goal = GoalState {
            incarnation: 3,
            container_id: "c-0".into(),
            deployment: "web".into(),
            role: "frontend".into(),
            instance_id: "web.frontend.0".into(),
            has_certificates: true,
        };
        let server = WireServer::start(
            "127.0.0.1:0".parse().unwrap(),
            goal,
            Arc::new(StaticCertificates::new(Vec::new())),
        )
        .await
        .expect("wire server");
        assert_eq!(server.next_incarnation(), 4);
        assert_eq!(server.next_incarnation(), 5);
        assert_eq!(server.shared.goal().incarnation, 5);
        assert_eq!(server.shared.goal().container_id, "c-0");
    }
}
