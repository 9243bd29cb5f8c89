//! The TLS identity of a kairos server (the scheduler's gRPC API, the sidecar's HTTP and gRPC
//! APIs): one PEM certificate chain with its key, and the one place its server configurations
//! are built (rustls on ring). Mutual TLS (a client CA to verify against) and certificate reload
//! belong here too: both servers build their configuration only through [`TlsIdentity`].
//!
//! Reload: a [`Reloading`] configuration is rebuilt by a polling task whenever the bytes of one
//! of its files change ([`RELOAD_INTERVAL`]); every new connection takes the current one, so a
//! rotated certificate, key or CA applies to new connections without a restart. Files that do
//! not build (garbage, a key that does not fit the certificate) are logged and the last good
//! configuration stays.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A PEM certificate chain and its PEM private key.
#[derive(Clone)]
pub struct TlsIdentity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Require client certificates signed by this PEM CA (mutual TLS).
    pub client_ca_pem: Option<Vec<u8>>,
    /// The files the PEMs above were read from: re-read when they change.
    pub files: Option<TlsFiles>,
}

/// The files of a [`TlsIdentity`], polled for changes.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// How often certificate, key and CA files are checked for new contents.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// Longest a peer may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("TlsIdentity").field("cert_pem", &self.cert_pem.len()).finish_non_exhaustive()
    }
}

/// Why a certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("bad TLS certificate or key: {0}")]
pub struct TlsError(String);

impl TlsIdentity {
    /// An identity of a certificate chain and key, without client authentication or reload.
    pub fn new(cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Self {
        TlsIdentity { cert_pem, key_pem, client_ca_pem: None, files: None }
    }

    /// Reads the identity (and client CA) from `files`, which are then polled for changes.
    ///
    /// # Errors
    /// When a file cannot be read.
    pub fn read(files: TlsFiles) -> Result<Self, TlsError> {
        let cert_pem = read_file(&files.cert)?;
        let key_pem = read_file(&files.key)?;
        let client_ca_pem = files.client_ca.as_deref().map(read_file).transpose()?;
        Ok(TlsIdentity { cert_pem, key_pem, client_ca_pem, files: Some(files) })
    }

    /// The rustls server configuration of this identity (HTTP/1.1 over ALPN).
    ///
    /// # Errors
    /// When the PEM holds no certificate or no key, or the key does not fit the certificate.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        build_server_config(&self.cert_pem, &self.key_pem, self.client_ca_pem.as_deref(), b"http/1.1")
            .map(Arc::new)
    }

    /// The server configuration for `alpn` (`b"h2"` for gRPC), rebuilt whenever the identity's
    /// files change. Must be called within a tokio runtime for the reload to run.
    ///
    /// # Errors
    /// When the current PEMs do not build a configuration.
    pub fn reloading_server_config(&self, alpn: &'static [u8]) -> Result<Arc<ServerTls>, TlsError> {
        let mut paths = Vec::new();
        let mut first = vec![self.cert_pem.clone(), self.key_pem.clone()];
        if let Some(files) = &self.files {
            paths = vec![files.cert.clone(), files.key.clone()];
            if let Some(ca) = &files.client_ca {
                paths.push(ca.clone());
            }
        }
        if let Some(ca) = &self.client_ca_pem {
            first.push(ca.clone());
        }
        Reloading::watch("server certificate", paths, first, move |pems| {
            build_server_config(&pems[0], &pems[1], pems.get(2).map(Vec::as_slice), alpn)
        })
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("cannot read {}: {e}", path.display())))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError(format!("{what} PEM: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!("the {what} file holds no certificate")));
    }
    Ok(certs)
}

fn roots(pem: &[u8], what: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(pem, what)? {
        roots.add(cert).map_err(|e| TlsError(format!("{what}: {e}")))?;
    }
    Ok(roots)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError(format!("private key PEM: {e}")))
}

