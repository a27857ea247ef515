//! Sealing application secrets to a VM's transfer certificate.
//!
//! In the 2012 design the guest agent (GA) creates a *transfer certificate* when it starts and
//! hands its public half to the host agent (HA). The HA encrypts application secrets (for example
//! a customer's SSL certificate) to that key, so secrets are never in the clear on the physical or
//! logical network and only the GA inside the target VM can decrypt them.
//!
//! This crate is that encryption step. It uses HPKE (RFC 9180) in base mode with
//! DHKEM(P-256, HKDF-SHA256), HKDF-SHA256 and AES-128-GCM, because the transfer certificate's key
//! is an ECDSA P-256 key (rcgen cannot make RSA keys) and ring's key agreement keys are
//! single-use, so a reusable decryption key needs an ECDH-based scheme like HPKE.
//!
//! * The HA calls [`seal`] with the transfer certificate (DER) it received from the GA.
//! * The GA calls [`open`] with the transfer certificate's private key (PKCS#8 DER).
//!
//! Both sides pass the same [`SealContext`] (VM id and incarnation). It is bound into the HPKE
//! `info`, so a secret sealed for one VM or incarnation cannot be opened as another one, and the
//! secret's name is bound as AEAD associated data so a sealed secret cannot be relabelled.

mod context;
mod error;
mod recipient;
mod sealed;

pub use context::SealContext;
pub use error::SealError;
pub use recipient::{MAX_TRANSFER_CERT_LEN, check_recipient};
pub use sealed::{SealedSecret, open, seal};
