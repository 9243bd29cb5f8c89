//! The app channel: how a triggered job reaches the app (spec §4).
//!
//! An [`AppChannel`] delivers one tick of a job to the app the way daprd does and says how it
//! went as a [`Delivery`]; the caller turns that into SUCCESS or FAILED for the scheduler.
//!
//! * **gRPC** (`--app-protocol grpc`, §4.1): `AppCallback/OnJobEvent`, falling back to
//!   `AppCallbackAlpha/OnJobEventAlpha1` when the app answers UNIMPLEMENTED (the Go and JS SDKs
//!   implement only Alpha1). OK is a success, NotFound is counted as a success (the Rust SDK's
//!   answer for a job it has no handler for), anything else fails.
//! * **HTTP** (`--app-protocol http`, the default, §4.2): `POST /job/{name}` with
//!   `content-type: application/json`; 2xx is a success, 404 is counted as a success, anything
//!   else fails.
//! * **TLS and HTTP/2** (daprd's other `--app-protocol` values): `grpcs` is gRPC over TLS,
//!   `https` is HTTP/1.1 over TLS, `h2c` is HTTP/2 without TLS (prior knowledge, no upgrade).
//!   Like daprd, TLS to the app does not verify the app's certificate; unlike daprd,
//!   `--app-tls-ca-file` makes it verify against a CA (re-read when the file changes). rustls on
//!   ring, TLS 1.2 at least, as daprd.
//!
//! Both send `dapr-api-token: $APP_API_TOKEN` when it is set, hold at most
//! `--app-max-concurrency` deliveries in flight and give up after the configured timeout.
//! [`AppChannel::wait_until_ready`] is daprd's `blockUntilAppIsReady`: job streams are opened
//! only once the app's port accepts TCP connections.
//!
//! Not supported yet: trace headers. App health checks live in [`crate::health`]; they use
//! the same protocol and TLS settings.

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ::http::header::HeaderValue;
use kairos_core::Payload;
use kairos_proto::tls::{ClientTls, TlsConnector};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

mod grpc;
mod http;

use grpc::GrpcApp;
pub(crate) use http::AppHttpClient;
use http::HttpApp;

/// `--app-channel-address` default.
pub const DEFAULT_APP_CHANNEL_ADDRESS: &str = "127.0.0.1";
/// `--max-body-size` default (`4Mi`).
pub const DEFAULT_MAX_BODY_SIZE: usize = 4 << 20;
/// The environment variable whose value is sent to the app as [`API_TOKEN_HEADER`].
pub const APP_API_TOKEN_ENV: &str = "APP_API_TOKEN";
/// The header (HTTP) and metadata key (gRPC) that carries the app API token.
pub const API_TOKEN_HEADER: &str = "dapr-api-token";

/// daprd polls the app port this often while waiting for the app to listen.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// daprd's `net.DialTimeout` for one readiness probe.
const READY_DIAL_TIMEOUT: Duration = Duration::from_secs(1);
/// Bounds how long connecting to the app can take before a delivery fails, when no delivery
/// timeout is configured.
const GRPC_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// An app remembered as Alpha1-only gets `OnJobEvent` tried again once every this many
/// deliveries, so an app upgraded in place moves to the stable callback.
const REPROBE_STABLE_EVERY: u32 = 100;

/// How the sidecar talks to the app (`--app-protocol`): daprd's values `grpc`, `grpcs`, `http`,
/// `https` and `h2c` (`Display`, [`AppProtocol::as_str`]). `FromStr` takes them ASCII
/// case-insensitively and fails with [`AppChannelError::InvalidProtocol`] on anything else.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, strum::Display, strum::EnumString, strum::IntoStaticStr,
)]
#[strum(
    serialize_all = "lowercase",
    ascii_case_insensitive,
    parse_err_ty = AppChannelError,
    parse_err_fn = invalid_protocol
)]
pub enum AppProtocol {
    /// Plain-text HTTP/2 gRPC.
    Grpc,
    /// gRPC over TLS.
    Grpcs,
    /// Plain-text HTTP/1.1, daprd's default.
    #[default]
    Http,
    /// HTTP/1.1 over TLS.
    Https,
    /// Plain-text HTTP/2 with prior knowledge.
    H2c,
}

