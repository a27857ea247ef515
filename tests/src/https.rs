//! HTTPS to the roles' endpoints, trusting exactly one certificate.
//!
//! A role serves the certificate its deployment names. To prove *which*
//! certificate an endpoint serves (the deployed one, the rotated one after a
//! redeploy, never a stale one), the tests pin exactly the expected
//! certificate DER with [`fabricctl::https`]'s client (`Trust::Pinned`):
//! any other certificate fails the handshake.
//!
//! - [`cert_der`]: the DER of a PEM certificate file.
//! - [`runtime`]: a current-thread tokio runtime for [`fetch`].
//! - [`fetch`]: one `GET /` over a fresh pinned TLS connection, returning
//!   what was [`Served`].
//! - [`assert_identity`] / [`check_identity`]: the body of `GET /` names
//!   exactly an instance.

pub use fabricctl::https::Served;
use fabricctl::https::Trust;
use fabricctl::status::InstanceJson;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;

/// The DER of the (first) certificate in the PEM file at `path`.
pub fn cert_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_vec()
}

/// A current-thread tokio runtime to run [`fetch`] on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `GET /` at `endpoint` on `rt`, trusting only `trusted_der`; bounded by
/// [`fabricctl::https::FETCH_TIMEOUT`].
pub fn fetch(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    trusted_der: &[u8],
) -> Result<Served, String> {
    rt.block_on(fabricctl::https::fetch(
        endpoint,
        &Trust::Pinned(trusted_der.to_vec()),
    ))
}

/// The body of `GET /` names exactly instance `i` of `deployment`: its role,
/// index, node, incarnation and VM id.
pub fn assert_identity(served: &Served, deployment: &str, i: &InstanceJson) {
    if let Err(e) = check_identity(served, deployment, i) {
        panic!("{e}");
    }
}

/// Like [`assert_identity`], returning what differs instead of panicking.
pub fn check_identity(served: &Served, deployment: &str, i: &InstanceJson) -> Result<(), String> {
    let expected = serde_json::json!({
        "deployment": deployment,
        "role": i.role,
        "instance": i.index,
        "node": i.node,
        "incarnation": i.incarnation,
        "vm_id": i.id,
    });
    for (key, value) in expected.as_object().expect("an object") {
        if &served.body[key] != value {
            return Err(format!(
                "{key} of {} at {}: {} instead of {value} in {}",
                i.id, i.endpoint, served.body[key], served.body
            ));
        }
    }
    Ok(())
}
