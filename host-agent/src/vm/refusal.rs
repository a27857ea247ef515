//! Why a guest agent's call was refused. Messages never include a token.

use thiserror::Error;

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("no VM {0} on this host")]
    UnknownVm(String),
    #[error("VM is at incarnation {current}, not {presented}")]
    WrongIncarnation { presented: u64, current: u64 },
    #[error("token does not match this VM and incarnation")]
    BadToken,
    #[error("token already used")]
    TokenUsed,
    #[error("guest agent has not said Hello")]
    NoSession,
}
