//! Fabric's guest agent (GA): the agent that runs inside every VM.
//!
//! Its first job when it starts is to create the VM's *transfer certificate*: a self-signed
//! certificate whose public key it hands to the host agent, so the host agent can encrypt
//! application secrets that only this VM can decrypt. In 2012 that step failed on Feb 29 because
//! the certificate's valid-to date was computed as "same date, next year"; see
//! [`transfer_cert::buggy_valid_to`] for the reproduction and [`transfer_cert::valid_to`] for the
//! fix.
//!
//! `guest-agent run` ([`run`]) is the long-running agent: it connects to its host agent
//! ([`host_link`]), receives the role's certificates sealed to the transfer certificate
//! ([`secrets`], [`secret_files`]), serves them on the role's HTTPS endpoint ([`role`],
//! [`cert_resolver`]), heartbeats ([`heartbeat`]) and accepts rotated certificates
//! ([`guest_service`]).

pub mod agent_state;
pub mod calendar;
pub mod cert_files;
pub mod cert_resolver;
pub mod fingerprint;
pub mod guest_service;
pub mod heartbeat;
pub mod host_link;
pub mod role;
pub mod role_binding;
pub mod run;
pub mod secret_files;
pub mod secrets;
pub mod transfer_cert;

pub use cert_files::{CertFiles, write_transfer_cert};
pub use transfer_cert::{TransferCert, TransferCertError};
