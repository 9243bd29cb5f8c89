//! The sidecar's steering routes and service against a scheduler reached over gRPC: a fake
//! `kairos.admin.v1.Admin` (what a kairos scheduler serves) that records what it is asked, and a
//! server with no Admin at all (what an upstream Dapr scheduler is). The real scheduler is
//! exercised by the process tests of the `kairos` crate.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kairos_proto::admin::admin_server::{Admin, AdminServer};
use kairos_proto::admin::{
    GetJobStatusRequest, GetJobStatusResponse, JobRef, JobState, JobStatus, JobStatusEntry,
    ListJobStatusRequest, ListJobStatusResponse, PauseJobRequest, PauseJobResponse, StoredJob,
};
use kairos_proto::steer::steering_client::SteeringClient;
use kairos_proto::steer::{GetJobStatusRequest as AppStatusRequest, ListJobStatusRequest as AppListRequest};
use kairos_sidecar::scheduler_link::SchedulerLink;
use kairos_sidecar::server::{Sidecar, SidecarConfig};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tonic::{Code, Request, Response, Status};

/// Jobs of two apps, `app-a` and `app-b`; every request is recorded.
#[derive(Debug, Default)]
struct FakeAdmin {
    seen: Mutex<Vec<String>>,
}

fn job(app: &str, name: &str) -> StoredJob {
    StoredJob {
        r#ref: Some(JobRef {
            name: name.into(),
            metadata: Some(kairos_testing::grpc::job_metadata("default", app)),
        }),
        job: Some(kairos_proto::scheduler::Job { schedule: Some("@every 1h".into()), ..Default::default() }),
        ..Default::default()
    }
}

fn status(state: JobState) -> JobStatus {
    JobStatus {
        state: state as i32,
        paused: state == JobState::Paused,
        ticks: 2,
        fired: 3,
        ..Default::default()
    }
}

/// What the fake holds: `(app, name)`.
const JOBS: [(&str, &str); 2] = [("app-a", "a-job"), ("app-b", "b-job")];

impl FakeAdmin {
    fn find(&self, what: &str, r: Option<JobRef>) -> Result<(String, String), Status> {
        let r = r.ok_or_else(|| Status::invalid_argument("ref is required"))?;
        let metadata = r.metadata.unwrap_or_default();
        self.seen
            .lock()
            .unwrap()
            .push(format!("{what} {}/{}/{}", metadata.namespace, metadata.app_id, r.name));
        JOBS.iter()
            .find(|(app, name)| *app == metadata.app_id && *name == r.name && metadata.namespace == "default")
            .map(|(app, name)| ((*app).to_owned(), (*name).to_owned()))
            .ok_or_else(|| Status::not_found(format!("job not found: '{}'", r.name)))
    }
}

#[tonic::async_trait]
impl Admin for FakeAdmin {
    async fn get_job_status(
        &self,
        request: Request<GetJobStatusRequest>,
    ) -> Result<Response<GetJobStatusResponse>, Status> {
        let (app, name) = self.find("status", request.into_inner().r#ref)?;
        Ok(Response::new(GetJobStatusResponse {
            job: Some(job(&app, &name)),
            status: Some(status(JobState::Scheduled)),
        }))
    }

    async fn pause_job(
        &self,
        request: Request<PauseJobRequest>,
    ) -> Result<Response<PauseJobResponse>, Status> {
        self.find("pause", request.into_inner().r#ref)?;
        Ok(Response::new(PauseJobResponse { status: Some(status(JobState::Paused)) }))
    }

    /// Lists every app's jobs whatever the owner asked: the sidecar must still show only its own.
    async fn list_job_status(
        &self,
        request: Request<ListJobStatusRequest>,
    ) -> Result<Response<ListJobStatusResponse>, Status> {
        let request = request.into_inner();
        let owner = request.owner.unwrap_or_default();
        self.seen.lock().unwrap().push(format!(
            "list {}/{} prefix={} state={} size={} after={:?}",
            owner.namespace,
            owner.app_id,
            request.name_prefix,
            request.state,
            request.page_size,
            request.after.map(|r| r.name)
        ));
        let jobs = JOBS
            .iter()
            .map(|(app, name)| JobStatusEntry {
                job: Some(job(app, name)),
                status: Some(status(JobState::Scheduled)),
            })
            .collect();
        let next_after = Some(JobRef { name: "a-job".into(), metadata: Some(owner) });
        Ok(Response::new(ListJobStatusResponse { jobs, next_after }))
    }
}

/// Serves `admin` (or no Admin service at all) on a loopback port.
async fn scheduler(admin: Option<Arc<FakeAdmin>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_, health) = tonic_health::server::health_reporter();
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_optional_service(admin.map(AdminServer::from_arc));
    tokio::spawn(router.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    address
}

async fn sidecar(app: &str, scheduler: SocketAddr, token: Option<&str>) -> Sidecar {
    let mut config = SidecarConfig::new(app);
    config.api_token = token.map(str::to_owned);
    config.scheduler_wait = Duration::from_secs(5);
    let link = SchedulerLink::remote(&[scheduler.to_string()]).unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    Sidecar::start_on(config, link, http, grpc).unwrap()
}

async fn call(method: reqwest::Method, url: String, token: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, url).timeout(Duration::from_secs(10));
    if let Some(token) = token {
        request = request.header("dapr-api-token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("dapr-api-token", token.parse().unwrap());
    request
}

#[tokio::test]
async fn an_app_steers_only_its_own_jobs_over_http_and_grpc_behind_its_token() {
    let admin = Arc::new(FakeAdmin::default());
    let sidecar = sidecar("app-a", scheduler(Some(admin.clone())).await, Some("s3cret")).await;
    let base = format!("http://{}/v1.0-kairos/jobs", sidecar.http_addr());
    let token = Some("s3cret");

    let (code, body) = call(reqwest::Method::GET, format!("{base}/a-job/status"), token).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "job": {"name": "a-job", "schedule": "@every 1h"},
            "status": {"state": "scheduled", "paused": false, "ticks": 2, "fired": 3, "successes": 0, "failures": 0, "attempt": 0},
        })
    );
    // app-b's job, asked by app-a, is looked up under app-a: not found.
    let (code, body) = call(reqwest::Method::GET, format!("{base}/b-job/status"), token).await;
    assert_eq!((code, &body["errorCode"]), (404, &json!("KAIROS_JOB_NOT_FOUND")), "{body}");
    let (code, body) = call(reqwest::Method::POST, format!("{base}/b-job/pause"), token).await;
    assert_eq!((code, &body["errorCode"]), (404, &json!("KAIROS_JOB_NOT_FOUND")), "{body}");
    let (code, body) = call(reqwest::Method::POST, format!("{base}/a-job/pause"), token).await;
    assert_eq!((code, &body["status"]["state"]), (200, &json!("paused")), "{body}");

