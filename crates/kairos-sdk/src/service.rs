//! The job-event server: the gRPC services a Dapr app serves so its sidecar can hand it fired
//! jobs (spec §4.1).
//!
//! [`JobEventService`] serves `AppCallback/OnJobEvent` (Dapr 1.18+), `AppCallbackAlpha/OnJobEventAlpha1`
//! (what older sidecars call, and what current ones fall back to) and
//! `AppCallbackHealthCheck/HealthCheck`. A fired job is dispatched by name to the handler added
//! with [`JobEventService::add_job_event_handler`]. How the sidecar reads the answer:
//!
//! | Handler outcome | gRPC status | Sidecar |
//! |---|---|---|
//! | `Ok(())` | OK | success |
//! | `Err(HandlerError::new(..))` or a panic | INTERNAL | failed attempt: retried under the job's failure policy |
//! | `Err(HandlerError::permanent(..))` | NOT_FOUND | success: no retry (logged as a failure) |
//! | no handler for the name (and no default) | NOT_FOUND | success: the tick is dropped, not retried |
//!
//! The last row follows the official Rust SDK and means a job whose handler is missing (a typo,
//! an old job after a rename) is silently consumed. To see such ticks, add a default handler with
//! [`JobEventService::default_handler`].

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;

use futures::FutureExt;
use kairos_proto::auth;
use kairos_proto::runtime::app_callback_alpha_server::{AppCallbackAlpha, AppCallbackAlphaServer};
use kairos_proto::runtime::app_callback_health_check_server::{
    AppCallbackHealthCheck, AppCallbackHealthCheckServer,
};
use kairos_proto::runtime::app_callback_server::{AppCallback, AppCallbackServer};
use kairos_proto::runtime::{HealthCheckResponse, JobEventRequest, JobEventResponse};
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

use crate::data::{self, DataError};
use crate::{API_TOKEN_HEADER, Error};

/// Which callback delivered a job event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackMethod {
    /// `AppCallback/OnJobEvent` (Dapr 1.18+).
    OnJobEvent,
    /// `AppCallbackAlpha/OnJobEventAlpha1`.
    OnJobEventAlpha1,
}

/// One fired tick of a job, as the sidecar delivered it.
///
/// ```
/// use kairos_sdk::{JobData, JobEvent};
///
/// #[derive(serde::Deserialize, Debug, PartialEq)]
/// struct Backup { db: String }
///
/// // JSON scheduled with `Job::data_json` or over HTTP arrives as a Value-typed Any …
/// let data = JobData::json(&serde_json::json!({"db": "prod"})).unwrap();
/// let event = JobEvent::new("prod-db-backup", data.type_url, data.value);
/// assert_eq!(event.data_json::<Backup>().unwrap(), Backup { db: "prod".into() });
///
/// // … and JSON text scheduled by the Go or Python SDK as raw bytes: both decode.
/// let event = JobEvent::new("prod-db-backup", "", br#"{"db":"prod"}"#.to_vec());
/// assert_eq!(event.data_json::<Backup>().unwrap(), Backup { db: "prod".into() });
/// assert_eq!(event.data_str().unwrap(), r#"{"db":"prod"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobEvent {
    /// The job's name.
    pub name: String,
    /// The payload's `Any.type_url`; empty for raw bytes and for no payload.
    pub type_url: String,
    /// The payload's raw `Any.value`; empty when the job has no payload.
    pub data: Vec<u8>,
    /// The request's `method`: `job/<name>`.
    pub method: String,
    /// The callback that delivered the event.
    pub callback: CallbackMethod,
}

impl JobEvent {
    /// An event for `name` carrying `Any{type_url, value: data}`, as if delivered by
    /// `OnJobEvent` (for tests of handlers).
    pub fn new(name: impl Into<String>, type_url: impl Into<String>, data: Vec<u8>) -> Self {
        let name = name.into();
        JobEvent {
            method: format!("job/{name}"),
            name,
            type_url: type_url.into(),
            data,
            callback: CallbackMethod::OnJobEvent,
        }
    }

