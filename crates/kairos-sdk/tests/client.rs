//! The client against an in-process fake of the sidecar's `dapr.proto.runtime.v1.Dapr` service
//! on 127.0.0.1:0: the exact requests the builder produces, the API token on every call, the
//! stable → Alpha1 fallback, and errors that keep the sidecar's gRPC status.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos_proto::common::{self, job_failure_policy::Policy};
use kairos_proto::runtime;
use kairos_proto::runtime::dapr_server::{Dapr, DaprServer};
use kairos_proto::runtime::{
    DeleteJobRequest, DeleteJobResponse, DeleteJobsByPrefixRequest, DeleteJobsByPrefixRequestAlpha1,
    DeleteJobsByPrefixResponse, DeleteJobsByPrefixResponseAlpha1, GetJobRequest, GetJobResponse,
    ListJobsRequest, ListJobsRequestAlpha1, ListJobsResponse, ListJobsResponseAlpha1, ScheduleJobRequest,
    ScheduleJobResponse,
};
use kairos_sdk::{Client, ClientConfig, Error, FailurePolicy, Job, VALUE_TYPE_URL};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::{Code, Request, Response, Status};

/// Which method names the fake serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Serves {
    /// Stable names only (Alpha1 answers UNIMPLEMENTED), so a fallback would show up as an error.
    Stable,
    /// Alpha1 names only: a sidecar before Dapr 1.18.
    Alpha1,
    /// Alpha1 only, and unknown names answered as daprd ≤ 1.17 does: UNKNOWN "failed to proxy request".
    Alpha1ProxyError,
}

/// One call the fake received: the method name, the `dapr-api-token` metadata, the request.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    method: &'static str,
    token: Option<String>,
    request: Recorded,
}

// A test's few recorded requests: their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
enum Recorded {
    Schedule(ScheduleJobRequest),
    Get(GetJobRequest),
    Delete(DeleteJobRequest),
    List,
    DeleteByPrefix(Option<String>),
}

/// A small sidecar: jobs by name, daprd's answers for the cases the tests need.
#[derive(Debug, Clone)]
struct FakeDapr {
    serves: Serves,
    token: Option<String>,
    calls: Arc<Mutex<Vec<Call>>>,
    jobs: Arc<Mutex<BTreeMap<String, runtime::Job>>>,
}

impl FakeDapr {
    fn new(serves: Serves) -> Self {
        FakeDapr { serves, token: None, calls: Arc::default(), jobs: Arc::default() }
    }

    fn with_token(mut self, token: &str) -> Self {
        self.token = Some(token.to_owned());
        self
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    fn methods(&self) -> Vec<&'static str> {
        self.calls().into_iter().map(|c| c.method).collect()
    }

