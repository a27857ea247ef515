//! The wire server: the subset of Azure's wire protocol that Azure's own
//! Linux guest agent, WALinuxAgent, speaks to its host, so that a Fabric
//! VM can run a guest agent no one here wrote.
//!
//! The postmortem's steps, as the real agent takes them against this
//! server:
//! 1. it polls its **goal state** (`GET /machine/?comp=goalstate`): an
//!    incarnation, its container and role instance, and links to the
//!    documents below ([`documents`]);
//! 2. it makes a **transfer certificate** (an RSA key of its own, made
//!    with openssl when it starts) and sends the public half with its
//!    request for the role's **certificates**
//!    (`x-ms-guest-agent-public-x509-cert`): the host answers with the
//!    role's certificate and key as a PKCS#12 enveloped (CMS, RSA key
//!    transport) to that certificate, which only the VM can open
//!    ([`certificates`]);
//! 3. it reports its status: `Ready` in the status blob it uploads (and,
//!    from the provisioning daemon, `POST /machine?comp=health`).
//!
//! [`server`] serves one VM on a loopback port of its own and tells the
//! host agent what the guest did ([`server::Observed`]); [`agent_dir`] lays
//! out the Lib.Dir and configuration that point the real agent at it.

pub mod agent_dir;
pub mod certificates;
pub mod documents;
pub mod server;

/// The one protocol version this server speaks, the one WALinuxAgent asks
/// for in `x-ms-version`.
pub const PROTOCOL_VERSION: &str = "2012-11-30";

/// The role's certificate and private key, as a guest receives them. The
/// key is wiped from memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleCertificate {
    /// The X.509 certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its private key, PKCS#8 DER.
    pub key_pkcs8_der: Vec<u8>,
}

impl Drop for RoleCertificate {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key_pkcs8_der);
    }
}

impl std::fmt::Debug for RoleCertificate {
    // Hand-written so the key never reaches a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCertificate")
            .field("thumbprint", &self.thumbprint())
            .field("key", &"<redacted>")
            .finish()
    }
}

impl RoleCertificate {
    /// The certificate's thumbprint as Azure names it: the SHA-1 of its
    /// DER, upper-case hex (WALinuxAgent names its `.crt` and `.prv` files
    /// after it).
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.cert_der)
    }
}

/// SHA-1 of `der`, upper-case hex: Azure's certificate thumbprint.
pub fn thumbprint(der: &[u8]) -> String {
    use sha1::Digest;
    sha1::Sha1::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// What one VM's guest is told: its goal state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalState {
    /// Goes up whenever anything below changes; the guest acts on a new one.
    pub incarnation: u64,
    /// The VM's container id (a UUID in Azure).
    pub container_id: String,
    /// The deployment's name.
    pub deployment: String,
    /// The role's name.
    pub role: String,
    /// The role instance, e.g. `web.frontend.0`.
    pub instance_id: String,
    /// Whether the role has certificates (then the goal state links to
    /// them; the [`server::CertificateSource`] gives them).
    pub has_certificates: bool,
}
