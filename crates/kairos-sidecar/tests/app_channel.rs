//! The app channel against real apps on 127.0.0.1: tonic apps shaped like the SDKs' (both job
//! callbacks like Python and Rust, Alpha1 only like Go and JS, neither) and an axum HTTP app,
//! checking what daprd sends (spec §4.1, §4.2) and how the answers are mapped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use kairos_core::Payload;
use kairos_proto::common::http_extension::Verb;
use kairos_proto::json::{VALUE_TYPE_URL, value_from_json};
use kairos_proto::runtime::app_callback_alpha_server::{AppCallbackAlpha, AppCallbackAlphaServer};
use kairos_proto::runtime::app_callback_health_check_server::{
    AppCallbackHealthCheck, AppCallbackHealthCheckServer,
};
use kairos_proto::runtime::app_callback_server::{AppCallback, AppCallbackServer};
use kairos_proto::runtime::{JobEventRequest, JobEventResponse};
use kairos_sidecar::app_channel::{AppChannel, AppChannelConfig, AppProtocol, Delivery, ShutdownRequested};
use prost::Message;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

const TOKEN: &str = "app-s3cr3t";
/// How long a test waits for something that should happen at once.
const PATIENCE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- gRPC apps

/// One job callback the app received.
#[derive(Debug, Clone)]
struct GrpcCall {
    service: &'static str,
    request: JobEventRequest,
    token: Option<String>,
}

#[derive(Debug, Default)]
struct GrpcLog(Mutex<Vec<GrpcCall>>);

impl GrpcLog {
    fn calls(&self) -> Vec<GrpcCall> {
        self.0.lock().unwrap().clone()
    }

    fn count(&self, service: &str) -> usize {
        self.calls().iter().filter(|c| c.service == service).count()
    }

    /// Records the call and answers by job name, as an SDK app with handlers would.
    fn answer(
        &self,
        service: &'static str,
        request: Request<JobEventRequest>,
    ) -> Result<Response<JobEventResponse>, Status> {
        let token = request.metadata().get("dapr-api-token").map(|v| v.to_str().unwrap().to_owned());
        let request = request.into_inner();
        let name = request.name.clone();
        self.0.lock().unwrap().push(GrpcCall { service, request, token });
        match name.as_str() {
            // Rust SDK: no handler.
            "not-found" => Err(Status::not_found("no handler for job")),
            // Go SDK: no handler; Python: the handler raised.
            "unknown" => Err(Status::unknown("handler failed")),
            // Python SDK: no handler.
            "unregistered" => Err(Status::unimplemented("no handler")),
            _ => Ok(Response::new(JobEventResponse {})),
        }
    }
}

/// Implements `OnJobEvent`.
struct Stable(Arc<GrpcLog>);

#[tonic::async_trait]
impl AppCallback for Stable {
    async fn on_job_event(
        &self,
        request: Request<JobEventRequest>,
    ) -> Result<Response<JobEventResponse>, Status> {
        self.0.answer("stable", request)
    }
}

/// Registers `AppCallback` but answers UNIMPLEMENTED, as the Go SDK's embedded
/// `UnimplementedAppCallbackServer` does; records the probe.
struct StableUnimplemented(Arc<GrpcLog>);

#[tonic::async_trait]
impl AppCallback for StableUnimplemented {
    async fn on_job_event(
        &self,
        request: Request<JobEventRequest>,
    ) -> Result<Response<JobEventResponse>, Status> {
        self.0.0.lock().unwrap().push(GrpcCall {
            service: "stable-unimplemented",
            request: request.into_inner(),
            token: None,
        });
        Err(Status::unimplemented("method OnJobEvent not implemented"))
    }
}

/// Implements `OnJobEventAlpha1`.
struct Alpha(Arc<GrpcLog>);

#[tonic::async_trait]
impl AppCallbackAlpha for Alpha {
    async fn on_job_event_alpha1(
        &self,
        request: Request<JobEventRequest>,
    ) -> Result<Response<JobEventResponse>, Status> {
        self.0.answer("alpha", request)
    }
}

/// Only the health check: no job callback at all.
struct Healthy;

#[tonic::async_trait]
impl AppCallbackHealthCheck for Healthy {}

