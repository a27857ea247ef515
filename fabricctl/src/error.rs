//! One-line error messages.
//!
//! An operator should read what went wrong and what to do, not a Debug dump
//! of nested transport errors. gRPC failures are classified here by what
//! they mean for the operator (nothing listening, certificate refused, RPC
//! rejected); the classification is pure so it can be unit tested.

use std::error::Error as StdError;
use std::path::PathBuf;
use tonic::Code;

/// A failure fabricctl knows how to explain.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("no cluster found in {} (run `fabricctl up` or pass --endpoint)", .state_dir.display())]
    NoCluster { state_dir: PathBuf },

    #[error("cluster {cluster:?} in {} is stopped (run `fabricctl up` or pass --endpoint)", .state_dir.display())]
    ClusterStopped { cluster: String, state_dir: PathBuf },

    #[error("{} is unreadable: {detail}", .path.display())]
    BadContext { path: PathBuf, detail: String },

    #[error("{what} at {endpoint} unreachable: {detail}")]
    Unreachable {
        what: &'static str,
        endpoint: String,
        detail: String,
    },

    #[error("certificate refused by {what} at {endpoint}: {detail}")]
    CertificateRefused {
        what: &'static str,
        endpoint: String,
        detail: String,
    },

    #[error("TLS handshake with {what} at {endpoint} failed: {detail}")]
    Tls {
        what: &'static str,
        endpoint: String,
        detail: String,
    },

    #[error("{what} at {endpoint} did not answer in time: {detail}")]
    Timeout {
        what: &'static str,
        endpoint: String,
        detail: String,
    },

    #[error("{what} at {endpoint} rejected {rpc}: {code}: {detail}")]
    Rejected {
        what: &'static str,
        endpoint: String,
        rpc: &'static str,
        code: String,
        detail: String,
    },

    #[error("invalid endpoint {endpoint:?}: {detail}")]
    BadEndpoint { endpoint: String, detail: String },

    #[error("cannot load TLS files: {0}")]
    TlsFiles(String),

    #[error("another `fabricctl up`{} is already running in {}", pid_suffix(*.pid), .state_dir.display())]
    AlreadyRunning {
        state_dir: PathBuf,
        pid: Option<u32>,
    },

    #[error("cannot read service definition {}: {detail}", .path.display())]
    DefinitionUnreadable { path: PathBuf, detail: String },

    #[error("service definition {}: {detail}", .path.display())]
    BadDefinition { path: PathBuf, detail: String },

    /// The controller understood a Deploy, Scale, DeleteDeployment or an
    /// operator call and said no (bad input, name taken, no room, no such
    /// deployment, node not in Human Investigate).
    #[error("{action} refused: {detail}")]
    Refused {
        action: &'static str,
        detail: String,
    },

    #[error("invalid {flag}: {detail}")]
    BadFlag { flag: &'static str, detail: String },

    #[error("no node {node} in this cluster (see `fabricctl status` for node ids)")]
    NoSuchNode { node: String },

    #[error("not a local cluster: no context.json in {} (`fabricctl chaos` acts on a cluster started by `fabricctl up`; pass its --state-dir)", .state_dir.display())]
    NotLocal { state_dir: PathBuf },

    #[error("the launcher of cluster {cluster:?} in {} is not running (start it with `fabricctl up`)", .state_dir.display())]
    LauncherNotRunning { cluster: String, state_dir: PathBuf },

    #[error("cluster {cluster:?} in {} is run by {managed_by}, not `fabricctl up`: inject faults with its own tools (README, \"Break it\")", .state_dir.display())]
    ManagedElsewhere {
        cluster: String,
        state_dir: PathBuf,
        managed_by: String,
    },

    /// A chaos verb that does not apply to the target's current state.
    #[error("{0}")]
    Chaos(String),
}

fn pid_suffix(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Renders any error as one line: the message and its causes joined by ": ",
/// with repeated fragments (common in transport error chains) dropped.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        push_part(&mut parts, cause.to_string());
    }
    flatten(&parts.join(": "))
}

/// Every message in an error's source chain, outermost first, deduplicated.
pub fn chain_text(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = next {
        push_part(&mut parts, e.to_string());
        next = e.source();
    }
    flatten(&parts.join(": "))
}

fn push_part(parts: &mut Vec<String>, part: String) {
    let part = part.trim().to_owned();
    if part.is_empty() || parts.iter().any(|p| p.contains(&part)) {
        return;
    }
    parts.push(part);
}

/// One line: whitespace collapsed, repeated ": "-separated segments and
/// links to library manuals dropped.
fn flatten(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut seen: Vec<&str> = Vec::new();
    for segment in s.split(": ") {
        if !segment.starts_with("https://docs.rs/") && !seen.contains(&segment) {
            seen.push(segment);
        }
    }
    seen.join(": ")
}

