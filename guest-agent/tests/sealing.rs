//! The point of a transfer certificate: a secret the host agent seals to it can be opened with the
//! guest agent's private key, and only for that VM incarnation. Checks the real GA output works
//! with fabric-sealing (whose own tests use plain rcgen certificates).

use fabric_sealing::{SealContext, open, seal};
use guest_agent::TransferCert;
use time::macros::datetime;

#[test]
fn secret_sealed_to_the_transfer_certificate_opens_in_the_vm() {
    let tc = TransferCert::generate(datetime!(2012-02-29 0:00 UTC), "vm-9", 4, false).unwrap();
    let ctx = SealContext::new(tc.vm_id(), tc.incarnation());
    let sealed = seal(tc.cert_der(), &ctx, "https-cert", b"customer secret").unwrap();
    let opened = open(tc.private_key_pkcs8_der(), &ctx, &sealed).unwrap();
    assert_eq!(opened.as_slice(), b"customer secret");

    // After service healing the VM has a new incarnation (and certificate): the old secret is dead.
    let healed = SealContext::new(tc.vm_id(), tc.incarnation() + 1);
    assert!(open(tc.private_key_pkcs8_der(), &healed, &sealed).is_err());
}