#[derive(Debug, Clone, Copy)]
enum GrpcShape {
    /// Python and Rust SDKs.
    Both,
    /// Go SDK: `AppCallback` registered, UNIMPLEMENTED.
    GoStyle,
    /// JS SDK: `AppCallback` not registered at all.
    AlphaOnly,
    Neither,
}

async fn grpc_app(shape: GrpcShape) -> (SocketAddr, Arc<GrpcLog>) {
    grpc_app_on(TcpListener::bind("127.0.0.1:0").await.unwrap(), shape)
}

fn grpc_app_on(listener: TcpListener, shape: GrpcShape) -> (SocketAddr, Arc<GrpcLog>) {
    let log = Arc::new(GrpcLog::default());
    let routes = match shape {
        GrpcShape::Both => Routes::new(AppCallbackServer::new(Stable(log.clone())))
            .add_service(AppCallbackAlphaServer::new(Alpha(log.clone()))),
        GrpcShape::GoStyle => Routes::new(AppCallbackServer::new(StableUnimplemented(log.clone())))
            .add_service(AppCallbackAlphaServer::new(Alpha(log.clone()))),
        GrpcShape::AlphaOnly => Routes::new(AppCallbackAlphaServer::new(Alpha(log.clone()))),
        GrpcShape::Neither => Routes::new(AppCallbackHealthCheckServer::new(Healthy)),
    };
    let addr = listener.local_addr().unwrap();
    tokio::spawn(Server::builder().add_routes(routes).serve_with_incoming(TcpIncoming::from(listener)));
    (addr, log)
}

fn grpc_channel(addr: SocketAddr, token: Option<&str>) -> AppChannel {
    let mut config = AppChannelConfig::new(AppProtocol::Grpc, addr.port());
    config.address = addr.ip().to_string();
    config.api_token = token.map(str::to_owned);
    AppChannel::new(config).unwrap()
}

/// A gRPC app of `shape` and a channel to it without a token.
async fn grpc_app_channel(shape: GrpcShape) -> (AppChannel, Arc<GrpcLog>) {
    let (addr, log) = grpc_app(shape).await;
    (grpc_channel(addr, None), log)
}

fn payload(type_url: &str, value: &[u8]) -> Payload {
    Payload { type_url: type_url.to_owned(), value: value.to_vec() }
}

fn json_payload(json: serde_json::Value) -> Payload {
    Payload { type_url: VALUE_TYPE_URL.to_owned(), value: value_from_json(json).unwrap().encode_to_vec() }
}

#[tokio::test]
async fn grpc_request_carries_name_method_content_type_verb_and_unchanged_data() {
    let (channel, log) = grpc_app_channel(GrpcShape::Both).await;
    let rust_test = payload("type.googleapis.com/io.dapr.RustTest", b"\x0a\x03abc\xff\x00");

    assert_eq!(channel.deliver("my||job@name", Some(&rust_test)).await, Delivery::Success);
    assert_eq!(channel.deliver("no data", None).await, Delivery::Success);
    assert_eq!(channel.deliver("empty", Some(&Payload::default())).await, Delivery::Success);

    let calls = log.calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls.iter().all(|c| c.service == "stable"), "stable OnJobEvent first: {calls:?}");

    let with_data = &calls[0].request;
    assert_eq!(with_data.name, "my||job@name");
    assert_eq!(with_data.method, "job/my||job@name");
    assert_eq!(with_data.content_type, "type.googleapis.com/io.dapr.RustTest");
    let any = with_data.data.as_ref().expect("data is set");
    assert_eq!(
        (any.type_url.as_str(), any.value.as_slice()),
        ("type.googleapis.com/io.dapr.RustTest", &b"\x0a\x03abc\xff\x00"[..])
    );
    assert_eq!(
        with_data.http_extension.as_ref().map(|h| (h.verb(), h.querystring.as_str())),
        Some((Verb::Post, ""))
    );

    let no_data = &calls[1].request;
    assert_eq!((no_data.name.as_str(), no_data.method.as_str()), ("no data", "job/no data"));
    assert_eq!(no_data.data, None, "no data → data unset");
    assert_eq!(no_data.content_type, "");
    assert_eq!(no_data.http_extension.as_ref().map(|h| h.verb()), Some(Verb::Post));

    // An empty Any (what the Python SDK stores for "no data") is still a set field.
    assert_eq!(calls[2].request.data, Some(prost_types::Any::default()));
}