/// What a piece of transport or RPC failure text means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing answered: refused, reset before TLS, DNS, no route.
    Unreachable,
    /// The server rejected our certificate (TLS alert or PERMISSION_DENIED).
    CertificateRefused,
    /// We rejected the server, or TLS failed in some other way.
    Tls,
    /// Deadline hit.
    Timeout,
    /// The call reached the server and it said no.
    Rejected,
}

/// Classifies a failure from its gRPC code and the text of its error chain.
///
/// A TLS handshake refusal does not get a code of its own: tonic reports it
/// as UNAVAILABLE ("transport error") with the rustls alert in the source
/// chain, so the text decides.
pub fn classify(code: Option<Code>, text: &str) -> Failure {
    let t = text.to_ascii_lowercase();
    let refused_by_peer = [
        "certificaterequired",
        "certificate required",
        "badcertificate",
        "bad certificate",
        "unknownca",
        "unknown ca",
        "certificateunknown",
        "certificate unknown",
        "accessdenied",
        "decrypterror",
        "received fatal alert",
        "alertreceived",
    ];
    let tls_local = [
        "invalid peer certificate",
        "invalidcertificate",
        "notvalidforname",
        "unknownissuer",
        "certificate",
        "handshake",
    ];
    match code {
        Some(Code::PermissionDenied | Code::Unauthenticated) => {
            return Failure::CertificateRefused;
        }
        Some(Code::DeadlineExceeded) => return Failure::Timeout,
        Some(Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal) | None => {}
        Some(_) => return Failure::Rejected,
    }
    if refused_by_peer.iter().any(|p| t.contains(p)) {
        Failure::CertificateRefused
    } else if connection_lost(&t) {
        Failure::Unreachable
    } else if tls_local.iter().any(|p| t.contains(p)) {
        Failure::Tls
    } else if t.contains("timed out") || t.contains("timeout") || t.contains("deadline") {
        Failure::Timeout
    } else if code.is_none()
        || code == Some(Code::Unavailable)
        || [
            "connection refused",
            "connection reset",
            "broken pipe",
            "transport error",
            "dns error",
            "no route",
            "connect",
        ]
        .iter()
        .any(|p| t.contains(p))
    {
        Failure::Unreachable
    } else {
        Failure::Rejected
    }
}

