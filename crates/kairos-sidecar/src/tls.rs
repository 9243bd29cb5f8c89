//! TLS for the sidecar's own APIs (`kairos sidecar --tls-cert-file … --tls-key-file …`):
//! rustls on ring, one certificate for both the HTTP and the gRPC port, re-read when its files
//! change (as the scheduler's: [`kairos_proto::tls::Reloading`]).
//!
//! Both APIs accept through [`kairos_proto::tls::accept_tls`]: a background task accepts TCP
//! connections and runs each handshake in its own task (bounded by [`HANDSHAKE_TIMEOUT`]) with
//! the configuration current at that moment, so a slow or hostile client never holds up the
//! others. The HTTP API is axum over a [`TlsListener`], which sees only finished TLS streams.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;

pub use kairos_proto::tls::{ServerTls, TlsError, TlsFiles, TlsIdentity};

pub use kairos_proto::tls::HANDSHAKE_TIMEOUT;
/// Finished handshakes waiting for axum to take them.
const ACCEPT_QUEUE: usize = 256;

/// An [`axum::serve::Listener`] that yields connections whose TLS handshake has finished.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`, each handshake with the configuration `tls` holds at
    /// that moment. Must be called within a tokio runtime.
    pub fn new(listener: TcpListener, tls: Arc<ServerTls>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(ACCEPT_QUEUE);
        let accept_task = tokio::spawn(kairos_proto::tls::accept_tls(listener, move || tls.current(), tx));
        Ok(TlsListener { ready, local, accept_task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(pair) => pair,
            // The accept task never ends while this receiver lives; if it did (a panic), no
            // connection will come again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