#[tokio::test]
async fn grpc_http_scheduled_data_arrives_as_a_value_any() {
    let (channel, log) = grpc_app_channel(GrpcShape::Both).await;
    let data = json_payload(json!({"Task": "db-backup"}));
    assert_eq!(channel.deliver("backup", Some(&data)).await, Delivery::Success);
    let request = &log.calls()[0].request;
    assert_eq!(request.content_type, VALUE_TYPE_URL);
    assert_eq!(request.data.as_ref().map(|a| &a.value), Some(&data.value));
}

#[tokio::test]
async fn grpc_sends_the_api_token_only_when_set() {
    let (addr, log) = grpc_app(GrpcShape::Both).await;
    grpc_channel(addr, Some(TOKEN)).deliver("with-token", None).await;
    grpc_channel(addr, None).deliver("without-token", None).await;
    let (alpha_addr, alpha_log) = grpc_app(GrpcShape::AlphaOnly).await;
    grpc_channel(alpha_addr, Some(TOKEN)).deliver("alpha-token", None).await;

    let tokens: Vec<_> = log.calls().into_iter().map(|c| c.token).collect();
    assert_eq!(tokens, [Some(TOKEN.to_owned()), None]);
    assert_eq!(alpha_log.calls()[0].token.as_deref(), Some(TOKEN), "the fallback call carries it too");
}

#[tokio::test]
async fn grpc_maps_ok_not_found_and_errors() {
    let (channel, log) = grpc_app_channel(GrpcShape::Both).await;
    assert_eq!(channel.deliver("fine", None).await, Delivery::Success);
    assert_eq!(channel.deliver("not-found", None).await, Delivery::NotFoundCountedAsSuccess);
    assert!(Delivery::NotFoundCountedAsSuccess.is_success());
    let unknown = channel.deliver("unknown", None).await;
    assert!(matches!(&unknown, Delivery::Failed { reason } if reason.contains("Unknown")), "{unknown:?}");
    assert!(!unknown.is_success());
    assert_eq!(log.count("alpha"), 0, "only UNIMPLEMENTED falls back");
}

#[tokio::test]
async fn grpc_python_unregistered_job_fails_after_both_callbacks_without_poisoning_the_channel() {
    let (channel, log) = grpc_app_channel(GrpcShape::Both).await;
    let outcome = channel.deliver("unregistered", None).await;
    assert!(matches!(&outcome, Delivery::Failed { reason } if reason.contains("neither")), "{outcome:?}");
    assert_eq!((log.count("stable"), log.count("alpha")), (1, 1));

    assert_eq!(channel.deliver("registered", None).await, Delivery::Success);
    assert_eq!(log.calls().last().map(|c| c.service), Some("stable"));
}

#[tokio::test]
async fn grpc_falls_back_to_alpha1_when_app_callback_is_not_registered() {
    let (channel, log) = grpc_app_channel(GrpcShape::AlphaOnly).await;
    let data = payload("", b"{\"a\":1}");
    assert_eq!(channel.deliver("go-job", Some(&data)).await, Delivery::Success);
    assert_eq!(channel.deliver("not-found", None).await, Delivery::NotFoundCountedAsSuccess);
    let unknown = channel.deliver("unknown", None).await;
    assert!(
        matches!(&unknown, Delivery::Failed { reason } if reason.contains("OnJobEventAlpha1")),
        "{unknown:?}"
    );

    let request = &log.calls()[0].request;
    assert_eq!((request.name.as_str(), request.method.as_str()), ("go-job", "job/go-job"));
    assert_eq!(request.data.as_ref().map(|a| a.value.as_slice()), Some(&b"{\"a\":1}"[..]));
    assert_eq!(request.http_extension.as_ref().map(|h| h.verb()), Some(Verb::Post));
}