    /// Records the call, then answers as a sidecar serving `self.serves` would.
    fn enter<T>(&self, method: &'static str, request: &Request<T>, recorded: Recorded) -> Result<(), Status> {
        let token = request.metadata().get("dapr-api-token").map(|v| v.to_str().unwrap().to_owned());
        self.calls.lock().unwrap().push(Call { method, token: token.clone(), request: recorded });
        let alpha = method.ends_with("Alpha1");
        match (self.serves, alpha) {
            (Serves::Stable, true) | (Serves::Alpha1, false) => {
                return Err(Status::unimplemented(format!("unknown method {method}")));
            }
            (Serves::Alpha1ProxyError, false) => {
                return Err(Status::unknown(
                    "failed to proxy request: required metadata dapr-callee-app-id or dapr-app-id not found",
                ));
            }
            _ => {}
        }
        match (&self.token, token) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(Status::unauthenticated("missing api token in request metadata")),
            (Some(want), Some(got)) if *want == got => Ok(()),
            (Some(_), Some(_)) => Err(Status::unauthenticated("authentication error: api token mismatch")),
        }
    }

    fn schedule(&self, request: ScheduleJobRequest) -> Result<(), Status> {
        let Some(mut job) = request.job else { return Err(Status::invalid_argument("Job is empty")) };
        if job.name.is_empty() {
            return Err(Status::invalid_argument("Name is empty"));
        }
        if job.schedule.is_none() && job.due_time.is_none() {
            return Err(Status::invalid_argument("Schedule is empty"));
        }
        if job.repeats == Some(0) {
            return Err(Status::internal(
                "failed to schedule job due to: rpc error: code = Unknown desc = job failed validation: \
                 defined repeats must be greater than 0",
            ));
        }
        let mut jobs = self.jobs.lock().unwrap();
        if jobs.contains_key(&job.name) && !request.overwrite {
            return Err(Status::already_exists(format!(
                "failed to schedule job due to: rpc error: code = AlreadyExists desc = job already exists: \
                 'app||default||app1||{}'",
                job.name
            )));
        }
        // The scheduler stores the default policy when none is given.
        job.failure_policy.get_or_insert(common::JobFailurePolicy {
            policy: Some(Policy::Constant(common::JobFailurePolicyConstant {
                interval: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
                max_retries: Some(3),
            })),
        });
        jobs.insert(job.name.clone(), job);
        Ok(())
    }

    fn get(&self, name: &str) -> Result<GetJobResponse, Status> {
        match self.jobs.lock().unwrap().get(name) {
            Some(job) => Ok(GetJobResponse { job: Some(job.clone()) }),
            None => Err(Status::internal(format!(
                "failed to get job due to: rpc error: code = NotFound desc = job not found: {name}"
            ))),
        }
    }

    fn list(&self) -> Vec<runtime::Job> {
        self.jobs.lock().unwrap().values().cloned().collect()
    }

    fn delete_prefix(&self, prefix: Option<&str>) {
        let prefix = prefix.unwrap_or_default();
        self.jobs.lock().unwrap().retain(|name, _| !name.starts_with(prefix));
    }
}

/// Writes `impl Dapr for FakeDapr`: each entry names RPCs (a stable one and its Alpha1 twin)
/// with the method name they record, and the body that answers them, given the fake, that name
/// and the request.
macro_rules! fake_dapr_impl {
    ($($($method:ident = $name:literal($request:ty) -> $response:ty),+
        => |$this:ident, $rpc:ident, $req:ident| $body:expr;)*) => {
        #[tonic::async_trait]
        impl Dapr for FakeDapr {
            $($(
                async fn $method(&self, $req: Request<$request>) -> Result<Response<$response>, Status> {
                    let ($this, $rpc) = (self, $name);
                    $body
                }
            )+)*
        }
    };
}

fake_dapr_impl! {
    schedule_job = "ScheduleJob"(ScheduleJobRequest) -> ScheduleJobResponse,
    schedule_job_alpha1 = "ScheduleJobAlpha1"(ScheduleJobRequest) -> ScheduleJobResponse
        => |this, rpc, request| {
            this.enter(rpc, &request, Recorded::Schedule(request.get_ref().clone()))?;
            this.schedule(request.into_inner()).map(|()| Response::new(ScheduleJobResponse {}))
        };
    get_job = "GetJob"(GetJobRequest) -> GetJobResponse,
    get_job_alpha1 = "GetJobAlpha1"(GetJobRequest) -> GetJobResponse => |this, rpc, request| {
        this.enter(rpc, &request, Recorded::Get(request.get_ref().clone()))?;
        this.get(&request.get_ref().name).map(Response::new)
    };
    delete_job = "DeleteJob"(DeleteJobRequest) -> DeleteJobResponse,
    delete_job_alpha1 = "DeleteJobAlpha1"(DeleteJobRequest) -> DeleteJobResponse => |this, rpc, request| {
        this.enter(rpc, &request, Recorded::Delete(request.get_ref().clone()))?;
        this.jobs.lock().unwrap().remove(&request.get_ref().name);
        Ok(Response::new(DeleteJobResponse {}))
    };
    list_jobs = "ListJobs"(ListJobsRequest) -> ListJobsResponse => |this, rpc, request| {
        this.enter(rpc, &request, Recorded::List)?;
        Ok(Response::new(ListJobsResponse { jobs: this.list() }))
    };
    list_jobs_alpha1 = "ListJobsAlpha1"(ListJobsRequestAlpha1) -> ListJobsResponseAlpha1
        => |this, rpc, request| {
            this.enter(rpc, &request, Recorded::List)?;
            Ok(Response::new(ListJobsResponseAlpha1 { jobs: this.list() }))
        };
    delete_jobs_by_prefix = "DeleteJobsByPrefix"(DeleteJobsByPrefixRequest) -> DeleteJobsByPrefixResponse,
    delete_jobs_by_prefix_alpha1 = "DeleteJobsByPrefixAlpha1"(DeleteJobsByPrefixRequestAlpha1)
        -> DeleteJobsByPrefixResponseAlpha1
        => |this, rpc, request| {
            let prefix = request.get_ref().name_prefix.clone();
            this.enter(rpc, &request, Recorded::DeleteByPrefix(prefix.clone()))?;
            this.delete_prefix(prefix.as_deref());
            Ok(Response::new(Default::default()))
        };
}