    fn from_request(request: JobEventRequest, callback: CallbackMethod) -> Self {
        let (type_url, data) = request.data.map(|any| (any.type_url, any.value)).unwrap_or_default();
        // The name is always set by daprd; `method` without `job/` is the Go SDK's fallback.
        let name = if request.name.is_empty() {
            request.method.strip_prefix("job/").unwrap_or(&request.method).to_owned()
        } else {
            request.name
        };
        JobEvent { name, type_url, data, method: request.method, callback }
    }

    /// Whether the job carries a payload.
    pub fn has_data(&self) -> bool {
        !self.data.is_empty() || !self.type_url.is_empty()
    }

    /// Deserialises the payload: a `google.protobuf.Value`-typed `Any` (what
    /// [`Job::data_json`](crate::Job::data_json) and the HTTP API store) from its protobuf bytes,
    /// anything else from JSON text (what the Go and Python examples send).
    ///
    /// # Errors
    /// [`DataError::Missing`] without a payload; [`DataError::Json`], [`DataError::Protobuf`] or
    /// [`DataError::NotJson`] when it is not what `T` expects.
    pub fn data_json<T: DeserializeOwned>(&self) -> Result<T, DataError> {
        if !self.has_data() {
            return Err(DataError::Missing);
        }
        data::decode_json(&self.type_url, &self.data)
    }

    /// The raw payload as UTF-8 text, not decoded (as the Python SDK's `get_data_as_string`).
    ///
    /// # Errors
    /// [`DataError::Utf8`] when the bytes are not UTF-8.
    pub fn data_str(&self) -> Result<&str, DataError> {
        std::str::from_utf8(&self.data).map_err(DataError::Utf8)
    }
}

/// A handler's failure; convert any error into it with `?` or `.into()`.
///
/// ```
/// use kairos_sdk::HandlerError;
///
/// fn parse(s: &str) -> Result<u32, HandlerError> {
///     Ok(s.parse::<u32>()?) // retried under the job's failure policy
/// }
/// assert!(parse("x").is_err());
/// let give_up = HandlerError::permanent("the backup target is gone"); // not retried
/// assert!(give_up.is_permanent());
/// ```
pub struct HandlerError {
    source: Box<dyn std::error::Error + Send + Sync>,
    permanent: bool,
}

impl HandlerError {
    /// A failed attempt, which the sidecar retries under the job's failure policy.
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        HandlerError { source: error.into(), permanent: false }
    }

    /// A failure not worth retrying: answered NOT_FOUND, which the sidecar counts as done.
    pub fn permanent(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        HandlerError { source: error.into(), permanent: true }
    }

    /// Whether this failure stops retries.
    pub fn is_permanent(&self) -> bool {
        self.permanent
    }

    /// The underlying error.
    pub fn source(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError::new(error)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("source", &self.source)
            .field("permanent", &self.permanent)
            .finish()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

/// The future a [`JobEventHandler`] returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send + 'static>>;

/// Something that handles job events; implemented for every
/// `Fn(JobEvent) -> impl Future<Output = Result<(), HandlerError>>`.
pub trait JobEventHandler: Send + Sync + 'static {
    /// Handles one event.
    fn call(&self, event: JobEvent) -> HandlerFuture;
}

impl<F, Fut> JobEventHandler for F
where
    F: Fn(JobEvent) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
{
    fn call(&self, event: JobEvent) -> HandlerFuture {
        Box::pin(self(event))
    }
}

/// The app's job-event server: handlers by job name, served as the app-callback gRPC services.
///
/// ```
/// use kairos_sdk::{HandlerError, JobEvent, JobEventService};
///
/// #[derive(serde::Deserialize)]
/// struct Backup { db: String }
///
/// let service = JobEventService::new()
///     .add_job_event_handler("prod-db-backup", |event: JobEvent| async move {
///         let backup: Backup = event.data_json()?;
///         println!("backing up {}", backup.db);
///         Ok::<(), HandlerError>(())
///     });
/// // Then: service.serve("127.0.0.1:50051".parse()?).await? (the app port given to the sidecar).
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct JobEventService {
    handlers: HashMap<String, Arc<dyn JobEventHandler>>,
    default: Option<Arc<dyn JobEventHandler>>,
    app_api_token: Option<String>,
    max_message_size: usize,
}