fn build_server_config(
    cert_pem: &[u8],
    key_pem: &[u8],
    client_ca_pem: Option<&[u8]>,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, TlsError> {
    let certs = certificates(cert_pem, "certificate")?;
    let key = private_key(key_pem)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let builder = match client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "client CA")?),
                provider(),
            )
            .build()
            .map_err(|e| TlsError(format!("client CA: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| TlsError(e.to_string()))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

fn build_client_config(
    ca_pem: &[u8],
    identity: Option<(&[u8], &[u8])>,
) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?
        .with_root_certificates(roots(ca_pem, "CA")?);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert, "client certificate")?, private_key(key)?)
            .map_err(|e| TlsError(format!("client certificate: {e}")))?,
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A TLS configuration rebuilt from its files when they change; see the module docs.
pub struct Reloading<T> {
    current: RwLock<Arc<T>>,
}

/// A reloading server configuration.
pub type ServerTls = Reloading<rustls::ServerConfig>;
/// A reloading client configuration (the scheduler link's).
pub type ClientTls = Reloading<rustls::ClientConfig>;

impl<T> std::fmt::Debug for Reloading<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloading").finish_non_exhaustive()
    }
}

impl<T: Send + Sync + 'static> Reloading<T> {
    /// The configuration new connections use.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Builds from `first` (the contents of `paths`, or PEMs without files when `paths` is
    /// empty) and, with paths and a tokio runtime, polls them while the result lives.
    fn watch(
        what: &'static str,
        paths: Vec<PathBuf>,
        first: Vec<Vec<u8>>,
        build: impl Fn(&[Vec<u8>]) -> Result<T, TlsError> + Send + 'static,
    ) -> Result<Arc<Self>, TlsError> {
        let me = Arc::new(Reloading { current: RwLock::new(Arc::new(build(&first)?)) });
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return Ok(me) };
        if paths.is_empty() {
            return Ok(me);
        }
        let weak = Arc::downgrade(&me);
        runtime.spawn(async move {
            let mut seen = first;
            let mut failed: Option<Vec<Vec<u8>>> = None;
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let Some(me) = weak.upgrade() else { return };
                let mut now = Vec::with_capacity(paths.len());
                for path in &paths {
                    match tokio::fs::read(path).await {
                        Ok(bytes) => now.push(bytes),
                        // Mid-rotation a file may be missing for a moment: try again later.
                        Err(err) => {
                            tracing::debug!(path = %path.display(), %err, "cannot read TLS file");
                            break;
                        }
                    }
                }
                if now.len() != paths.len() || now == seen || failed.as_ref() == Some(&now) {
                    continue;
                }
                let files = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
                match build(&now) {
                    Ok(config) => {
                        *me.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Arc::new(config);
                        tracing::info!(files, "reloaded TLS {what}");
                        seen = now;
                        failed = None;
                    }
                    Err(err) => {
                        tracing::warn!(files, %err, "cannot reload TLS {what}: keeping the last good one");
                        failed = Some(now);
                    }
                }
            }
        });
        Ok(me)
    }
}

impl ClientTls {
    /// A client configuration verifying servers against the PEM CA `ca_pem`, presenting the
    /// PEM certificate and key `identity` when given; no reload.
    ///
    /// # Errors
    /// When a PEM does not build a configuration.
    pub fn from_pem(ca_pem: &[u8], identity: Option<(&[u8], &[u8])>) -> Result<Arc<Self>, TlsError> {
        let config = build_client_config(ca_pem, identity)?;
        Ok(Arc::new(Reloading { current: RwLock::new(Arc::new(config)) }))
    }

    /// [`ClientTls::from_pem`] from files, which are then polled for changes (within a tokio
    /// runtime).
    ///
    /// # Errors
    /// When a file cannot be read or does not build a configuration.
    pub fn from_files(ca: PathBuf, identity: Option<(PathBuf, PathBuf)>) -> Result<Arc<Self>, TlsError> {
        let mut paths = vec![ca];
        if let Some((cert, key)) = identity {
            paths.push(cert);
            paths.push(key);
        }
        let first = paths.iter().map(|p| read_file(p)).collect::<Result<Vec<_>, _>>()?;
        Reloading::watch("client configuration", paths, first, |pems| {
            let identity = (pems.len() == 3).then(|| (pems[1].as_slice(), pems[2].as_slice()));
            build_client_config(&pems[0], identity)
        })
    }
}