/// A running fake; the server stops when this is dropped.
struct Running {
    addr: String,
    _stop: oneshot::Sender<()>,
}

async fn start(fake: FakeDapr) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(DaprServer::new(fake))
            .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
    });
    Running { addr, _stop: stop_tx }
}

fn value_bytes(json: serde_json::Value) -> Vec<u8> {
    use prost_types::value::Kind;
    let serde_json::Value::Object(map) = json else { panic!("object expected") };
    let fields = map
        .into_iter()
        .map(|(k, v)| {
            let kind = match v {
                serde_json::Value::String(s) => Kind::StringValue(s),
                serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
                other => panic!("unexpected {other}"),
            };
            (k, prost_types::Value { kind: Some(kind) })
        })
        .collect();
    prost_types::Value { kind: Some(Kind::StructValue(prost_types::Struct { fields })) }.encode_to_vec()
}

#[tokio::test]
async fn builder_produces_the_exact_schedule_request() {
    let fake = FakeDapr::new(Serves::Stable);
    let sidecar = start(fake.clone()).await;
    let client = Client::connect(sidecar.addr.clone()).await.unwrap();

    #[derive(serde::Serialize)]
    struct Backup {
        db: &'static str,
        keep: u32,
    }
    let job = Job::new("prod-db-backup")
        .schedule("0 30 2 * * *")
        .repeats(7)
        .due_time("2026-01-01T00:00:00Z")
        .ttl("P30D")
        .data_json(&Backup { db: "prod", keep: 3 })
        .unwrap()
        .failure_policy(FailurePolicy::constant(Duration::from_millis(1500), Some(4)));
    client.schedule_job(job, true).await.unwrap();
    client
        .schedule_job(Job::new("raw").due_time("10s").data_any("x/y", b"\x01\x02".to_vec()), false)
        .await
        .unwrap();
    client
        .schedule_job(Job::new("dropped").schedule("@every 1s").failure_policy(FailurePolicy::drop()), false)
        .await
        .unwrap();

    let expected = [
        ScheduleJobRequest {
            job: Some(runtime::Job {
                name: "prod-db-backup".into(),
                schedule: Some("0 30 2 * * *".into()),
                repeats: Some(7),
                due_time: Some("2026-01-01T00:00:00Z".into()),
                ttl: Some("P30D".into()),
                data: Some(prost_types::Any {
                    type_url: "type.googleapis.com/google.protobuf.Value".into(),
                    value: value_bytes(serde_json::json!({"db": "prod", "keep": 3})),
                }),
                failure_policy: Some(common::JobFailurePolicy {
                    policy: Some(Policy::Constant(common::JobFailurePolicyConstant {
                        interval: Some(prost_types::Duration { seconds: 1, nanos: 500_000_000 }),
                        max_retries: Some(4),
                    })),
                }),
                misfire_policy: None,
            }),
            overwrite: true,
        },
        ScheduleJobRequest {
            job: Some(runtime::Job {
                name: "raw".into(),
                due_time: Some("10s".into()),
                data: Some(prost_types::Any { type_url: "x/y".into(), value: vec![1, 2] }),
                ..Default::default()
            }),
            overwrite: false,
        },
        ScheduleJobRequest {
            job: Some(runtime::Job {
                name: "dropped".into(),
                schedule: Some("@every 1s".into()),
                failure_policy: Some(common::JobFailurePolicy {
                    policy: Some(Policy::Drop(common::JobFailurePolicyDrop {})),
                }),
                ..Default::default()
            }),
            overwrite: false,
        },
    ];
    let sent: Vec<_> = fake
        .calls()
        .into_iter()
        .map(|c| match c.request {
            Recorded::Schedule(r) => r,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(sent, expected);
    assert_eq!(fake.methods(), ["ScheduleJob"; 3]);
}

#[tokio::test]
async fn get_and_list_return_what_was_stored() {
    let fake = FakeDapr::new(Serves::Stable);
    let sidecar = start(fake.clone()).await;
    let client = Client::connect(format!("http://{}", sidecar.addr)).await.unwrap();

    let job = Job::new("b").schedule("@every 1m").data_json(&serde_json::json!({"n": 1})).unwrap();
    client.schedule_job(job, false).await.unwrap();
    client.schedule_job(Job::new("a").due_time("1h").data_bytes(b"raw".to_vec()), false).await.unwrap();

    let b = client.get_job("b").await.unwrap();
    assert_eq!(b.name, "b");
    assert_eq!(b.schedule.as_deref(), Some("@every 1m"));
    assert_eq!(b.data.as_ref().unwrap().type_url, VALUE_TYPE_URL);
    assert_eq!(b.decode_data::<serde_json::Value>().unwrap(), serde_json::json!({"n": 1}));
    // The sidecar's default policy comes back.
    assert_eq!(b.failure_policy, Some(FailurePolicy::constant(Duration::from_secs(1), Some(3))));

    let names: Vec<_> = client.list_jobs().await.unwrap().into_iter().map(|j| j.name).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(client.get_job("a").await.unwrap().data.unwrap().value, b"raw");

    client.delete_job("a").await.unwrap();
    client.delete_job("never-existed").await.unwrap();
    assert_eq!(client.list_jobs().await.unwrap().len(), 1);
}

#[tokio::test]
async fn api_token_is_sent_on_every_call() {
    let fake = FakeDapr::new(Serves::Stable).with_token("s3cret");
    let sidecar = start(fake.clone()).await;
    let config = ClientConfig::new(sidecar.addr.clone()).with_api_token(Some("s3cret".into()));
    let client = Client::connect_with(config).await.unwrap();

    client.schedule_job(Job::new("j").schedule("@every 1s"), false).await.unwrap();
    client.get_job("j").await.unwrap();
    client.list_jobs().await.unwrap();
    client.delete_jobs_by_prefix("j").await.unwrap();
    client.delete_all_jobs().await.unwrap();
    client.delete_job("j").await.unwrap();
    let calls = fake.calls();
    assert_eq!(calls.len(), 6);
    assert!(calls.iter().all(|c| c.token.as_deref() == Some("s3cret")), "{calls:?}");

    let anonymous = Client::connect(sidecar.addr.clone()).await.unwrap();
    let err = anonymous.list_jobs().await.unwrap_err();
    assert!(err.is_unauthenticated(), "{err}");
    assert_eq!(fake.calls().last().unwrap().token, None);
    let wrong =
        Client::connect_with(ClientConfig::new(sidecar.addr.clone()).with_api_token(Some("nope".into())))
            .await
            .unwrap();
    assert_eq!(wrong.get_job("j").await.unwrap_err().code(), Some(Code::Unauthenticated));
}

async fn every_call_works(client: &Client) {
    client.schedule_job(Job::new("j1").schedule("@every 1s"), false).await.unwrap();
    client.schedule_job(Job::new("j2").schedule("@every 1s"), false).await.unwrap();
    assert_eq!(client.get_job("j1").await.unwrap().name, "j1");
    assert_eq!(client.list_jobs().await.unwrap().len(), 2);
    client.delete_job("j1").await.unwrap();
    client.delete_jobs_by_prefix("j").await.unwrap();
    assert!(client.list_jobs().await.unwrap().is_empty());
}

#[tokio::test]
async fn falls_back_to_alpha1_when_only_alpha1_is_served() {
    for serves in [Serves::Alpha1, Serves::Alpha1ProxyError] {
        let fake = FakeDapr::new(serves);
        let sidecar = start(fake.clone()).await;
        let client = Client::connect(sidecar.addr.clone()).await.unwrap();
        every_call_works(&client).await;
        assert_eq!(
            fake.methods(),
            [
                "ScheduleJob",
                "ScheduleJobAlpha1",
                "ScheduleJob",
                "ScheduleJobAlpha1",
                "GetJob",
                "GetJobAlpha1",
                "ListJobs",
                "ListJobsAlpha1",
                "DeleteJob",
                "DeleteJobAlpha1",
                "DeleteJobsByPrefix",
                "DeleteJobsByPrefixAlpha1",
                "ListJobs",
                "ListJobsAlpha1",
            ],
            "{serves:?}"
        );
        // The fallback sends the same request.
        let calls = fake.calls();
        assert_eq!(calls[0].request, calls[1].request);
        assert_eq!(calls[10].request, Recorded::DeleteByPrefix(Some("j".into())));
        assert_eq!(calls[11].request, Recorded::DeleteByPrefix(Some("j".into())));
    }
}

#[tokio::test]
async fn current_sidecar_is_only_asked_the_stable_names() {
    let fake = FakeDapr::new(Serves::Stable);
    let sidecar = start(fake.clone()).await;
    let client = Client::connect(sidecar.addr.clone()).await.unwrap();
    every_call_works(&client).await;
    assert!(fake.methods().iter().all(|m| !m.ends_with("Alpha1")), "{:?}", fake.methods());
}

#[tokio::test]
async fn errors_keep_the_sidecars_code_and_message() {
    let fake = FakeDapr::new(Serves::Stable);
    let sidecar = start(fake.clone()).await;
    let client = Client::connect(sidecar.addr.clone()).await.unwrap();

    client.schedule_job(Job::new("j").schedule("@every 1s"), false).await.unwrap();
    let err = client.schedule_job(Job::new("j").schedule("@every 2s"), false).await.unwrap_err();
    assert!(err.is_already_exists(), "{err}");
    assert_eq!(err.code(), Some(Code::AlreadyExists));
    assert!(err.status().unwrap().message().contains("job already exists"), "{err}");
    assert!(err.to_string().starts_with("schedule job failed: "), "{err}");
    assert!(!err.is_invalid());
    // overwrite = true replaces it.
    client.schedule_job(Job::new("j").schedule("@every 2s"), true).await.unwrap();
    assert_eq!(client.get_job("j").await.unwrap().schedule.as_deref(), Some("@every 2s"));

    let err = client.schedule_job(Job::new("nothing"), false).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::InvalidArgument));
    assert!(err.is_invalid() && !err.is_already_exists(), "{err}");

    let err =
        client.schedule_job(Job::new("zero").schedule("@every 1s").repeats(0), false).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::Internal));
    assert!(err.is_invalid(), "{err}");

    let err = client.get_job("missing").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!err.is_already_exists());
}

#[tokio::test]
async fn empty_prefix_is_refused_without_a_call() {
    let fake = FakeDapr::new(Serves::Stable);
    let sidecar = start(fake.clone()).await;
    let client = Client::connect(sidecar.addr.clone()).await.unwrap();
    let err = client.delete_jobs_by_prefix("").await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(fake.calls().is_empty());
    client.delete_all_jobs().await.unwrap();
    assert_eq!(fake.calls()[0].request, Recorded::DeleteByPrefix(None));
}

#[tokio::test]
async fn tls_endpoint_is_refused_before_dialling() {
    let err = Client::connect("https://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(err, Error::TlsNotSupported(_)), "{err}");
    assert!(err.to_string().contains("TLS, which is not supported yet"), "{err}");
}

#[tokio::test]
async fn unreachable_sidecar_is_a_connect_error() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let config = ClientConfig::new(format!("127.0.0.1:{port}")).with_connect_timeout(Duration::from_secs(2));
    let err = Client::connect_with(config).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err}");
}