impl fmt::Debug for JobEventService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobEventService")
            .field("handlers", &self.job_names())
            .field("default_handler", &self.default.is_some())
            .field("app_api_token", &self.app_api_token.as_ref().map(|_| "<redacted>"))
            .field("max_message_size", &self.max_message_size)
            .finish()
    }
}

impl Default for JobEventService {
    fn default() -> Self {
        Self::new()
    }
}

/// daprd's default `--max-body-size`, 4 MiB, which also bounds what it sends the app.
const DEFAULT_MAX_MESSAGE_SIZE: usize = 4 << 20;

impl JobEventService {
    /// No handlers yet; requires `APP_API_TOKEN` as `dapr-api-token` metadata when that variable
    /// is set (and not empty) in the environment.
    pub fn new() -> Self {
        let token = std::env::var("APP_API_TOKEN").ok().filter(|t| !t.is_empty());
        JobEventService {
            handlers: HashMap::new(),
            default: None,
            app_api_token: token,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }

    /// Handles the job named `name` with `handler`, replacing an earlier handler for that name.
    #[must_use]
    pub fn add_job_event_handler(mut self, name: impl Into<String>, handler: impl JobEventHandler) -> Self {
        let name = name.into();
        if self.handlers.insert(name.clone(), Arc::new(handler)).is_some() {
            tracing::warn!(job = %name, "replacing the job event handler already added for this job");
        }
        self
    }

    setters! {
        /// Handles jobs no named handler matches (without one they are answered NOT_FOUND, which the
        /// sidecar counts as done).
        default_handler(handler: impl JobEventHandler) => default = Some(Arc::new(handler));

        /// Requires this token as `dapr-api-token` metadata (`None`: require nothing), overriding
        /// `APP_API_TOKEN`.
        app_api_token(token: Option<String>) => app_api_token = token.filter(|t| !t.is_empty());

        /// The largest request accepted, in bytes (default 4 MiB, daprd's default `--max-body-size`).
        max_message_size(bytes: usize) => max_message_size = bytes;
    }

    /// The names with a handler, sorted.
    pub fn job_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The three callback services, to add to a tonic server of your own.
    pub fn into_routes(self) -> tonic::service::Routes {
        let size = self.max_message_size;
        tonic::service::Routes::new(
            AppCallbackServer::new(self.clone())
                .max_decoding_message_size(size)
                .max_encoding_message_size(size),
        )
        .add_service(
            AppCallbackAlphaServer::new(self.clone())
                .max_decoding_message_size(size)
                .max_encoding_message_size(size),
        )
        .add_service(AppCallbackHealthCheckServer::new(self))
    }

    /// Serves on `addr` until the process ends.
    ///
    /// # Errors
    /// [`Error::Bind`] when `addr` cannot be bound; [`Error::Serve`] when the server fails.
    pub async fn serve(self, addr: SocketAddr) -> Result<(), Error> {
        let listener = TcpListener::bind(addr).await.map_err(|source| Error::Bind { addr, source })?;
        self.serve_with_shutdown(listener, std::future::pending()).await
    }

    /// Serves on `listener` until `shutdown` completes, then finishes the calls in flight.
    ///
    /// ```
    /// use kairos_proto::runtime::{JobEventRequest, app_callback_client::AppCallbackClient};
    /// use kairos_sdk::{HandlerError, JobEvent, JobEventService};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// let addr = listener.local_addr()?;
    /// let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    /// let service = JobEventService::new()
    ///     .app_api_token(None)
    ///     .add_job_event_handler("hello", |event: JobEvent| async move {
    ///         assert_eq!(event.data_json::<String>()?, "world");
    ///         Ok::<(), HandlerError>(())
    ///     });
    /// let server = tokio::spawn(service.serve_with_shutdown(listener, async { stop_rx.await.ok(); }));
    ///
    /// // What the sidecar does when the job fires.
    /// let mut app = AppCallbackClient::connect(format!("http://{addr}")).await?;
    /// let data = kairos_sdk::JobData::json("world")?;
    /// let fired = JobEventRequest { name: "hello".into(), data: Some(data.into()), ..Default::default() };
    /// app.on_job_event(fired).await?;
    /// let unknown = JobEventRequest { name: "other".into(), ..Default::default() };
    /// assert_eq!(app.on_job_event(unknown).await.unwrap_err().code(), tonic::Code::NotFound);
    ///
    /// stop_tx.send(()).ok();
    /// server.await??;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Serve`] when the server fails.
    pub async fn serve_with_shutdown(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), Error> {
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        tonic::transport::Server::builder()
            .add_routes(self.into_routes())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(Error::Serve)
    }

    fn check_token<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let Some(expected) = &self.app_api_token else { return Ok(()) };
        let given = request.metadata().get(API_TOKEN_HEADER).map(|v| v.as_bytes());
        // Messages as daprd's own API answers a bad token.
        auth::verify(given, expected).map_err(|failure| Status::unauthenticated(failure.message()))
    }