impl ClientTls {
    /// The client configuration of the app channel (`--app-protocol https` or `grpcs`),
    /// offering `alpn`. With `ca`, the app's certificate must chain to that PEM CA and name the
    /// app channel address; the file is re-read when it changes (within a tokio runtime).
    /// Without it the app's certificate is not verified, as daprd does (`InsecureSkipVerify`):
    /// the handshake signature is still checked, the chain and name are not. TLS 1.2 at least,
    /// as daprd's app channel asks.
    ///
    /// # Errors
    /// When the CA file cannot be read or holds no usable certificate.
    pub fn for_app(ca: Option<PathBuf>, alpn: &'static [u8]) -> Result<Arc<Self>, TlsError> {
        match ca {
            None => Ok(Arc::new(Reloading { current: RwLock::new(Arc::new(build_app_config(None, alpn)?)) })),
            Some(ca) => {
                let first = vec![read_file(&ca)?];
                Reloading::watch("app CA", vec![ca], first, move |pems| {
                    build_app_config(Some(&pems[0]), alpn)
                })
            }
        }
    }
}

fn build_app_config(ca_pem: Option<&[u8]>, alpn: &[u8]) -> Result<rustls::ClientConfig, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let mut config = match ca_pem {
        Some(ca) => builder.with_root_certificates(roots(ca, "app CA")?).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(UnverifiedServer(provider())))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// Accepts any server certificate (daprd's `InsecureSkipVerify` towards the app), but still
/// checks that the server holds the key of the certificate it presented.
#[derive(Debug)]
struct UnverifiedServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for UnverifiedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A connector for tonic's `Endpoint::connect_with_connector_lazy`: TCP, then TLS with the
/// current [`ClientTls`] configuration (the server name is the URI's host).
#[derive(Debug, Clone)]
pub struct TlsConnector {
    tls: Arc<ClientTls>,
}

impl TlsConnector {
    pub fn new(tls: Arc<ClientTls>) -> Self {
        TlsConnector { tls }
    }
}

type ClientStream = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tonic::codegen::Service<tonic::codegen::http::Uri> for TlsConnector {
    type Response = ClientStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<ClientStream, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let config = self.tls.current();
        Box::pin(async move {
            let invalid = |msg: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, msg);
            let host = uri.host().ok_or_else(|| invalid(format!("no host in {uri}")))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|e| invalid(format!("bad server name {host:?}: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// The TLS connections accepted on `listener` with the current [`ServerTls`] configuration,
/// for tonic's `serve_with_incoming`: each handshake runs in its own task (bounded by
/// [`HANDSHAKE_TIMEOUT`]), refused handshakes are logged and skipped.
pub fn tls_incoming(
    listener: TcpListener,
    tls: Arc<ServerTls>,
) -> impl futures::Stream<Item = Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>> + Send {
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(accept_tls(listener, move || tls.current(), tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|next| next.map(|(stream, _)| Ok(stream))))
}

/// Finished handshakes waiting for an HTTP server to take them.
const ACCEPT_QUEUE: usize = 256;

/// An [`axum::serve::Listener`] that yields connections whose TLS handshake has finished, each
/// handshake made (by [`accept_tls`]) with the configuration `tls` holds at that moment: the
/// HTTPS listener of the sidecar's HTTP API and of the dashboard.
#[derive(Debug)]
pub struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, std::net::SocketAddr)>,
    local: std::net::SocketAddr,
    accept_task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener`. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// When the listener's local address cannot be read.
    pub fn new(listener: TcpListener, tls: Arc<ServerTls>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel(ACCEPT_QUEUE);
        let accept_task = tokio::spawn(accept_tls(listener, move || tls.current(), tx));
        Ok(TlsListener { ready, local, accept_task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = std::net::SocketAddr;

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

/// Accepts TCP connections on `listener` until `tx` closes, runs each TLS handshake in its own
/// task (bounded by [`HANDSHAKE_TIMEOUT`]) with the configuration `config` gives at that moment
/// (so a reloaded certificate serves every new connection), and sends the finished streams with
/// their peer addresses. Refused handshakes are logged and skipped; an accept error (e.g. EMFILE)
/// waits a little instead of spinning. The one accept loop of the scheduler's gRPC server and the
/// HTTPS APIs ([`TlsListener`]).
pub async fn accept_tls(
    listener: TcpListener,
    config: impl Fn() -> Arc<rustls::ServerConfig> + Send + 'static,
    tx: tokio::sync::mpsc::Sender<(tokio_rustls::server::TlsStream<TcpStream>, std::net::SocketAddr)>,
) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(%err, "TLS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(config());
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send((stream, peer)).await;
                }
                Ok(Err(err)) => tracing::info!(%peer, %err, "TLS handshake refused"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