/// Whether failure text says the connection went away under us (server
/// killed or restarted, or it hung up right after the TLS handshake).
pub fn connection_lost(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "close_notify",
        "unexpected eof",
        "unexpected-eof",
        "connection reset",
        "broken pipe",
        "connection closed",
        "stream closed",
        "h2 protocol error",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// The error for the first RPC on a fresh connection. With TLS 1.3 the
/// server checks our client certificate only after our side of the
/// handshake is done, and a refusal then reaches us as a closed connection
/// on that first call; nothing else closes a just-opened connection.
pub fn first_call(err: CtlError) -> CtlError {
    match err {
        CtlError::Unreachable {
            what,
            endpoint,
            detail,
        } if connection_lost(&detail) => CtlError::CertificateRefused {
            what,
            endpoint,
            detail: format!(
                "connection closed right after the TLS handshake ({detail}); is --cert/--key issued by this cluster's CA?"
            ),
        },
        other => other,
    }
}

/// Builds the error for a failed connect to `endpoint`.
pub fn from_transport(
    what: &'static str,
    endpoint: &str,
    err: &tonic::transport::Error,
) -> CtlError {
    let text = chain_text(err);
    build(what, endpoint, "connect", None, text)
}

/// Builds the error for a failed RPC `rpc` against `endpoint`.
pub fn from_status(
    what: &'static str,
    endpoint: &str,
    rpc: &'static str,
    status: &tonic::Status,
) -> CtlError {
    let mut text = status.message().to_owned();
    if let Some(source) = status.source() {
        let more = chain_text(source);
        if !text.contains(&more) {
            text = if text.is_empty() {
                more
            } else {
                format!("{text}: {more}")
            };
        }
    }
    if text.is_empty() {
        text = status.code().description().to_owned();
    }
    build(what, endpoint, rpc, Some(status.code()), flatten(&text))
}

/// The error for a failed service-management call (`action` is "deploy",
/// "scale" or "delete"): the controller's own reason when it refused the
/// request itself, otherwise the usual transport classification.
pub fn from_management(
    action: &'static str,
    what: &'static str,
    endpoint: &str,
    rpc: &'static str,
    status: &tonic::Status,
) -> CtlError {
    let message = flatten(status.message());
    let hint = match status.code() {
        Code::ResourceExhausted => {
            " (free slots with `fabricctl delete` or `fabricctl scale`, or restart `fabricctl up` with more --hosts or --capacity)"
        }
        Code::NotFound => " (see `fabricctl status` for deployments and roles)",
        _ => "",
    };
    match status.code() {
        Code::InvalidArgument
        | Code::AlreadyExists
        | Code::ResourceExhausted
        | Code::NotFound
        | Code::FailedPrecondition
        | Code::OutOfRange
            if !message.is_empty() =>
        {
            CtlError::Refused {
                action,
                detail: format!("{message}{hint}"),
            }
        }
        _ => from_status(what, endpoint, rpc, status),
    }
}

/// The error for a failed operator call on a node or the cluster (`action`
/// is "repair", "resume" or "switch"; `node` names the node acted on): an
/// unknown node is said plainly, a refusal is the controller's own reason
/// ("repair refused: node host-2 is Ready, not in Human Investigate"),
/// anything else is classified as usual.
pub fn from_operator(
    action: &'static str,
    node: Option<&str>,
    what: &'static str,
    endpoint: &str,
    rpc: &'static str,
    status: &tonic::Status,
) -> CtlError {
    let message = flatten(status.message());
    match (status.code(), node) {
        (Code::NotFound, Some(node)) => CtlError::NoSuchNode {
            node: node.to_owned(),
        },
        (Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound, _)
            if !message.is_empty() =>
        {
            CtlError::Refused {
                action,
                detail: message,
            }
        }
        _ => from_status(what, endpoint, rpc, status),
    }
}

fn build(
    what: &'static str,
    endpoint: &str,
    rpc: &'static str,
    code: Option<Code>,
    detail: String,
) -> CtlError {
    let endpoint = endpoint.to_owned();
    match classify(code, &detail) {
        Failure::Unreachable => CtlError::Unreachable {
            what,
            endpoint,
            detail,
        },
        Failure::CertificateRefused => CtlError::CertificateRefused {
            what,
            endpoint,
            detail,
        },
        Failure::Tls => CtlError::Tls {
            what,
            endpoint,
            detail: format!("{detail} (is --ca this cluster's CA and --server-name right?)"),
        },
        Failure::Timeout => CtlError::Timeout {
            what,
            endpoint,
            detail,
        },
        Failure::Rejected => CtlError::Rejected {
            what,
            endpoint,
            rpc,
            code: format!("{:?}", code.unwrap_or(Code::Unknown)),
            detail,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FC: &str = "fabric controller";
    const EP: &str = "https://127.0.0.1:7400";

    #[test]
    fn no_cluster_message() {
        let e = CtlError::NoCluster {
            state_dir: ".fabric".into(),
        };
        assert_eq!(
            e.to_string(),
            "no cluster found in .fabric (run `fabricctl up` or pass --endpoint)"
        );
    }

    #[test]
    fn connection_refused_is_unreachable() {
        let e = build(
            FC,
            EP,
            "connect",
            None,
            "tcp connect error: Connection refused (os error 111)".into(),
        );
        assert_eq!(
            e.to_string(),
            "fabric controller at https://127.0.0.1:7400 unreachable: tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn tls_alert_is_certificate_refused() {
        let text = "transport error: received fatal alert: CertificateRequired";
        assert_eq!(
            classify(Some(Code::Unavailable), text),
            Failure::CertificateRefused
        );
        let e = build(FC, EP, "GetStatus", Some(Code::Unavailable), text.into());
        assert!(
            e.to_string()
                .starts_with("certificate refused by fabric controller at https://127.0.0.1:7400:")
        );
        assert_eq!(
            classify(Some(Code::Unknown), "alert received: BadCertificate"),
            Failure::CertificateRefused
        );
    }

    #[test]
    fn lost_connection_is_unreachable() {
        let text = "h2 protocol error: error reading a body from connection: error reading a body from connection: peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof";
        assert_eq!(classify(Some(Code::Unknown), text), Failure::Unreachable);
        let e = build(FC, EP, "WatchEvents", Some(Code::Unknown), flatten(text));
        assert_eq!(
            e.to_string(),
            "fabric controller at https://127.0.0.1:7400 unreachable: h2 protocol error: error reading a body from connection: peer closed connection without sending TLS close_notify"
        );
    }

    #[test]
    fn hang_up_on_first_call_is_certificate_refused() {
        let text = "transport error: connection error: stream closed because of a broken pipe";
        let e = first_call(build(
            FC,
            EP,
            "GetStatus",
            Some(Code::Unavailable),
            text.into(),
        ));
        assert!(
            e.to_string().starts_with(
                "certificate refused by fabric controller at https://127.0.0.1:7400: connection closed right after the TLS handshake"
            ),
            "{e}"
        );
        let refused = "tcp connect error: Connection refused (os error 111)";
        let e = first_call(build(FC, EP, "connect", None, refused.into()));
        assert!(matches!(e, CtlError::Unreachable { .. }));
    }

    #[test]
    fn server_cert_mismatch_is_tls() {
        let text = "invalid peer certificate: UnknownIssuer";
        assert_eq!(classify(None, text), Failure::Tls);
        let e = build(FC, EP, "connect", None, text.into());
        assert!(
            e.to_string()
                .contains("TLS handshake with fabric controller")
        );
    }

    #[test]
    fn permission_denied_is_certificate_refused() {
        let s = tonic::Status::permission_denied("host certificates may not call OperatorService");
        let e = from_status(FC, EP, "GetStatus", &s);
        assert_eq!(
            e.to_string(),
            "certificate refused by fabric controller at https://127.0.0.1:7400: host certificates may not call OperatorService"
        );
    }

    #[test]
    fn other_codes_are_rejections() {
        let s = tonic::Status::unimplemented("");
        let e = from_status(FC, EP, "WatchEvents", &s);
        assert!(e.to_string().starts_with(
            "fabric controller at https://127.0.0.1:7400 rejected WatchEvents: Unimplemented:"
        ));
        assert_eq!(classify(Some(Code::DeadlineExceeded), ""), Failure::Timeout);
    }

    #[test]
    fn management_refusals_are_the_controllers_reason() {
        let s = tonic::Status::invalid_argument(
            "role frontend: certificate \"https\": the private key does not match the certificate",
        );
        let e = from_management("deploy", FC, EP, "Deploy", &s);
        assert_eq!(
            e.to_string(),
            "deploy refused: role frontend: certificate \"https\": the private key does not match the certificate"
        );
        let s = tonic::Status::resource_exhausted(
            "not enough VM slots: 3 more instances needed, 2 free on Ready servers",
        );
        let e = from_management("scale", FC, EP, "Scale", &s).to_string();
        assert!(e.starts_with("scale refused: not enough VM slots: 3 more instances needed, 2 free on Ready servers (free slots with"), "{e}");
        let s = tonic::Status::not_found("no deployment named web");
        let e = from_management("delete", FC, EP, "DeleteDeployment", &s).to_string();
        assert!(
            e.starts_with("delete refused: no deployment named web (see `fabricctl status`"),
            "{e}"
        );
        // Not a refusal: still reported as a transport problem.
        let s = tonic::Status::unavailable("tcp connect error: Connection refused");
        let e = from_management("deploy", FC, EP, "Deploy", &s);
        assert!(matches!(e, CtlError::Unreachable { .. }), "{e}");
        let s = tonic::Status::permission_denied("needs an Admin certificate");
        let e = from_management("deploy", FC, EP, "Deploy", &s);
        assert!(matches!(e, CtlError::CertificateRefused { .. }), "{e}");
    }

    #[test]
    fn operator_refusals() {
        let s =
            tonic::Status::failed_precondition("node host-2 is Ready, not in Human Investigate");
        let e = from_operator("repair", Some("host-2"), FC, EP, "RepairNode", &s);
        assert_eq!(
            e.to_string(),
            "repair refused: node host-2 is Ready, not in Human Investigate"
        );
        let s = tonic::Status::not_found("node host-9 is not registered");
        let e = from_operator("repair", Some("host-9"), FC, EP, "RepairNode", &s);
        assert_eq!(
            e.to_string(),
            "no node host-9 in this cluster (see `fabricctl status` for node ids)"
        );
        let s = tonic::Status::invalid_argument("unknown switch \"brakes\"");
        let e = from_operator("switch", None, FC, EP, "SetSwitch", &s);
        assert_eq!(e.to_string(), "switch refused: unknown switch \"brakes\"");
        // A controller from before these calls existed.
        let s = tonic::Status::unimplemented("");
        let e = from_operator("resume", None, FC, EP, "ResumeCluster", &s).to_string();
        assert!(
            e.starts_with(
                "fabric controller at https://127.0.0.1:7400 rejected ResumeCluster: Unimplemented:"
            ),
            "{e}"
        );
        let s = tonic::Status::unavailable("tcp connect error: Connection refused");
        let e = from_operator("repair", Some("host-2"), FC, EP, "RepairNode", &s);
        assert!(matches!(e, CtlError::Unreachable { .. }), "{e}");
        let s = tonic::Status::permission_denied("needs an Admin certificate");
        let e = from_operator("repair", Some("host-2"), FC, EP, "RepairNode", &s);
        assert!(matches!(e, CtlError::CertificateRefused { .. }), "{e}");
    }

    #[test]
    fn one_line_flattens_and_dedups() {
        let e = anyhow::anyhow!("inner\nline").context("outer");
        assert_eq!(one_line(&e), "outer: inner line");
        let e = anyhow::anyhow!("same").context("same");
        assert_eq!(one_line(&e), "same");
    }
}