impl AppProtocol {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether jobs go to the app as gRPC calls (else as HTTP requests).
    pub fn is_grpc(self) -> bool {
        matches!(self, AppProtocol::Grpc | AppProtocol::Grpcs)
    }

    /// Whether the connection to the app is TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, AppProtocol::Grpcs | AppProtocol::Https)
    }

    /// What a connection failure may mean, for error messages.
    pub(crate) fn hint(self) -> String {
        format!("--app-protocol {self} expects the app to serve {} on its port", self.expects())
    }

    /// What the app must serve on its port.
    fn expects(self) -> &'static str {
        match self {
            AppProtocol::Grpc => "gRPC without TLS",
            AppProtocol::Grpcs => "gRPC over TLS",
            AppProtocol::Http => "HTTP/1.1 without TLS",
            AppProtocol::Https => "HTTP/1.1 over TLS",
            AppProtocol::H2c => "HTTP/2 without TLS (h2c, prior knowledge)",
        }
    }
}

fn invalid_protocol(given: &str) -> AppChannelError {
    AppChannelError::InvalidProtocol(given.to_owned())
}

/// Why an app channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AppChannelError {
    /// `--app-tls-ca-file` given for a protocol without TLS.
    #[error("--app-tls-ca-file is set but --app-protocol {0} does not use TLS: use https or grpcs")]
    CaWithoutTls(AppProtocol),
    #[error("cannot set up TLS to the app")]
    Tls(#[source] kairos_proto::tls::TlsError),
    #[error("invalid app protocol {0:?}: expected grpc, grpcs, http, https or h2c")]
    InvalidProtocol(String),
    #[error("invalid app channel address {address:?} (port {port}): {reason}")]
    InvalidAddress { address: String, port: u16, reason: String },
    /// The token itself is never echoed.
    #[error("{APP_API_TOKEN_ENV} cannot be sent as a header: it must be visible ASCII")]
    InvalidApiToken,
}

/// The app channel's flags and environment (spec §9).
#[derive(Clone, PartialEq, Eq)]
pub struct AppChannelConfig {
    /// `--app-protocol`.
    pub protocol: AppProtocol,
    /// `--app-channel-address`: a host name or an IP address (IPv6 without brackets is fine).
    pub address: String,
    /// `--app-port`.
    pub port: u16,
    /// `APP_API_TOKEN`: sent to the app as `dapr-api-token` when set.
    pub api_token: Option<String>,
    /// `--app-max-concurrency`: at most this many deliveries in flight; `None` is unlimited.
    pub max_concurrency: Option<usize>,
    /// `--max-body-size`: the gRPC send and receive limits, and how much of an HTTP answer is read.
    pub max_body_size: usize,
    /// How long one delivery may take once it has its concurrency slot; `None` waits forever.
    pub timeout: Option<Duration>,
    /// `--app-tls-ca-file`: verify the app's certificate against this PEM CA (`https`, `grpcs`);
    /// `None` accepts any certificate, as daprd does.
    pub tls_ca_file: Option<PathBuf>,
}

impl AppChannelConfig {
    /// daprd's defaults for an app on `port`: 127.0.0.1, no token, unlimited concurrency,
    /// 4 MiB bodies, no timeout.
    pub fn new(protocol: AppProtocol, port: u16) -> Self {
        AppChannelConfig {
            protocol,
            address: DEFAULT_APP_CHANNEL_ADDRESS.to_owned(),
            port,
            api_token: None,
            max_concurrency: None,
            max_body_size: DEFAULT_MAX_BODY_SIZE,
            timeout: None,
            tls_ca_file: None,
        }
    }

    /// `--app-max-concurrency` as a limit: daprd limits only for a positive value, so the
    /// default `-1` (and `0`) mean unlimited.
    pub fn max_concurrency_from_flag(flag: i64) -> Option<usize> {
        usize::try_from(flag).ok().filter(|&n| n > 0)
    }