    async fn dispatch(
        &self,
        request: Request<JobEventRequest>,
        callback: CallbackMethod,
    ) -> Result<Response<JobEventResponse>, Status> {
        self.check_token(&request)?;
        let event = JobEvent::from_request(request.into_inner(), callback);
        let name = event.name.clone();
        let Some(handler) = self.handlers.get(&name).or(self.default.as_ref()) else {
            tracing::warn!(job = %name, "no handler for job event; answering NOT_FOUND, which drops the tick");
            return Err(Status::not_found(format!("no job event handler for job {name:?}")));
        };
        // Calling inside the block catches a panic in the handler's synchronous part too.
        match AssertUnwindSafe(async { handler.call(event).await }).catch_unwind().await {
            Ok(Ok(())) => Ok(Response::new(JobEventResponse {})),
            Ok(Err(err)) if err.is_permanent() => {
                tracing::warn!(job = %name, error = %err, "job event handler gave up; not retried");
                Err(Status::not_found(format!("job event handler for {name:?} gave up: {err}")))
            }
            Ok(Err(err)) => {
                tracing::warn!(job = %name, error = %err, "job event handler failed");
                Err(Status::internal(format!("job event handler for {name:?} failed: {err}")))
            }
            Err(_) => {
                tracing::error!(job = %name, "job event handler panicked");
                Err(Status::internal(format!("job event handler for {name:?} panicked")))
            }
        }
    }
}

#[tonic::async_trait]
impl AppCallback for JobEventService {
    async fn on_job_event(
        &self,
        request: Request<JobEventRequest>,
    ) -> Result<Response<JobEventResponse>, Status> {
        self.dispatch(request, CallbackMethod::OnJobEvent).await
    }
}

#[tonic::async_trait]
impl AppCallbackAlpha for JobEventService {
    async fn on_job_event_alpha1(
        &self,
        request: Request<JobEventRequest>,
    ) -> Result<Response<JobEventResponse>, Status> {
        self.dispatch(request, CallbackMethod::OnJobEventAlpha1).await
    }
}

/// Health needs no token: it reveals nothing, and a probe refused for a token would stop job
/// delivery.
#[tonic::async_trait]
impl AppCallbackHealthCheck for JobEventService {
    async fn health_check(&self, _request: Request<()>) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_falls_back_to_method_without_job_prefix() {
        let request = JobEventRequest { method: "job/backup".into(), ..Default::default() };
        assert_eq!(JobEvent::from_request(request, CallbackMethod::OnJobEvent).name, "backup");
    }

    #[test]
    fn later_handler_for_a_name_replaces_the_earlier() {
        let service = JobEventService::new()
            .add_job_event_handler("x", |_e: JobEvent| async { Ok(()) })
            .add_job_event_handler("x", |_e: JobEvent| async { Err("second".into()) })
            .add_job_event_handler("a", |_e: JobEvent| async { Ok(()) });
        assert_eq!(service.job_names(), ["a", "x"]);
    }
}
