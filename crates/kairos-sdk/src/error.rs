//! The client's and the job-event server's errors.

use tonic::Code;

/// Why a client call, a connection or a server failed.
///
/// Errors from the sidecar keep its gRPC status, so a caller can tell causes apart:
///
/// ```
/// use kairos_sdk::Error;
///
/// let exists = Error::Status {
///     operation: "schedule job",
///     status: tonic::Status::already_exists("job already exists: 'app||default||app1||backup'"),
/// };
/// assert!(exists.is_already_exists());
/// assert_eq!(exists.code(), Some(tonic::Code::AlreadyExists));
///
/// // The sidecar reports a missing job on GetJob as Internal, naming NotFound in the message.
/// let missing = Error::Status {
///     operation: "get job",
///     status: tonic::Status::internal(
///         "failed to get job due to: rpc error: code = NotFound desc = job not found: backup",
///     ),
/// };
/// assert!(missing.is_not_found());
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The sidecar endpoint could not be understood.
    #[error("invalid dapr grpc endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as given.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The endpoint asks for TLS (`https://…` or `?tls=true`), which this client does not speak.
    #[error("dapr grpc endpoint {0:?} asks for TLS, which is not supported yet")]
    TlsNotSupported(String),
    /// A setting (an environment variable or an option) has a value that cannot be used.
    #[error("invalid setting {name}={value:?}: {reason}")]
    InvalidSetting {
        /// The setting's name, e.g. `DAPR_CLIENT_TIMEOUT_SECONDS`.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// Connecting to the sidecar failed or timed out.
    #[error("connecting to the dapr sidecar at {endpoint} failed")]
    Connect {
        /// The endpoint dialled.
        endpoint: String,
        /// The transport's error.
        #[source]
        source: tonic::transport::Error,
    },
    /// A call was refused before it was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The sidecar answered with an error status.
    #[error("{operation} failed: {}: {}", .status.code(), .status.message())]
    Status {
        /// What the client was doing, e.g. `schedule job`.
        operation: &'static str,
        /// The status, code and message as the sidecar sent them.
        #[source]
        status: tonic::Status,
    },
    /// The sidecar's answer lacks something it must hold.
    #[error("unexpected response to {operation}: {reason}")]
    InvalidResponse {
        /// The call.
        operation: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// Serving the job-event service failed (bind, accept or transport error).
    #[error("serving the job-event service failed")]
    Serve(#[source] tonic::transport::Error),
    /// Binding the job-event service's listener failed.
    #[error("binding the job-event service to {addr} failed")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The gRPC status, when the sidecar answered with one.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            Error::Status { status, .. } => Some(status),
            _ => None,
        }
    }

    /// The gRPC code, when the sidecar answered with one.
    pub fn code(&self) -> Option<Code> {
        self.status().map(tonic::Status::code)
    }

    /// The job name is taken and `overwrite` was false (HTTP 409 on the HTTP API).
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(Code::AlreadyExists)
    }

    /// The job does not exist: code NotFound, or (as the sidecar answers `GetJob` for an
    /// unknown name) Internal with the scheduler's `code = NotFound` in the message.
    pub fn is_not_found(&self) -> bool {
        match self.status() {
            Some(s) if s.code() == Code::NotFound => true,
            Some(s) if s.code() == Code::Internal => s.message().contains("code = NotFound"),
            _ => false,
        }
    }

    /// The sidecar rejected the request as given: InvalidArgument (missing name or schedule), or
    /// Internal carrying the scheduler's `job failed validation` (bad cron, due time, ttl or
    /// repeats).
    pub fn is_invalid(&self) -> bool {
        match self {
            Error::InvalidArgument(_) => true,
            Error::Status { status, .. } => {
                status.code() == Code::InvalidArgument
                    || (status.code() == Code::Internal && status.message().contains("job failed validation"))
            }
            _ => false,
        }
    }

    /// The sidecar (a Dapr one) or its scheduler (an upstream Dapr one) does not offer the
    /// call: kairos's steering calls answer UNIMPLEMENTED there.
    pub fn is_unsupported(&self) -> bool {
        self.code() == Some(Code::Unimplemented)
    }

    /// The sidecar refused the call's `dapr-api-token` (or its absence).
    pub fn is_unauthenticated(&self) -> bool {
        self.code() == Some(Code::Unauthenticated)
    }
}