    /// `APP_API_TOKEN` from the environment; unset and empty both mean no token, as in daprd.
    pub fn api_token_from_env() -> Option<String> {
        std::env::var(APP_API_TOKEN_ENV).ok().filter(|t| !t.is_empty())
    }

    /// `http://host:port` (`https://` for `--app-protocol https`), with an IPv6 address in
    /// brackets. gRPC endpoints are `http://` too: their TLS is the connector's.
    pub(crate) fn base_url(&self) -> String {
        let scheme = if self.protocol == AppProtocol::Https { "https" } else { "http" };
        let address = &self.address;
        if address.contains(':') && !address.starts_with('[') {
            format!("{scheme}://[{address}]:{}", self.port)
        } else {
            format!("{scheme}://{address}:{}", self.port)
        }
    }

    /// The TLS client configuration of `https` and `grpcs`; `None` for the plain protocols.
    ///
    /// # Errors
    /// [`AppChannelError::CaWithoutTls`] when a CA is given for a plain protocol,
    /// [`AppChannelError::Tls`] when the CA file cannot be used.
    pub(crate) fn client_tls(&self) -> Result<Option<Arc<ClientTls>>, AppChannelError> {
        if !self.protocol.is_tls() {
            return match self.tls_ca_file {
                Some(_) => Err(AppChannelError::CaWithoutTls(self.protocol)),
                None => Ok(None),
            };
        }
        let alpn: &'static [u8] = if self.protocol.is_grpc() { b"h2" } else { b"http/1.1" };
        ClientTls::for_app(self.tls_ca_file.clone(), alpn).map(Some).map_err(AppChannelError::Tls)
    }

    /// The gRPC endpoint of the app (`grpc`, `grpcs`) and its TLS configuration; connect with
    /// [`connect_lazy`].
    ///
    /// # Errors
    /// As [`AppChannelConfig::client_tls`], and [`AppChannelError::InvalidAddress`].
    pub(crate) fn grpc_endpoint(
        &self,
        connect_timeout: Duration,
    ) -> Result<(Endpoint, Option<Arc<ClientTls>>), AppChannelError> {
        let endpoint = Endpoint::from_shared(self.base_url())
            .map_err(|e| self.invalid_address(e.to_string()))?
            .connect_timeout(connect_timeout);
        Ok((endpoint, self.client_tls()?))
    }

    fn invalid_address(&self, reason: String) -> AppChannelError {
        AppChannelError::InvalidAddress { address: self.address.clone(), port: self.port, reason }
    }
}

/// The token is redacted.
impl fmt::Debug for AppChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppChannelConfig")
            .field("protocol", &self.protocol)
            .field("address", &self.address)
            .field("port", &self.port)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("max_concurrency", &self.max_concurrency)
            .field("max_body_size", &self.max_body_size)
            .field("timeout", &self.timeout)
            .field("tls_ca_file", &self.tls_ca_file)
            .finish()
    }
}

/// How one delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// gRPC OK or HTTP 2xx.
    Success,
    /// gRPC NotFound or HTTP 404: the app has no handler for the job. daprd reports SUCCESS to
    /// the scheduler (no retry) and logs it as a failure.
    NotFoundCountedAsSuccess,
    /// Anything else: the scheduler applies the job's failure policy.
    Failed { reason: String },
}

impl Delivery {
    /// Whether the scheduler is told SUCCESS.
    pub fn is_success(&self) -> bool {
        !matches!(self, Delivery::Failed { .. })
    }
}

/// [`AppChannel::wait_until_ready`] was cut short by shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("shutdown requested while waiting for the app to listen")]
pub struct ShutdownRequested;

/// Delivers triggered jobs to the app. Cheap to clone; clones share the connection, the
/// concurrency limit and what was learnt about the app's callbacks.
#[derive(Debug, Clone)]
pub struct AppChannel {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    protocol: AppProtocol,
    address: String,
    port: u16,
    limit: Option<Semaphore>,
    timeout: Option<Duration>,
    transport: Transport,
}

#[derive(Debug)]
enum Transport {
    /// Boxed: an `Endpoint` is large.
    Grpc(Box<GrpcApp>),
    Http(HttpApp),
}

