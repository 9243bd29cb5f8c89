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
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kairos_core::Payload;
use kairos_proto::common::HttpExtension;
use kairos_proto::common::http_extension::Verb;
use kairos_proto::json::{VALUE_TYPE_URL, value_to_string};
use kairos_proto::runtime::JobEventRequest;
use kairos_proto::runtime::app_callback_alpha_client::AppCallbackAlphaClient;
use kairos_proto::runtime::app_callback_client::AppCallbackClient;
use prost::Message;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

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

/// The two gRPC job callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callback {
    Stable,
    Alpha,
}

impl Callback {
    fn other(self) -> Callback {
        match self {
            Callback::Stable => Callback::Alpha,
            Callback::Alpha => Callback::Stable,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Callback::Stable => "AppCallback/OnJobEvent",
            Callback::Alpha => "AppCallbackAlpha/OnJobEventAlpha1",
        }
    }
}

/// A gRPC app.
///
/// daprd calls `OnJobEvent` and, on UNIMPLEMENTED, `OnJobEventAlpha1` every time. The app sees
/// the same thing if the channel remembers that only Alpha1 answers and goes there directly, so
/// it does, saving a round trip per job for Go and JS apps. Whichever callback is tried first,
/// an UNIMPLEMENTED answer makes the channel try the other one. The memory is dropped (the
/// stable callback is tried first again) after an Unavailable answer, which is what a lost
/// connection looks like (the app may have been restarted as a newer build), after both
/// callbacks answered UNIMPLEMENTED, and once every [`REPROBE_STABLE_EVERY`] deliveries.
#[derive(Debug)]
struct GrpcApp {
    endpoint: Endpoint,
    /// Created on first use: `connect_lazy` needs a Tokio runtime. It reconnects by itself.
    channel: OnceLock<Channel>,
    api_token: Option<AsciiMetadataValue>,
    max_body_size: usize,
    alpha_only: AtomicBool,
    since_probe: AtomicU32,
}

impl GrpcApp {
    async fn deliver(&self, name: &str, data: Option<&Payload>) -> Delivery {
        let request = job_event_request(name, data);
        let first = if self.stable_first() { Callback::Stable } else { Callback::Alpha };
        let (answered_by, result) = match self.call(first, request.clone()).await {
            Err(status) if status.code() == Code::Unimplemented => {
                (first.other(), self.call(first.other(), request).await)
            }
            result => (first, result),
        };
        self.remember(answered_by, &result);
        match result {
            Ok(()) => Delivery::Success,
            Err(status) if status.code() == Code::NotFound => Delivery::NotFoundCountedAsSuccess,
            Err(status) if status.code() == Code::Unimplemented => Delivery::Failed {
                reason:
                    "the app implements neither AppCallback/OnJobEvent nor AppCallbackAlpha/OnJobEventAlpha1 \
                         for this job: both answered Unimplemented"
                        .to_owned(),
            },
            Err(status) => Delivery::Failed {
                reason: format!(
                    "the app answered {:?} to {}: {}",
                    status.code(),
                    answered_by.method(),
                    status.message()
                ),
            },
        }
    }

