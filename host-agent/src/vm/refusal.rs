//! Why a guest agent's call was refused. Messages never include a token.

use thiserror::Error;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("no VM {} on this host", fabric_daemon::untrusted::shown(.0))]
    UnknownVm(String),
    #[error("VM is at incarnation {current}, not {presented}")]
    WrongIncarnation { presented: u64, current: u64 },
    #[error("token does not match this VM and incarnation")]
    BadToken,
    #[error("token already used")]
    TokenUsed,
    #[error("guest agent has not said Hello")]
    NoSession,
    /// A re-adopted VM's guest agent must say Hello again with its session
    /// token (the host agent restarted): answered UNAUTHENTICATED.
    #[error(
        "this host agent restarted and does not hold the session; say Hello again with the session token"
    )]
    SessionNotResumed,
    #[error("the transfer certificate differs from the one this session was established with")]
    TransferCertChanged,
    /// The VM's own failure: it is reinitialized (see `super::endpoint`).
    #[error("{0}; the VM is reinitialized")]
    BadEndpoint(super::endpoint::EndpointError),
}