impl AppChannel {
    /// A channel to the app described by `config`. Nothing is connected yet.
    ///
    /// # Errors
    /// [`AppChannelError::InvalidAddress`] when `address:port` is not a URL authority,
    /// [`AppChannelError::InvalidApiToken`] when the token is not a valid header value,
    /// [`AppChannelError::Tls`] when TLS to the app cannot be set up.
    pub fn new(config: AppChannelConfig) -> Result<Self, AppChannelError> {
        let transport = if config.protocol.is_grpc() {
            let (endpoint, tls) = config.grpc_endpoint(GRPC_CONNECT_TIMEOUT)?;
            let api_token = match &config.api_token {
                Some(token) => Some(
                    AsciiMetadataValue::try_from(token.as_str())
                        .map_err(|_| AppChannelError::InvalidApiToken)?,
                ),
                None => None,
            };
            Transport::Grpc(Box::new(GrpcApp {
                protocol: config.protocol,
                endpoint,
                tls,
                channel: OnceLock::new(),
                api_token,
                max_body_size: config.max_body_size,
                alpha_only: AtomicBool::new(false),
                since_probe: AtomicU32::new(0),
            }))
        } else {
            let api_token = match &config.api_token {
                Some(token) => {
                    let mut value =
                        HeaderValue::from_str(token).map_err(|_| AppChannelError::InvalidApiToken)?;
                    value.set_sensitive(true);
                    Some(value)
                }
                None => None,
            };
            Transport::Http(HttpApp {
                client: AppHttpClient::new(&config)?,
                base_url: config.base_url(),
                api_token,
                max_body_size: config.max_body_size,
            })
        };
        let limit = config.max_concurrency.filter(|&n| n > 0).map(Semaphore::new);
        Ok(AppChannel {
            inner: Arc::new(Inner {
                protocol: config.protocol,
                address: config.address,
                port: config.port,
                limit,
                timeout: config.timeout,
                transport,
            }),
        })
    }

    /// The protocol this channel speaks.
    pub fn protocol(&self) -> AppProtocol {
        self.inner.protocol
    }

    /// Delivers one tick of job `name` (the user's name, not the scheduler key) with its stored
    /// payload. `None` means the job has no data; `Some` is sent as is, even when empty.
    ///
    /// Waits for a concurrency slot first; the timeout, if any, starts once it has one.
    pub async fn deliver(&self, name: &str, data: Option<&Payload>) -> Delivery {
        let _permit = match &self.inner.limit {
            Some(limit) => match limit.acquire().await {
                Ok(permit) => Some(permit),
                // Unreachable: the semaphore is never closed.
                Err(_) => return Delivery::Failed { reason: "app channel is closed".to_owned() },
            },
            None => None,
        };
        let call = async {
            match &self.inner.transport {
                Transport::Grpc(app) => app.deliver(name, data).await,
                Transport::Http(app) => app.deliver(name, data).await,
            }
        };
        let outcome = match self.inner.timeout {
            Some(limit) => tokio::time::timeout(limit, call).await.unwrap_or_else(|_| Delivery::Failed {
                reason: format!("the app did not answer within {limit:?}"),
            }),
            None => call.await,
        };
        tracing::debug!(job = name, ?outcome, "delivered job to the app");
        outcome
    }

    /// Returns once a TCP connection to the app's port succeeds, polling every 100 ms as daprd
    /// does before it opens job streams, or fails as soon as `shutdown` completes.
    ///
    /// # Errors
    /// [`ShutdownRequested`] when `shutdown` completed first.
    pub async fn wait_until_ready<F>(&self, shutdown: F) -> Result<(), ShutdownRequested>
    where
        F: Future<Output = ()>,
    {
        let (address, port) = (self.inner.address.as_str(), self.inner.port);
        let poll = async {
            let mut logged = false;
            loop {
                if let Ok(Ok(_connected)) =
                    tokio::time::timeout(READY_DIAL_TIMEOUT, TcpStream::connect((address, port))).await
                {
                    tracing::info!(address, port, "the app is listening");
                    return;
                }
                if !logged {
                    tracing::info!(address, port, "waiting for the app to listen");
                    logged = true;
                }
                tokio::time::sleep(READY_POLL_INTERVAL).await;
            }
        };
        tokio::select! {
            () = poll => Ok(()),
            () = shutdown => Err(ShutdownRequested),
        }
    }
}

