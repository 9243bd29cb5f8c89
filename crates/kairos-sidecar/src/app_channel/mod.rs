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
//!
//! Both send `dapr-api-token: $APP_API_TOKEN` when it is set, hold at most
//! `--app-max-concurrency` deliveries in flight and give up after the configured timeout.
//! [`AppChannel::wait_until_ready`] is daprd's `blockUntilAppIsReady`: job streams are opened
//! only once the app's port accepts TCP connections.
//!
//! Not supported yet: `grpcs`, `https` and `h2c` app protocols and trace headers. App health
//! checks live in [`crate::health`].

use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kairos_core::Payload;
use reqwest::header::HeaderValue;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Endpoint;

mod grpc;
mod http;

use grpc::GrpcApp;
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

/// How the sidecar talks to the app (`--app-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppProtocol {
    /// Plain-text HTTP/2 gRPC.
    Grpc,
    /// Plain-text HTTP/1.1, daprd's default.
    #[default]
    Http,
}

impl AppProtocol {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            AppProtocol::Grpc => "grpc",
            AppProtocol::Http => "http",
        }
    }
}

impl fmt::Display for AppProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AppProtocol {
    type Err = AppChannelError;

    /// Parses `grpc` or `http` (ASCII case-insensitive).
    ///
    /// # Errors
    /// [`AppChannelError::UnsupportedProtocol`] for daprd's other values (`grpcs`, `https`,
    /// `h2c`), which kairos does not speak yet; [`AppChannelError::InvalidProtocol`] otherwise.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "grpc" => Ok(AppProtocol::Grpc),
            "http" => Ok(AppProtocol::Http),
            "grpcs" | "https" | "h2c" => Err(AppChannelError::UnsupportedProtocol(s.to_owned())),
            _ => Err(AppChannelError::InvalidProtocol(s.to_owned())),
        }
    }
}

/// Why an app channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AppChannelError {
    /// A protocol daprd knows but kairos does not speak yet.
    #[error("app protocol {0:?} is not supported yet: kairos talks to the app over plain grpc or http only")]
    UnsupportedProtocol(String),
    #[error("invalid app protocol {0:?}: expected grpc, grpcs, http, https or h2c")]
    InvalidProtocol(String),
    #[error("invalid app channel address {address:?} (port {port}): {reason}")]
    InvalidAddress { address: String, port: u16, reason: String },
    /// The token itself is never echoed.
    #[error("{APP_API_TOKEN_ENV} cannot be sent as a header: it must be visible ASCII")]
    InvalidApiToken,
    #[error("cannot build the HTTP client of the app channel")]
    HttpClient(#[source] reqwest::Error),
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

    /// `http://host:port`, with an IPv6 address in brackets.
    fn base_url(&self) -> String {
        let address = &self.address;
        if address.contains(':') && !address.starts_with('[') {
            format!("http://[{address}]:{}", self.port)
        } else {
            format!("http://{address}:{}", self.port)
        }
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
    /// [`AppChannelError::HttpClient`] when the HTTP client cannot be built.
    pub fn new(config: AppChannelConfig) -> Result<Self, AppChannelError> {
        let base_url = config.base_url();
        let invalid_address = |reason: String| AppChannelError::InvalidAddress {
            address: config.address.clone(),
            port: config.port,
            reason,
        };
        let transport = match config.protocol {
            AppProtocol::Grpc => {
                let endpoint = Endpoint::from_shared(base_url)
                    .map_err(|e| invalid_address(e.to_string()))?
                    .connect_timeout(GRPC_CONNECT_TIMEOUT);
                let api_token = match &config.api_token {
                    Some(token) => Some(
                        AsciiMetadataValue::try_from(token.as_str())
                            .map_err(|_| AppChannelError::InvalidApiToken)?,
                    ),
                    None => None,
                };
                Transport::Grpc(Box::new(GrpcApp {
                    endpoint,
                    channel: OnceLock::new(),
                    api_token,
                    max_body_size: config.max_body_size,
                    alpha_only: AtomicBool::new(false),
                    since_probe: AtomicU32::new(0),
                }))
            }
            AppProtocol::Http => {
                reqwest::Url::parse(&base_url).map_err(|e| invalid_address(e.to_string()))?;
                let api_token = match &config.api_token {
                    Some(token) => {
                        let mut value =
                            HeaderValue::from_str(token).map_err(|_| AppChannelError::InvalidApiToken)?;
                        value.set_sensitive(true);
                        Some(value)
                    }
                    None => None,
                };
                let client = reqwest::Client::builder()
                    // The app is local: an HTTP_PROXY meant for the outside world must not apply.
                    .no_proxy()
                    // A job is delivered to one route; a redirect is a failure, not a hop.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(AppChannelError::HttpClient)?;
                Transport::Http(HttpApp { client, base_url, api_token, max_body_size: config.max_body_size })
            }
        };
        let limit = config.max_concurrency.filter(|&n| n > 0).map(Semaphore::new);
        Ok(AppChannel {
            inner: Arc::new(Inner {
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
        match self.inner.transport {
            Transport::Grpc(_) => AppProtocol::Grpc,
            Transport::Http(_) => AppProtocol::Http,
        }
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

/// An error and its sources, `: `-separated (reqwest's own message hides the cause).
fn error_chain(error: &dyn std::error::Error) -> String {
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
    fn parses_supported_protocols_and_names_the_unsupported_ones() {
        assert_eq!("grpc".parse::<AppProtocol>().unwrap(), AppProtocol::Grpc);
        assert_eq!("HTTP".parse::<AppProtocol>().unwrap(), AppProtocol::Http);
        for p in ["grpcs", "https", "h2c"] {
            let err = p.parse::<AppProtocol>().unwrap_err();
            assert!(matches!(err, AppChannelError::UnsupportedProtocol(_)), "{p}");
            assert!(err.to_string().contains("not supported yet"), "{err}");
        }
        assert!(matches!("tcp".parse::<AppProtocol>(), Err(AppChannelError::InvalidProtocol(_))));
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
    }
}