#[tokio::test]
async fn grpc_remembers_an_alpha1_only_app_and_reprobes_every_hundred_deliveries() {
    let (channel, log) = grpc_app_channel(GrpcShape::GoStyle).await;
    for _ in 0..3 {
        assert_eq!(channel.deliver("tick", None).await, Delivery::Success);
    }
    assert_eq!((log.count("stable-unimplemented"), log.count("alpha")), (1, 3));

    // A clone shares what was learnt.
    let clone = channel.clone();
    for _ in 3..101 {
        assert_eq!(clone.deliver("tick", None).await, Delivery::Success);
    }
    assert_eq!((log.count("stable-unimplemented"), log.count("alpha")), (2, 101));
}

#[tokio::test]
async fn grpc_app_without_job_callbacks_fails() {
    let (channel, _log) = grpc_app_channel(GrpcShape::Neither).await;
    let outcome = channel.deliver("job", None).await;
    assert!(matches!(&outcome, Delivery::Failed { reason } if reason.contains("neither")), "{outcome:?}");
}

#[tokio::test]
async fn grpc_unreachable_app_fails_and_recovers_when_it_appears() {
    let port = free_port();
    let channel = grpc_channel(SocketAddr::from(([127, 0, 0, 1], port)), None);
    let outcome = channel.deliver("job", None).await;
    assert!(matches!(outcome, Delivery::Failed { .. }), "{outcome:?}");

    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let (_addr, log) = grpc_app_on(listener, GrpcShape::AlphaOnly);
    assert_eq!(channel.deliver("job", None).await, Delivery::Success);
    assert_eq!(log.count("alpha"), 1);
}

// ---------------------------------------------------------------- HTTP app

#[derive(Debug, Clone)]
struct HttpCall {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Debug, Default)]
struct HttpApp {
    calls: Mutex<Vec<HttpCall>>,
    /// Answers by the raw last path segment; 200 otherwise.
    statuses: HashMap<&'static str, StatusCode>,
    /// When set, every request waits for a permit (never returned).
    gate: Option<Semaphore>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    arrived: Notify,
}

async fn http_handler(
    State(app): State<Arc<HttpApp>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let path = uri.path().to_owned();
    app.calls.lock().unwrap().push(HttpCall { method, path: path.clone(), headers, body });
    let now = app.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    app.max_in_flight.fetch_max(now, Ordering::SeqCst);
    app.arrived.notify_waiters();
    if let Some(gate) = &app.gate {
        gate.acquire().await.unwrap().forget();
    }
    app.in_flight.fetch_sub(1, Ordering::SeqCst);
    let last = path.rsplit('/').next().unwrap_or_default();
    app.statuses.get(last).copied().unwrap_or(StatusCode::OK)
}

async fn http_app(app: HttpApp) -> (SocketAddr, Arc<HttpApp>) {
    let app = Arc::new(app);
    let router = axum::Router::new().fallback(http_handler).with_state(app.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, app)
}

fn http_config(addr: SocketAddr) -> AppChannelConfig {
    let mut config = AppChannelConfig::new(AppProtocol::Http, addr.port());
    config.address = addr.ip().to_string();
    config
}

fn http_channel(addr: SocketAddr, token: Option<&str>) -> AppChannel {
    let mut config = http_config(addr);
    config.api_token = token.map(str::to_owned);
    AppChannel::new(config).unwrap()
}

