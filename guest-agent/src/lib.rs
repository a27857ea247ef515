//! Fabric's guest agent (GA): the agent that runs inside every VM.
//!
//! Its first job when it starts is to create the VM's *transfer certificate*: a self-signed
//! certificate whose public key it hands to the host agent, so the host agent can encrypt
//! application secrets that only this VM can decrypt. In 2012 that step failed on Feb 29 because
//! the certificate's valid-to date was computed as "same date, next year"; see
//! [`transfer_cert::buggy_valid_to`] for the reproduction and [`transfer_cert::valid_to`] for the
//! fix.

pub mod cert_files;
pub mod transfer_cert;

pub use cert_files::{CertFiles, write_transfer_cert};
pub use transfer_cert::{TransferCert, TransferCertError};
