//! TLS for the sidecar's own APIs (`kairos sidecar --tls-cert-file … --tls-key-file …`):
//! rustls on ring, one certificate for both the HTTP and the gRPC port, re-read when its files
//! change (as the scheduler's: [`kairos_proto::tls::Reloading`]).
//!
//! Both APIs accept through [`kairos_proto::tls::accept_tls`]: a background task accepts TCP
//! connections and runs each handshake in its own task (bounded by [`HANDSHAKE_TIMEOUT`]) with
//! the configuration current at that moment, so a slow or hostile client never holds up the
//! others. The HTTP API is axum over a [`TlsListener`] (shared with the dashboard), which sees only
//! finished TLS streams.

pub use kairos_proto::tls::{HANDSHAKE_TIMEOUT, ServerTls, TlsError, TlsFiles, TlsIdentity, TlsListener};