#[tokio::test]
async fn http_bodies_follow_daprd_rules() {
    let (addr, app) = http_app(HttpApp::default()).await;
    let channel = http_channel(addr, None);
    let cases: Vec<(&str, Option<Payload>, &[u8])> = vec![
        ("string", Some(json_payload(json!("someData"))), b"\"someData\""),
        ("number", Some(json_payload(json!(123))), b"123"),
        (
            "object",
            Some(json_payload(json!({"Task": "db-backup", "Metadata": {"DBName": "my-prod-db"}}))),
            br#"{"Metadata":{"DBName":"my-prod-db"},"Task":"db-backup"}"#,
        ),
        (
            "string-value",
            Some(payload("type.googleapis.com/google.protobuf.StringValue", b"\x0a\x0bhello world")),
            b"hello world",
        ),
        (
            "int64-value",
            Some(payload("type.googleapis.com/google.protobuf.Int64Value", b"\x08\x7b")),
            b"\x08{",
        ),
        ("raw-json", Some(payload("", b"  {\"a\": 1}\r\n")), b"{\"a\": 1}"),
        ("no-data", None, b""),
        ("empty-any", Some(Payload::default()), b""),
        ("empty-value", Some(payload(VALUE_TYPE_URL, b"")), b""),
    ];
    for (name, data, _) in &cases {
        assert_eq!(channel.deliver(name, data.as_ref()).await, Delivery::Success, "{name}");
    }
    let calls = app.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), cases.len());
    for ((name, _, body), call) in cases.iter().zip(&calls) {
        assert_eq!(call.method, Method::POST, "{name}");
        assert_eq!(call.path, format!("/job/{name}"));
        assert_eq!(call.body.as_ref(), *body, "{name}: {:?}", String::from_utf8_lossy(&call.body));
        assert_eq!(call.headers.get("content-type").unwrap(), "application/json", "{name}: always JSON");
        assert_eq!(
            call.headers
                .get("content-length")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_else(|| panic!("{name}: no content-length")),
            body.len().to_string(),
            "{name}"
        );
        assert!(call.headers.get("dapr-api-token").is_none());
    }
}

#[tokio::test]
async fn http_sends_the_api_token_only_when_set() {
    let (addr, app) = http_app(HttpApp::default()).await;
    assert_eq!(http_channel(addr, Some(TOKEN)).deliver("a", None).await, Delivery::Success);
    assert_eq!(http_channel(addr, None).deliver("b", None).await, Delivery::Success);
    let calls = app.calls.lock().unwrap().clone();
    assert_eq!(calls[0].headers.get("dapr-api-token").map(|v| v.to_str().unwrap()), Some(TOKEN));
    assert!(calls[1].headers.get("dapr-api-token").is_none());
}

