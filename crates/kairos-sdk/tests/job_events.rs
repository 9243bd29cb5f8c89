//! The job-event service driven as the sidecar drives it: generated `AppCallbackClient`,
//! `AppCallbackAlphaClient` and `AppCallbackHealthCheckClient` calls over 127.0.0.1:0.

use std::time::Duration;

use kairos_proto::common::{HttpExtension, http_extension::Verb};
use kairos_proto::runtime::JobEventRequest;
use kairos_proto::runtime::app_callback_alpha_client::AppCallbackAlphaClient;
use kairos_proto::runtime::app_callback_client::AppCallbackClient;
use kairos_proto::runtime::app_callback_health_check_client::AppCallbackHealthCheckClient;
use kairos_sdk::{CallbackMethod, DataError, HandlerError, JobData, JobEvent, JobEventService};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// A running service; it stops when this is dropped.
struct App {
    channel: Channel,
    events: mpsc::Receiver<JobEvent>,
    _stop: oneshot::Sender<()>,
}

/// Serves `configure(service with "record", "fail", "give-up", "panic", "sync-panic" handlers)`.
async fn start(configure: impl FnOnce(JobEventService) -> JobEventService) -> App {
    let (events_tx, events) = mpsc::channel(16);
    let service = JobEventService::new()
        .app_api_token(None)
        .add_job_event_handler("record", move |event: JobEvent| {
            let events_tx = events_tx.clone();
            async move {
                events_tx.send(event).await?;
                Ok(())
            }
        })
        .add_job_event_handler("fail", |_event: JobEvent| async { Err(HandlerError::new("disk full")) })
        .add_job_event_handler("give-up", |_event: JobEvent| async {
            Err(HandlerError::permanent("target gone"))
        })
        .add_job_event_handler("panic", |_event: JobEvent| async { panic!("handler bug") })
        .add_job_event_handler(
            "sync-panic",
            |_event: JobEvent| -> std::future::Ready<Result<(), HandlerError>> {
                panic!("handler bug before its future")
            },
        );
    let service = configure(service);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(service.serve_with_shutdown(listener, async {
        let _ = stop_rx.await;
    }));
    let channel = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap();
    App { channel, events, _stop: stop_tx }
}

/// What daprd sends for a job (spec §4.1).
fn request(name: &str, data: Option<prost_types::Any>) -> JobEventRequest {
    JobEventRequest {
        name: name.into(),
        content_type: data.as_ref().map(|d| d.type_url.clone()).unwrap_or_default(),
        data,
        method: format!("job/{name}"),
        http_extension: Some(HttpExtension { verb: Verb::Post.into(), querystring: String::new() }),
    }
}

fn with_token(message: JobEventRequest, token: &str) -> Request<JobEventRequest> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("dapr-api-token", token.parse().unwrap());
    request
}

async fn stable(app: &App, request: impl tonic::IntoRequest<JobEventRequest>) -> Result<(), Status> {
    AppCallbackClient::new(app.channel.clone()).on_job_event(request).await.map(drop)
}

async fn alpha(app: &App, request: impl tonic::IntoRequest<JobEventRequest>) -> Result<(), Status> {
    #[allow(deprecated)] // The deprecated Alpha1 callback is exactly what is under test.
    let answer = AppCallbackAlphaClient::new(app.channel.clone()).on_job_event_alpha1(request).await;
    answer.map(drop)
}