/// A channel to `endpoint` that connects on first use (over TLS with `tls`) and reconnects by
/// itself. Must be called within a tokio runtime.
pub(crate) fn connect_lazy(endpoint: &Endpoint, tls: Option<&Arc<ClientTls>>) -> Channel {
    match tls {
        Some(tls) => endpoint.connect_with_connector_lazy(TlsConnector::new(Arc::clone(tls))),
        None => endpoint.connect_lazy(),
    }
}

/// An error and its sources, `: `-separated (reqwest's own message hides the cause).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_daprds_protocols_and_refuses_others() {
        for (flag, protocol) in [
            ("grpc", AppProtocol::Grpc),
            ("GRPCS", AppProtocol::Grpcs),
            ("HTTP", AppProtocol::Http),
            ("https", AppProtocol::Https),
            ("h2c", AppProtocol::H2c),
        ] {
            assert_eq!(flag.parse::<AppProtocol>().unwrap(), protocol);
            assert_eq!(protocol.as_str(), flag.to_ascii_lowercase());
            assert_eq!(protocol.to_string(), flag.to_ascii_lowercase());
        }
        assert_eq!("gRpCs".parse::<AppProtocol>().unwrap(), AppProtocol::Grpcs);
        for given in ["TCP", "http ", "grpc+tls", ""] {
            let err = given.parse::<AppProtocol>().unwrap_err();
            assert!(matches!(&err, AppChannelError::InvalidProtocol(g) if g == given), "{err:?}");
            assert_eq!(
                err.to_string(),
                format!("invalid app protocol {given:?}: expected grpc, grpcs, http, https or h2c")
            );
        }
    }

    #[test]
    fn a_ca_file_needs_a_tls_protocol_and_a_readable_pem() {
        let mut config = AppChannelConfig::new(AppProtocol::Http, 3000);
        config.tls_ca_file = Some("/nonexistent/ca.pem".into());
        let err = AppChannel::new(config.clone()).unwrap_err();
        assert!(err.to_string().contains("does not use TLS: use https or grpcs"), "{err}");
        config.protocol = AppProtocol::Https;
        let err = AppChannel::new(config.clone()).unwrap_err();
        assert!(error_chain(&err).contains("cannot read /nonexistent/ca.pem"), "{}", error_chain(&err));
        let dir = std::env::temp_dir().join(format!("kairos-app-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let garbage = dir.join("ca.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        config.tls_ca_file = Some(garbage);
        config.protocol = AppProtocol::Grpcs;
        let err = AppChannel::new(config).unwrap_err();
        assert!(error_chain(&err).contains("holds no certificate"), "{}", error_chain(&err));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn max_concurrency_flag_is_unlimited_unless_positive() {
        assert_eq!(AppChannelConfig::max_concurrency_from_flag(-1), None);
        assert_eq!(AppChannelConfig::max_concurrency_from_flag(0), None);
        assert_eq!(AppChannelConfig::max_concurrency_from_flag(3), Some(3));
    }

    #[test]
    fn config_debug_redacts_the_token() {
        let mut config = AppChannelConfig::new(AppProtocol::Http, 3000);
        config.api_token = Some("s3cr3t".to_owned());
        let debug = format!("{config:?}");
        assert!(!debug.contains("s3cr3t") && debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn base_url_brackets_ipv6() {
        let mut config = AppChannelConfig::new(AppProtocol::Grpc, 50051);
        assert_eq!(config.base_url(), "http://127.0.0.1:50051");
        config.address = "::1".to_owned();
        assert_eq!(config.base_url(), "http://[::1]:50051");
        config.address = "localhost".to_owned();
        assert_eq!(config.base_url(), "http://localhost:50051");
        config.protocol = AppProtocol::Https;
        assert_eq!(config.base_url(), "https://localhost:50051");
        config.protocol = AppProtocol::Grpcs;
        assert_eq!(config.base_url(), "http://localhost:50051", "the connector does the TLS");
    }
}
