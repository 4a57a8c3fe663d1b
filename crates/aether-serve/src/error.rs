//! The service's error type.

use std::net::SocketAddr;

/// Why the service could not start or a request could not be carried out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The model file is invalid or cannot stream.
    #[error("model: {0}")]
    Model(String),
    /// A setting is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// The recording directory cannot be used.
    #[error("recording: {0}")]
    Record(String),
    /// The message broker of a cluster role refused or could not be reached.
    #[error("broker: {0}")]
    Broker(String),
    /// A socket could not be bound.
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        /// Which socket (`UDP`, `HTTP`).
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Another I/O failure.
    #[error("{context}: {source}")]
    Io {
        /// What the service was doing.
        context: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