async fn next_event(app: &mut App) -> JobEvent {
    tokio::time::timeout(Duration::from_secs(5), app.events.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn both_callbacks_dispatch_by_name() {
    let mut app = start(|s| s).await;
    let data = JobData::json(&serde_json::json!({"db": "prod"})).unwrap();

    stable(&app, request("record", Some(data.clone().into()))).await.unwrap();
    let event = next_event(&mut app).await;
    assert_eq!(event.name, "record");
    assert_eq!(event.method, "job/record");
    assert_eq!(event.callback, CallbackMethod::OnJobEvent);
    assert_eq!(
        (event.type_url.as_str(), event.data.as_slice()),
        (data.type_url.as_str(), data.value.as_slice())
    );

    alpha(&app, request("record", None)).await.unwrap();
    let event = next_event(&mut app).await;
    assert_eq!(event.callback, CallbackMethod::OnJobEventAlpha1);
    assert!(!event.has_data());
    assert!(matches!(event.data_json::<serde_json::Value>(), Err(DataError::Missing)));
}

#[tokio::test]
async fn data_json_decodes_value_typed_and_raw_json() {
    #[derive(Debug, PartialEq, serde::Deserialize)]
    struct Backup {
        db: String,
        keep: u32,
    }
    let mut app = start(|s| s).await;
    let value = JobData::json(&serde_json::json!({"db": "prod", "keep": 3})).unwrap();
    let raw = JobData::raw_json(&serde_json::json!({"db": "prod", "keep": 3})).unwrap();
    for data in [value, raw] {
        stable(&app, request("record", Some(data.into()))).await.unwrap();
        let event = next_event(&mut app).await;
        assert_eq!(event.data_json::<Backup>().unwrap(), Backup { db: "prod".into(), keep: 3 });
    }
    // A JSON string scheduled over HTTP: Value-typed, protobuf on the wire.
    stable(&app, request("record", Some(JobData::json("hello").unwrap().into()))).await.unwrap();
    let event = next_event(&mut app).await;
    assert_eq!(event.data_json::<String>().unwrap(), "hello");
    assert_eq!(event.data, b"\x1a\x05hello");
}

#[tokio::test]
async fn unknown_job_is_not_found_unless_a_default_handler_is_set() {
    let app = start(|s| s).await;
    for status in [stable(&app, request("nobody", None)).await, alpha(&app, request("nobody", None)).await] {
        let status = status.unwrap_err();
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().contains("nobody"), "{status:?}");
    }

    let (seen_tx, mut seen_rx) = mpsc::channel(1);
    let app = start(move |s| {
        s.default_handler(move |event: JobEvent| {
            let seen_tx = seen_tx.clone();
            async move {
                seen_tx.send(event.name).await?;
                Ok(())
            }
        })
    })
    .await;
    stable(&app, request("nobody", None)).await.unwrap();
    assert_eq!(seen_rx.recv().await.unwrap(), "nobody");
}

#[tokio::test]
async fn handler_failures_answer_codes_the_sidecar_retries_or_not() {
    let mut app = start(|s| s).await;
    // Retried under the failure policy.
    let status = stable(&app, request("fail", None)).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(status.message().contains("disk full"), "{status:?}");
    assert_eq!(alpha(&app, request("fail", None)).await.unwrap_err().code(), Code::Internal);
    // Counted as done.
    assert_eq!(stable(&app, request("give-up", None)).await.unwrap_err().code(), Code::NotFound);
    // A panic is a failed attempt, and the server keeps serving.
    for name in ["panic", "sync-panic"] {
        let status = stable(&app, request(name, None)).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().contains("panicked"), "{status:?}");
    }
    stable(&app, request("record", None)).await.unwrap();
    assert_eq!(next_event(&mut app).await.name, "record");
}

#[tokio::test]
async fn app_api_token_is_enforced_on_job_events_but_not_health() {
    let mut app = start(|s| s.app_api_token(Some("app-s3cret".into()))).await;
    for answer in [stable(&app, request("record", None)).await, alpha(&app, request("record", None)).await] {
        let status = answer.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert_eq!(status.message(), "missing api token in request metadata");
    }
    let status = stable(&app, with_token(request("record", None), "wrong")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(status.message(), "authentication error: api token mismatch");
    // Refused events never reach the handler.
    assert!(app.events.try_recv().is_err());

    stable(&app, with_token(request("record", None), "app-s3cret")).await.unwrap();
    alpha(&app, with_token(request("record", None), "app-s3cret")).await.unwrap();
    assert_eq!(next_event(&mut app).await.callback, CallbackMethod::OnJobEvent);
    assert_eq!(next_event(&mut app).await.callback, CallbackMethod::OnJobEventAlpha1);

    AppCallbackHealthCheckClient::new(app.channel.clone()).health_check(()).await.unwrap();
}

#[tokio::test]
async fn serve_with_shutdown_returns_when_shutdown_completes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let served = JobEventService::new().app_api_token(None).serve_with_shutdown(listener, async {});
    tokio::time::timeout(Duration::from_secs(5), served).await.unwrap().unwrap();
}