    fn stable_first(&self) -> bool {
        if !self.alpha_only.load(Ordering::Relaxed) {
            return true;
        }
        let n = self.since_probe.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if n >= REPROBE_STABLE_EVERY {
            self.since_probe.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn remember(&self, answered_by: Callback, result: &Result<(), Status>) {
        let alpha_only = match result {
            Err(status) if matches!(status.code(), Code::Unavailable | Code::Unimplemented) => false,
            _ => answered_by == Callback::Alpha,
        };
        if self.alpha_only.swap(alpha_only, Ordering::Relaxed) != alpha_only {
            tracing::debug!(
                callback = if alpha_only { Callback::Alpha.method() } else { Callback::Stable.method() },
                "app job callback tried first from now on"
            );
        }
    }

    async fn call(&self, callback: Callback, request: JobEventRequest) -> Result<(), Status> {
        let channel = self.channel.get_or_init(|| self.endpoint.connect_lazy()).clone();
        let mut request = tonic::Request::new(request);
        if let Some(token) = &self.api_token {
            request.metadata_mut().insert(API_TOKEN_HEADER, token.clone());
        }
        match callback {
            Callback::Stable => AppCallbackClient::new(channel)
                .max_decoding_message_size(self.max_body_size)
                .max_encoding_message_size(self.max_body_size)
                .on_job_event(request)
                .await
                .map(drop),
            Callback::Alpha => {
                let mut client = AppCallbackAlphaClient::new(channel)
                    .max_decoding_message_size(self.max_body_size)
                    .max_encoding_message_size(self.max_body_size);
                // Upstream marks Alpha1 deprecated, but it is the only job callback of Go and JS
                // SDK apps (spec §8.2, §8.4): daprd still falls back to it, and so must we.
                #[allow(deprecated)]
                let result = client.on_job_event_alpha1(request).await;
                result.map(drop)
            }
        }
    }
}

/// What daprd's gRPC channel sends (`TriggerJob`, spec §4.1).
fn job_event_request(name: &str, data: Option<&Payload>) -> JobEventRequest {
    JobEventRequest {
        name: name.to_owned(),
        data: data.map(|p| prost_types::Any { type_url: p.type_url.clone(), value: p.value.clone() }),
        method: format!("job/{name}"),
        content_type: data.map(|p| p.type_url.clone()).unwrap_or_default(),
        http_extension: Some(HttpExtension { verb: Verb::Post.into(), querystring: String::new() }),
    }
}

/// An HTTP app.
#[derive(Debug)]
struct HttpApp {
    /// Pooled: connections to the app are kept alive between deliveries.
    client: reqwest::Client,
    base_url: String,
    api_token: Option<HeaderValue>,
    max_body_size: usize,
}

impl HttpApp {
    async fn deliver(&self, name: &str, data: Option<&Payload>) -> Delivery {
        let Some(path) = job_path(name) else {
            return Delivery::Failed {
                reason: format!("job name {name:?} cannot be written as a URL path segment"),
            };
        };
        let url = format!("{}/{path}", self.base_url);
        let body = http_body(data);
        let mut request = self
            .client
            .post(&url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            // hyper leaves it out for an empty body; Go's client sends `Content-Length: 0` on a POST.
            .header(CONTENT_LENGTH, body.len())
            .body(body);
        if let Some(token) = &self.api_token {
            request = request.header(API_TOKEN_HEADER, token.clone());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Delivery::Failed { reason: format!("POST {url} failed: {}", error_chain(&e)) },
        };
        let status = response.status();
        // The body is ignored, but reading it lets the connection go back to the pool.
        let mut read = 0;
        while read <= self.max_body_size {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        match status.as_u16() {
            200..=299 => Delivery::Success,
            404 => Delivery::NotFoundCountedAsSuccess,
            _ => Delivery::Failed { reason: format!("the app answered HTTP {status} to POST {url}") },
        }
    }
}

/// `job/{name}`, with one leading `/` of the name stripped as daprd does.
///
/// Upstream concatenates the name into the URL and leaves its escaping to Go's `net/url`
/// (spec §11 [UNCONFIRMED]); here the name is one RFC 3986 path segment: unreserved characters,
/// sub-delims, `:` and `@` are kept and every other byte of its UTF-8 is percent-encoded with
/// upper-case hex (`my||job@name` → `my%7C%7Cjob@name`, a space → `%20`, `%` → `%25`). For the
/// names Dapr accepts this matches what Go sends except where Go keeps `!'()*` raw and
/// re-escapes them only when another character forced escaping; both forms decode to the name.
/// `None` for `.` and `..`, which URL parsers turn into path navigation even when escaped.
fn job_path(name: &str) -> Option<String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    if name == "." || name == ".." {
        return None;
    }
    let mut path = String::with_capacity(4 + name.len());
    path.push_str("job/");
    for &byte in name.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push('%');
            path.push(char::from(HEX[usize::from(byte >> 4)]));
            path.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    Some(path)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The HTTP request body daprd sends for a job's payload (`constructJobRequest`, spec §4.2).
///
/// * No payload or an empty value: an empty body.
/// * A `google.protobuf.Value` payload: its protojson (`"someData"`, `123`, `{"a":1}`), as
///   daprd's `structpb.Value.MarshalJSON` writes it and as GET shows it. Bytes that do not decode,
///   or a value protojson cannot write (NaN, no kind), fall back to the next rule (daprd fails the
///   delivery instead).
/// * Anything else: the raw value bytes trimmed as Go's `bytes.TrimSpace` does.
fn http_body(data: Option<&Payload>) -> Vec<u8> {
    let Some(payload) = data.filter(|p| !p.value.is_empty()) else {
        return Vec::new();
    };
    if payload.type_url == VALUE_TYPE_URL
        && let Ok(value) = prost_types::Value::decode(payload.value.as_slice())
        && let Ok(json) = value_to_string(&value)
    {
        return json.into_bytes();
    }
    go_trim_space(&payload.value).to_vec()
}

/// Go's `bytes.TrimSpace`: strips from both ends the leading and trailing runes of the UTF-8
/// decoding for which `unicode.IsSpace` holds.
///
/// Those are `\t \n \v \f \r` and space (0x09–0x0D, 0x20), U+0085 and U+00A0, U+1680,
/// U+2000–U+200A, U+2028, U+2029, U+202F, U+205F and U+3000. Non-ASCII spaces count only as
/// their UTF-8 encoding (U+0085 is `C2 85`, U+00A0 is `C2 A0`): a lone byte 0x85 or 0xA0 is
/// invalid UTF-8, which Go decodes as U+FFFD, not a space, and trimming stops there. So for
/// protobuf payloads only the ASCII bytes 0x09–0x0D and 0x20 matter in practice: a
/// `StringValue` of 11 bytes starts `0A 0B` and loses both.
fn go_trim_space(bytes: &[u8]) -> &[u8] {
    let mut start = 0;
    while let Some((c, len)) = first_char(&bytes[start..]) {
        if !is_go_space(c) {
            break;
        }
        start += len;
    }
    let mut end = bytes.len();
    while let Some((c, len)) = last_char(&bytes[start..end]) {
        if !is_go_space(c) {
            break;
        }
        end -= len;
    }
    &bytes[start..end]
}

/// Go's `unicode.IsSpace`: the Unicode White_Space property.
fn is_go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{85}' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// The first rune of `bytes` and its length; `None` when empty or invalid UTF-8 (Go's
/// `utf8.RuneError`, never a space).
fn first_char(bytes: &[u8]) -> Option<(char, usize)> {
    (1..=bytes.len().min(4)).find_map(|n| single_char(&bytes[..n]))
}

/// The last rune of `bytes` and its length, as Go's `utf8.DecodeLastRune`.
fn last_char(bytes: &[u8]) -> Option<(char, usize)> {
    (1..=bytes.len().min(4)).find_map(|n| single_char(&bytes[bytes.len() - n..]))
}

fn single_char(bytes: &[u8]) -> Option<(char, usize)> {
    let s = std::str::from_utf8(bytes).ok()?;
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some((c, bytes.len()))
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

    #[test]
    fn job_path_is_one_percent_encoded_segment() {
        for (name, path) in [
            ("my-job", "job/my-job"),
            ("/leading", "job/leading"),
            ("my||job@name", "job/my%7C%7Cjob@name"),
            ("with space", "job/with%20space"),
            ("100%", "job/100%25"),
            ("a/b?c#d", "job/a%2Fb%3Fc%23d"),
            ("ünï", "job/%C3%BCn%C3%AF"),
            ("keep:~!$&'()*+,;=", "job/keep:~!$&'()*+,;="),
            ("...", "job/..."),
        ] {
            assert_eq!(job_path(name).as_deref(), Some(path), "{name}");
        }
        assert_eq!(job_path("."), None);
        assert_eq!(job_path(".."), None);
    }

    #[test]
    fn trim_space_matches_go_bytes_trim_space() {
        for (input, trimmed) in [
            (&b""[..], &b""[..]),
            (b" \t\n\x0b\x0c\r", b""),
            (b"\x0a\x0bhello world", b"hello world"),
            (b"\x08\x7b", b"\x08{"),
            (b"\x00abc\x00", b"\x00abc\x00"),
            (b"  a b  ", b"a b"),
            // U+0085 and U+00A0 as UTF-8 are spaces; the lone bytes are not.
            (b"\xc2\x85x\xc2\xa0", b"x"),
            (b"\x85x\xa0", b"\x85x\xa0"),
            // U+3000 and U+2028 at the ends; U+FEFF is not a space.
            ("\u{3000}y\u{2028}".as_bytes(), b"y"),
            ("\u{feff}z".as_bytes(), "\u{feff}z".as_bytes()),
            // Invalid UTF-8 stops trimming even with spaces behind it.
            (b" \xff \xff ", b"\xff \xff"),
            (b"\x1c\x1f", b"\x1c\x1f"),
        ] {
            assert_eq!(go_trim_space(input), trimmed, "{input:?}");
        }
    }

    #[test]
    fn http_body_follows_daprd_rules() {
        let value = |json: serde_json::Value| Payload {
            type_url: VALUE_TYPE_URL.to_owned(),
            value: kairos_proto::json::value_from_json(json).unwrap().encode_to_vec(),
        };
        assert_eq!(http_body(None), b"");
        assert_eq!(http_body(Some(&Payload::default())), b"");
        assert_eq!(http_body(Some(&Payload { type_url: VALUE_TYPE_URL.to_owned(), value: vec![] })), b"");
        assert_eq!(http_body(Some(&value(serde_json::json!("someData")))), b"\"someData\"");
        assert_eq!(http_body(Some(&value(serde_json::json!(123)))), b"123");
        assert_eq!(
            http_body(Some(&value(serde_json::json!({"b": [1, 2], "a": "x y"})))),
            br#"{"a":"x y","b":[1,2]}"#
        );
        // The numbers GET shows, not another rendering of them.
        assert_eq!(
            http_body(Some(&value(serde_json::json!({"b": 1e20, "d": -0.0})))),
            br#"{"b":100000000000000000000,"d":-0}"#
        );
        // Undecodable Value bytes fall back to the raw, trimmed bytes.
        let garbage = Payload { type_url: VALUE_TYPE_URL.to_owned(), value: b"\x1a\x09ab \n".to_vec() };
        assert!(prost_types::Value::decode(garbage.value.as_slice()).is_err(), "a truncated string field");
        assert_eq!(http_body(Some(&garbage)), b"\x1a\x09ab");
        let raw =
            Payload { type_url: "dapr.io/schedule/jobpayload".to_owned(), value: b" {\"k\": 1}\n".to_vec() };
        assert_eq!(http_body(Some(&raw)), b"{\"k\": 1}");
    }

    #[test]
    fn job_event_request_matches_daprd() {
        let payload = Payload {
            type_url: "type.googleapis.com/io.dapr.RustTest".to_owned(),
            value: b"\x01\x02".to_vec(),
        };
        let request = job_event_request("my||job@name", Some(&payload));
        assert_eq!(request.name, "my||job@name");
        assert_eq!(request.method, "job/my||job@name");
        assert_eq!(request.content_type, payload.type_url);
        assert_eq!(
            request.data.as_ref().map(|a| (&a.type_url, &a.value)),
            Some((&payload.type_url, &payload.value))
        );
        assert_eq!(request.http_extension.as_ref().map(HttpExtension::verb), Some(Verb::Post));
        let bare = job_event_request("j", None);
        assert_eq!((bare.data, bare.content_type.as_str()), (None, ""));
    }
}