#[tokio::test]
async fn http_maps_2xx_and_404_to_success_and_the_rest_to_failure() {
    let statuses = HashMap::from([
        ("no-content", StatusCode::NO_CONTENT),
        ("missing", StatusCode::NOT_FOUND),
        ("boom", StatusCode::INTERNAL_SERVER_ERROR),
        ("bad", StatusCode::BAD_REQUEST),
        ("moved", StatusCode::TEMPORARY_REDIRECT),
    ]);
    let (addr, _app) = http_app(HttpApp { statuses, ..HttpApp::default() }).await;
    let channel = http_channel(addr, None);
    assert_eq!(channel.deliver("ok", None).await, Delivery::Success);
    assert_eq!(channel.deliver("no-content", None).await, Delivery::Success);
    assert_eq!(channel.deliver("missing", None).await, Delivery::NotFoundCountedAsSuccess);
    for (name, code) in [("boom", "500"), ("bad", "400"), ("moved", "307")] {
        let outcome = channel.deliver(name, None).await;
        assert!(
            matches!(&outcome, Delivery::Failed { reason } if reason.contains(code)),
            "{name}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn http_escapes_special_characters_as_one_path_segment() {
    let (addr, app) = http_app(HttpApp::default()).await;
    let channel = http_channel(addr, None);
    for name in ["my||job@name", "my job", "/leading-slash", "100%", "ünï"] {
        assert_eq!(channel.deliver(name, None).await, Delivery::Success, "{name}");
    }
    let paths: Vec<_> = app.calls.lock().unwrap().iter().map(|c| c.path.clone()).collect();
    assert_eq!(
        paths,
        ["/job/my%7C%7Cjob@name", "/job/my%20job", "/job/leading-slash", "/job/100%25", "/job/%C3%BCn%C3%AF"]
    );
    let outcome = channel.deliver("..", None).await;
    assert!(matches!(outcome, Delivery::Failed { .. }), "{outcome:?}");
}

#[tokio::test]
async fn http_unreachable_app_fails() {
    let channel = http_channel(SocketAddr::from(([127, 0, 0, 1], free_port())), None);
    let outcome = channel.deliver("job", None).await;
    assert!(matches!(&outcome, Delivery::Failed { reason } if reason.contains("POST")), "{outcome:?}");
}

// ---------------------------------------------------------------- limits

/// Starts six deliveries against an app that holds every request, waits until `expected`
/// are in flight, checks no more arrive, then releases them all.
async fn deliveries_in_flight(max_concurrency: Option<usize>, expected: usize) {
    let (addr, app) = http_app(HttpApp { gate: Some(Semaphore::new(0)), ..HttpApp::default() }).await;
    let mut config = http_config(addr);
    config.max_concurrency = max_concurrency;
    let channel = AppChannel::new(config).unwrap();

    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let channel = channel.clone();
            tokio::spawn(async move { channel.deliver(&format!("job-{i}"), None).await })
        })
        .collect();
    tokio::time::timeout(PATIENCE, async {
        loop {
            let arrived = app.arrived.notified();
            if app.in_flight.load(Ordering::SeqCst) >= expected {
                break;
            }
            arrived.await;
        }
    })
    .await
    .expect("deliveries reach the app");
    // Give a delivery that should not start a chance to show up.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.in_flight.load(Ordering::SeqCst), expected);

    app.gate.as_ref().unwrap().add_permits(6);
    for task in tasks {
        assert_eq!(tokio::time::timeout(PATIENCE, task).await.unwrap().unwrap(), Delivery::Success);
    }
    assert_eq!(app.max_in_flight.load(Ordering::SeqCst), expected);
    assert_eq!(app.calls.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn max_concurrency_limits_deliveries_in_flight() {
    deliveries_in_flight(Some(2), 2).await;
}

#[tokio::test]
async fn unlimited_concurrency_sends_everything_at_once() {
    deliveries_in_flight(None, 6).await;
}

#[tokio::test]
async fn a_delivery_that_takes_too_long_fails() {
    let (addr, _app) = http_app(HttpApp { gate: Some(Semaphore::new(0)), ..HttpApp::default() }).await;
    let mut config = http_config(addr);
    config.timeout = Some(Duration::from_millis(200));
    let outcome = AppChannel::new(config).unwrap().deliver("slow", None).await;
    assert!(
        matches!(&outcome, Delivery::Failed { reason } if reason.contains("did not answer")),
        "{outcome:?}"
    );
}

// ---------------------------------------------------------------- readiness

/// A loopback port nothing listens on (bound, then released): these tests need the port before
/// anything listens on it, so port 0 cannot do.
fn free_port() -> u16 {
    kairos_testing::free_port().unwrap()
}

#[tokio::test]
async fn wait_until_ready_returns_once_the_app_listens() {
    let port = free_port();
    let channel = AppChannel::new(AppChannelConfig::new(AppProtocol::Http, port)).unwrap();
    let waiter = tokio::spawn(async move { channel.wait_until_ready(std::future::pending()).await });
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(!waiter.is_finished(), "nothing listens yet");

    let _listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let ready = tokio::time::timeout(PATIENCE, waiter).await.expect("ready soon after listening").unwrap();
    assert_eq!(ready, Ok(()));
}

#[tokio::test]
async fn wait_until_ready_gives_up_on_shutdown() {
    let channel = AppChannel::new(AppChannelConfig::new(AppProtocol::Grpc, free_port())).unwrap();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let waiter = tokio::spawn(async move {
        channel
            .wait_until_ready(async {
                let _ = shutdown_rx.await;
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    shutdown_tx.send(()).unwrap();
    let outcome = tokio::time::timeout(PATIENCE, waiter).await.expect("stops on shutdown").unwrap();
    assert_eq!(outcome, Err(ShutdownRequested));
}

#[tokio::test]
async fn grpc_payload_over_max_body_size_fails() {
    let (addr, log) = grpc_app(GrpcShape::Both).await;
    let mut config = AppChannelConfig::new(AppProtocol::Grpc, addr.port());
    config.max_body_size = 1024;
    let channel = AppChannel::new(config).unwrap();
    let small = payload("", &[b'x'; 512]);
    let big = payload("", &[b'x'; 2048]);
    assert_eq!(channel.deliver("small", Some(&small)).await, Delivery::Success);
    let outcome = channel.deliver("big", Some(&big)).await;
    assert!(matches!(outcome, Delivery::Failed { .. }), "{outcome:?}");
    assert_eq!(log.calls().len(), 1, "the big one never reached the app");
}
