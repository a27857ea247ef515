//! Why a transfer certificate could not be created.
//!
//! The guest agent cannot connect to its host agent without one, so any of these ends the agent;
//! messages are written to be read by an operator during an incident.

use thiserror::Error;

/// A transfer certificate could not be created.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TransferCertError {
    /// The valid-to date does not exist: the 2012 leap day bug (Feb 29 plus one year).
    #[error("invalid valid-to date {date}")]
    InvalidValidTo {
        /// The date that was asked for, as YYYY-MM-DD.
        date: String,
        /// `time`'s description of the out-of-range component.
        #[source]
        source: time::error::ComponentRange,
    },
    /// The validity window would end after year 9999, which X.509 cannot express.
    #[error("valid-from date {valid_from} is too late: the certificate would expire after 9999")]
    DateOutOfRange {
        /// The requested valid-from date.
        valid_from: String,
    },
    /// rcgen could not generate the key or sign the certificate.
    #[error("transfer certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
}