    // The list shows app-a's jobs only, even when the scheduler answers with more.
    let (code, body) =
        call(reqwest::Method::GET, format!("{base}?prefix=a-&state=paused&pageSize=10&after=0"), token).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["jobs"][0]["job"]["name"], "a-job");
    assert_eq!(body["nextAfter"], "a-job");
    let (code, body) = call(reqwest::Method::GET, format!("{base}?state=asleep"), token).await;
    assert_eq!((code, &body["errorCode"]), (400, &json!("KAIROS_INVALID_REQUEST")), "{body}");

    // No token, or a wrong one: 401, and the scheduler is never asked.
    let asked = admin.seen.lock().unwrap().len();
    assert_eq!(call(reqwest::Method::GET, format!("{base}/a-job/status"), None).await.0, 401);
    assert_eq!(call(reqwest::Method::POST, format!("{base}/a-job/pause"), Some("wrong")).await.0, 401);
    assert_eq!(call(reqwest::Method::GET, base.clone(), None).await.0, 401);

    // gRPC: the same service, the same scoping, the same token.
    let mut client = SteeringClient::connect(format!("http://{}", sidecar.grpc_addr())).await.unwrap();
    let unauthenticated = client.get_job_status(AppStatusRequest { name: "a-job".into() }).await.unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    assert_eq!(admin.seen.lock().unwrap().len(), asked, "refused calls never reach the scheduler");
    let response = client
        .get_job_status(with_token(AppStatusRequest { name: "a-job".into() }, "s3cret"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.job.unwrap().name, "a-job");
    assert_eq!(response.status.unwrap().state, JobState::Scheduled as i32);
    let missing = client
        .get_job_status(with_token(AppStatusRequest { name: "b-job".into() }, "s3cret"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let page = client
        .list_job_status(with_token(
            AppListRequest { name_prefix: "a".into(), ..Default::default() },
            "s3cret",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        page.jobs.iter().map(|e| e.job.as_ref().unwrap().name.as_str()).collect::<Vec<_>>(),
        ["a-job"]
    );
    assert_eq!(page.next_after, "a-job");

    // Every call the scheduler saw named app-a in the default namespace.
    let seen = admin.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "status default/app-a/a-job",
            "status default/app-a/b-job",
            "pause default/app-a/b-job",
            "pause default/app-a/a-job",
            "list default/app-a prefix=a- state=2 size=10 after=Some(\"0\")",
            "status default/app-a/a-job",
            "status default/app-a/b-job",
            "list default/app-a prefix=a state=0 size=0 after=None",
        ]
    );
    sidecar.shutdown().await;
}

#[tokio::test]
async fn a_scheduler_without_steering_gets_a_clear_501_and_unimplemented() {
    let sidecar = sidecar("app-a", scheduler(None).await, None).await;
    let base = format!("http://{}/v1.0-kairos/jobs", sidecar.http_addr());
    for (method, url) in [
        (reqwest::Method::GET, format!("{base}/a-job/status")),
        (reqwest::Method::GET, format!("{base}/a-job/history?limit=5")),
        (reqwest::Method::POST, format!("{base}/a-job/resume")),
        (reqwest::Method::POST, format!("{base}/a-job/trigger")),
        (reqwest::Method::GET, base.clone()),
    ] {
        let (code, body) = call(method, url.clone(), None).await;
        assert_eq!((code, &body["errorCode"]), (501, &json!("KAIROS_STEERING_UNAVAILABLE")), "{url}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("does not offer job steering"), "{url}: {message}");
    }
    let mut client = SteeringClient::connect(format!("http://{}", sidecar.grpc_addr())).await.unwrap();
    let err = client.get_job_status(AppStatusRequest { name: "a-job".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(err.message().contains("does not offer job steering"), "{err:?}");
    // Dapr's own routes are untouched by the new prefix: its job API still answers as Dapr's.
    let (code, _) =
        call(reqwest::Method::GET, format!("http://{}/v1.0/healthz/outbound", sidecar.http_addr()), None)
            .await;
    assert_eq!(code, 204);
    sidecar.shutdown().await;
}
