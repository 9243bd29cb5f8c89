//! Hostile input against real `kairos scheduler` and `kairos sidecar` processes: every HTTP
//! route and every gRPC route (runtime Jobs API, Scheduler, admin) gets invalid JSON, wrong
//! types, huge numbers and strings, odd Unicode and path tricks in names. Each gets the status
//! and Dapr error code of spec §2.4 / §7.3 / §7.8, both processes stay up, and a full listing of
//! the store before and after shows no stored job changed.

#![allow(deprecated)] // the Alpha1 RPCs are deprecated, and still served

mod common;

use std::time::Duration;

use kairos_proto::admin::admin_client::AdminClient;
use kairos_proto::admin::{self, ImportJobsRequest, JobRef, ListAllJobsRequest};
use kairos_proto::common::{JobFailurePolicy, JobFailurePolicyConstant, job_failure_policy};
use kairos_proto::runtime::dapr_client::DaprClient;
use kairos_proto::runtime::{self as rt};
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::watch_jobs_request::WatchJobRequestType;
use kairos_proto::scheduler::{self as sched, JobMetadata};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic::transport::Channel;

const APP: &str = "hostile";

use common::job_metadata as metadata;

/// One HTTP/1.1 request written byte for byte (no client-side path normalisation); returns the
/// status and body.
async fn raw_http(address: &str, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // A body over the limit may be refused before it is all written.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status =
        text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text:?}"));
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// Every stored job, with its progress.
async fn snapshot(admin: &mut AdminClient<Channel>) -> Vec<admin::StoredJob> {
    common::all_jobs(admin).await
}

fn assert_status(
    what: &str,
    result: Result<impl std::fmt::Debug, tonic::Status>,
    code: Code,
    reason: Option<&str>,
) {
    let status = match result {
        Ok(ok) => panic!("{what}: accepted ({ok:?}), expected {code:?}"),
        Err(status) => status,
    };
    assert_eq!(status.code(), code, "{what}: {status:?}");
    assert!(status.message().len() < 8192, "{what}: a {}-byte message", status.message().len());
    if let Some(reason) = reason {
        // The google.rpc.ErrorInfo in the details carries the Dapr error code as its reason.
        let details = String::from_utf8_lossy(status.details());
        assert!(details.contains(reason), "{what}: no {reason} in the details of {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_the_spec_error_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut scheduler = common::start_scheduler(dir.path(), &["--partitions", "4"]);
    let mut sidecar = common::start_sidecar(APP, &scheduler.address, &[], &[]);
    let http = sidecar.http.clone();
    let mut admin = AdminClient::connect(format!("http://{}", scheduler.address)).await.unwrap();

    // Jobs that must survive everything below unchanged (an hour away: no tick moves them).
    for name in ["keep-1", "keep-2", "victim"] {
        let (status, body) =
            raw_http(&http, "POST", &format!("/v1.0/jobs/{name}"), br#"{"schedule":"@every 1h","data":"x"}"#)
                .await;
        assert_eq!(status, 204, "{body}");
    }
    let before = snapshot(&mut admin).await;
    assert_eq!(before.len(), 3);

    // ---- HTTP ----
    let long_name = "n".repeat(600);
    let huge_schedule = format!(r#"{{"schedule":"@every {}"}}"#, "9".repeat(1_000_000));
    let deep = format!(r#"{{"schedule":"@every 1h","data":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    let over_limit = format!(r#"{{"schedule":"@every 1h","data":"{}"}}"#, "x".repeat(5 * 1024 * 1024));
    let malformed = "ERR_MALFORMED_REQUEST";
    let schedule_job = "DAPR_SCHEDULER_SCHEDULE_JOB";
    let post_cases: Vec<(&str, &[u8], u16, &str)> = vec![
        // invalid JSON and wrong types
        ("victim", b"{", 400, malformed),
        ("victim", b"[{}]", 400, malformed),
        ("victim", b"null", 400, malformed),
        ("victim", b"\xff\xfe{}", 400, malformed),
        ("victim", br#"{"schedule":5}"#, 400, malformed),
        ("victim", br#"{"schedule":"@every 1s","repeats":"abc"}"#, 400, malformed),
        ("victim", br#"{"schedule":"@every 1s","repeats":-1}"#, 400, malformed),
        ("victim", br#"{"schedule":"@every 1s","overwrite":"yes"}"#, 400, malformed),
        ("victim", br#"{"schedule":"@every 1s","failurePolicy":{"constant":{"interval":"1m"}}}"#, 400, malformed),
        ("victim", br#"{"schedule":"@every 1s","failurePolicy":"drop"}"#, 400, malformed),
        ("victim", br#"{"schedule":"@every 1s","schedule":"@every 2s"}"#, 400, malformed),
        // huge numbers
        ("victim", br#"{"schedule":"@every 1s","repeats":4294967296,"overwrite":true}"#, 400, malformed),
        ("victim", br#"{"schedule":"@every 1s","repeats":1e400,"overwrite":true}"#, 400, malformed),
        (
            "victim",
            br#"{"schedule":"@every 1s","overwrite":true,"failurePolicy":{"constant":{"interval":"99999999999999999999s"}}}"#,
            400,
            malformed,
        ),
        ("victim", br#"{"dueTime":"99999999999h","overwrite":true}"#, 500, schedule_job),
        ("victim", br#"{"schedule":"@every 9999999999999999999h","overwrite":true}"#, 500, schedule_job),
        ("victim", br#"{"dueTime":"P99999999999999999999Y","overwrite":true}"#, 500, schedule_job),
        ("victim", br#"{"schedule":"@every 1h","ttl":"-99999999999999h","overwrite":true}"#, 500, schedule_job),
        // huge strings and nesting
        ("victim", huge_schedule.as_bytes(), 500, schedule_job),
        ("victim", deep.as_bytes(), 400, malformed),
        ("victim", over_limit.as_bytes(), 400, "ERR_BODY_READ"),
        // odd Unicode in values
        ("victim", br#"{"schedule":"@every 1s\u0000","overwrite":true}"#, 500, schedule_job),
        ("victim", br#"{"schedule":"\ud800"}"#, 400, malformed),
        ("victim", br#"{"schedule":"@every 1h","data":"\udc00\ud800"}"#, 400, malformed),
        ("victim", "{\"schedule\":\"@every 1h\u{202e}\",\"overwrite\":true}".as_bytes(), 500, schedule_job),
        ("victim", r#"{"schedule":"TZ=../../etc/passwd 0 0 0 * * *","overwrite":true}"#.as_bytes(), 500, schedule_job),
        ("victim", "{\"schedule\":\"😀 * * * * *\",\"overwrite\":true}".as_bytes(), 500, schedule_job),
        // the name belongs in the URL; a schedule is needed
        ("victim", br#"{"name":"other","schedule":"@every 1s"}"#, 400, "DAPR_SCHEDULER_JOB_NAME"),
        ("victim", b"", 400, "DAPR_SCHEDULER_SCHEDULE_EMPTY"),
        ("victim", br#"{"overwrite":true}"#, 400, "DAPR_SCHEDULER_SCHEDULE_EMPTY"),
        // an existing name without overwrite
        ("victim", br#"{"schedule":"@every 1s"}"#, 409, schedule_job),
        // path tricks in the name (a bad name fails at the scheduler: §7.8)
        ("..", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("%2E%2E", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        (".", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("a%2Fb", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("..%2F..%2Fetc", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("a%5Cb", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("a%23b", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("a%3Fb", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("a%00b", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("a%0Ab", br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        (&long_name, br#"{"schedule":"@every 1s"}"#, 500, schedule_job),
        ("%20%20", br#"{"schedule":"@every 1s"}"#, 400, "DAPR_SCHEDULER_JOB_NAME_EMPTY"),
        // not UTF-8 once decoded: refused before the scheduler, with the route's code
        ("%FF", br#"{"schedule":"@every 1s"}"#, 400, schedule_job),
        ("%ED%A0%80", br#"{"schedule":"@every 1s"}"#, 400, schedule_job),
    ];
    for prefix in ["/v1.0", "/v1.0-alpha1"] {
        for (name, body, status, code) in &post_cases {
            let path = format!("{prefix}/jobs/{name}");
            let (got, text) = raw_http(&http, "POST", &path, body).await;
            let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
            assert_eq!(
                got,
                *status,
                "POST {}… {shown}: {}",
                &path[..path.len().min(80)],
                &text[..text.len().min(300)]
            );
            assert!(
                text.contains(&format!(r#""errorCode":"{code}""#)),
                "POST {path:.80} {shown}: {text:.300}"
            );
        }
        let get_cases = ["..", "a%2Fb", "a%00b", &long_name, "unknown", "%FF"];
        for name in get_cases {
            let path = format!("{prefix}/jobs/{name}");
            let (got, text) = raw_http(&http, "GET", &path, b"").await;
            assert_eq!(got, 500, "GET {path:.80}: {text:.300}");
            assert!(text.contains(r#""errorCode":"DAPR_SCHEDULER_GET_JOB""#), "GET {path:.80}: {text:.300}");
        }
        // Deleting a name that cannot exist is a success (as deleting an unknown job is) or a
        // DELETE_JOB error; never a deletion of something else.
        for name in ["..", "a%2Fb", "unknown", &long_name, "vic%74im%00"] {
            let path = format!("{prefix}/jobs/{name}");
            let (got, text) = raw_http(&http, "DELETE", &path, b"").await;
            assert!(
                got == 204 || (got == 500 && text.contains(r#""errorCode":"DAPR_SCHEDULER_DELETE_JOB""#)),
                "DELETE {path:.80}: {got} {text:.300}"
            );
        }
        let (got, text) = raw_http(&http, "DELETE", &format!("{prefix}/jobs/%FF"), b"").await;
        assert_eq!(got, 500, "{text}");
        assert!(text.contains(r#""errorCode":"DAPR_SCHEDULER_DELETE_JOB""#), "{text}");
        // no job route without a name, nor below one
        for (method, path) in [("POST", "jobs"), ("GET", "jobs/"), ("GET", "jobs/victim/../keep-1/x")] {
            let (got, _) = raw_http(&http, method, &format!("{prefix}/{path}"), b"{}").await;
            assert_eq!(got, 404, "{method} {prefix}/{path}");
        }
    }
    // health routes: odd queries and methods
    assert_eq!(raw_http(&http, "GET", "/v1.0/healthz/outbound?%00=%FF", b"").await.0, 204);
    assert_eq!(raw_http(&http, "POST", "/v1.0/healthz", b"{").await.0, 405);
    assert_eq!(raw_http(&http, "DELETE", "/v1.0/healthz/outbound", b"").await.0, 405);

    // Valid but odd names round-trip and leave again (§7.8, v1.18.3 rules).
    for name in ["%E2%80%AEright-to-left", "%F0%9F%98%80", "my%7C%7Cjob%40name", "%EF%BB%BFbom", "in%09side"]
    {
        let path = format!("/v1.0/jobs/{name}");
        let (got, text) = raw_http(&http, "POST", &path, br#"{"schedule":"@every 1h"}"#).await;
        if name == "in%09side" {
            // A tab inside a name is a control character: a bad name (around it, it is trimmed).
            assert_eq!(got, 500, "{text}");
            continue;
        }
        assert_eq!(got, 204, "POST {path}: {text}");
        let (got, text) = raw_http(&http, "GET", &path, b"").await;
        assert_eq!(got, 200, "GET {path}: {text}");
        assert_eq!(raw_http(&http, "DELETE", &path, b"").await.0, 204);
    }

    // ---- gRPC: the runtime Jobs API of the sidecar ----
    let mut dapr = DaprClient::connect(format!("http://{}", sidecar.grpc)).await.unwrap();
    let job = |name: &str, schedule: Option<&str>| rt::Job {
        name: name.into(),
        schedule: schedule.map(str::to_owned),
        ..Default::default()
    };
    let schedule = |job: Option<rt::Job>| rt::ScheduleJobRequest { job, overwrite: true };
    let huge = format!("@every {}", "9".repeat(1_000_000));
    let grpc_cases: Vec<(&str, rt::ScheduleJobRequest, Code, &str)> = vec![
        ("no job", schedule(None), Code::InvalidArgument, "DAPR_SCHEDULER_EMPTY"),
        (
            "empty name",
            schedule(Some(job("", Some("@every 1s")))),
            Code::InvalidArgument,
            "DAPR_SCHEDULER_JOB_NAME_EMPTY",
        ),
        (
            "no schedule",
            schedule(Some(job("victim", None))),
            Code::InvalidArgument,
            "DAPR_SCHEDULER_SCHEDULE_EMPTY",
        ),
        ("NUL name", schedule(Some(job("vic\0tim", Some("@every 1s")))), Code::Internal, schedule_job),
        ("dot-dot", schedule(Some(job("..", Some("@every 1s")))), Code::Internal, schedule_job),
        ("slash", schedule(Some(job("../victim", Some("@every 1s")))), Code::Internal, schedule_job),
        ("long name", schedule(Some(job(&long_name, Some("@every 1s")))), Code::Internal, schedule_job),
        ("huge schedule", schedule(Some(job("victim", Some(&huge)))), Code::Internal, schedule_job),
        ("bad cron", schedule(Some(job("victim", Some("* * * * *")))), Code::Internal, schedule_job),
        (
            "interval out of range",
            schedule(Some(rt::Job {
                failure_policy: Some(JobFailurePolicy {
                    policy: Some(job_failure_policy::Policy::Constant(JobFailurePolicyConstant {
                        interval: Some(prost_types::Duration { seconds: 1, nanos: 2_000_000_000 }),
                        max_retries: None,
                    })),
                }),
                ..job("victim", Some("@every 1s"))
            })),
            Code::InvalidArgument,
            // a legacy error: no ErrorInfo details over gRPC
            "",
        ),
        (
            "zero repeats",
            schedule(Some(rt::Job { repeats: Some(0), ..job("victim", Some("@every 1s")) })),
            Code::Internal,
            schedule_job,
        ),
    ];
    for (what, request, code, reason) in grpc_cases {
        let reason = Some(reason).filter(|r| !r.is_empty());
        assert_status(what, dapr.schedule_job(request.clone()).await, code, reason);
        assert_status(what, dapr.schedule_job_alpha1(request).await, code, reason);
    }
    let get_job = "DAPR_SCHEDULER_GET_JOB";
    let get_cases = [
        ("", Code::InvalidArgument, "DAPR_SCHEDULER_JOB_NAME_EMPTY"),
        ("unknown", Code::Internal, get_job),
        ("a\0b", Code::Internal, get_job),
        (long_name.as_str(), Code::Internal, get_job),
        ("../victim", Code::Internal, get_job),
    ];
    for (name, code, reason) in get_cases {
        let request = rt::GetJobRequest { name: name.into() };
        let what = format!("get {:?}", name.get(..20).unwrap_or(name));
        assert_status(&what, dapr.get_job(request.clone()).await, code, Some(reason));
        assert_status(&format!("{what} α"), dapr.get_job_alpha1(request).await, code, Some(reason));
    }
    let delete_job = Some("DAPR_SCHEDULER_DELETE_JOB");
    let bad = rt::DeleteJobRequest { name: "a\0b".into() };
    assert_status("delete", dapr.delete_job(bad.clone()).await, Code::Internal, delete_job);
    assert_status("delete α", dapr.delete_job_alpha1(bad).await, Code::Internal, delete_job);
    for prefix in ["a/", "\0", "x\\"] {
        let request = rt::DeleteJobsByPrefixRequest { name_prefix: Some(prefix.into()) };
        let result = dapr.delete_jobs_by_prefix(request).await;
        assert_status("delete by prefix", result, Code::Internal, Some("DAPR_SCHEDULER_DELETE_JOB"));
        let request = rt::DeleteJobsByPrefixRequestAlpha1 { name_prefix: Some(prefix.into()) };
        let result = dapr.delete_jobs_by_prefix_alpha1(request).await;
        assert_status("delete by prefix α", result, Code::Internal, Some("DAPR_SCHEDULER_DELETE_JOB"));
    }
    assert_eq!(dapr.list_jobs(rt::ListJobsRequest {}).await.unwrap().into_inner().jobs.len(), 3);
    assert_eq!(dapr.list_jobs_alpha1(rt::ListJobsRequestAlpha1 {}).await.unwrap().into_inner().jobs.len(), 3);

    // ---- gRPC: the Scheduler service ----
    let mut sch = SchedulerClient::connect(format!("http://{}", scheduler.address)).await.unwrap();
    let app = metadata("default", APP);
    let sjob = |schedule: &str| Some(sched::Job { schedule: Some(schedule.into()), ..Default::default() });
    let sreq = |name: &str, metadata: Option<JobMetadata>, job| sched::ScheduleJobRequest {
        name: name.into(),
        job,
        metadata,
        overwrite: true,
    };
    let scheduler_cases = vec![
        ("no metadata", sreq("victim", None, sjob("@every 1s")), Code::InvalidArgument),
        (
            "empty namespace",
            sreq("victim", Some(metadata("", APP)), sjob("@every 1s")),
            Code::InvalidArgument,
        ),
        (
            "empty app",
            sreq("victim", Some(metadata("default", "")), sjob("@every 1s")),
            Code::InvalidArgument,
        ),
        (
            "newline app",
            sreq("victim", Some(metadata("default", "a\nb")), sjob("@every 1s")),
            Code::InvalidArgument,
        ),
        ("NUL name", sreq("vic\0tim", Some(app.clone()), sjob("@every 1s")), Code::Unknown),
        ("dot-dot name", sreq("..", Some(app.clone()), sjob("@every 1s")), Code::Unknown),
        ("no job", sreq("victim", Some(app.clone()), None), Code::Unknown),
        ("huge schedule", sreq("victim", Some(app.clone()), sjob(&huge)), Code::Unknown),
        ("emoji schedule", sreq("victim", Some(app.clone()), sjob("@every 😀")), Code::Unknown),
    ];
    for (what, request, code) in scheduler_cases {
        assert_status(what, sch.schedule_job(request).await, code, None);
    }
    let get = sched::GetJobRequest { name: "victim".into(), metadata: None };
    assert_status("get without metadata", sch.get_job(get).await, Code::InvalidArgument, None);
    let get = sched::GetJobRequest { name: "victim".into(), metadata: Some(metadata("default", "other")) };
    assert_status("another app's job", sch.get_job(get).await, Code::NotFound, None);
    let list = sched::ListJobsRequest { metadata: None };
    assert_status("list without metadata", sch.list_jobs(list).await, Code::InvalidArgument, None);
    let del = sched::DeleteJobRequest { name: "victim".into(), metadata: None };
    assert_status("delete without metadata", sch.delete_job(del).await, Code::InvalidArgument, None);
    let del = sched::DeleteByMetadataRequest { metadata: None, id_prefix_match: None };
    assert_status("delete by metadata", sch.delete_by_metadata(del).await, Code::InvalidArgument, None);
    let del = sched::DeleteByNamePrefixRequest { name_prefix: "v".into(), metadata: None };
    assert_status("delete by prefix", sch.delete_by_name_prefix(del).await, Code::InvalidArgument, None);
    let del = sched::DeleteByNamePrefixRequest { name_prefix: "v/".into(), metadata: Some(app.clone()) };
    assert_status("delete by bad prefix", sch.delete_by_name_prefix(del).await, Code::Unknown, None);
    let first = sched::WatchJobsRequest {
        watch_job_request_type: Some(WatchJobRequestType::Result(sched::WatchJobsRequestResult {
            id: 1,
            status: 0,
        })),
    };
    let stream = futures::stream::iter(vec![first]);
    assert_status(
        "watch without initial",
        sch.watch_jobs(stream).await.map(|_| ()),
        Code::InvalidArgument,
        None,
    );

    // ---- gRPC: the admin service ----
    let victim = || JobRef { name: "victim".into(), metadata: Some(app.clone()) };
    assert_status(
        "admin get no ref",
        admin.get_job(admin::GetJobRequest { r#ref: None }).await,
        Code::InvalidArgument,
        None,
    );
    let bad_ref = JobRef { name: "victim".into(), metadata: Some(metadata("", APP)) };
    let request = ListAllJobsRequest { after: Some(bad_ref.clone()), page_size: 0 };
    assert_status("admin list bad after", admin.list_all_jobs(request).await, Code::InvalidArgument, None);
    let request = admin::DeleteJobRequest { r#ref: Some(bad_ref) };
    assert_status("admin delete bad ref", admin.delete_job(request).await, Code::InvalidArgument, None);
    let mut exported = admin
        .get_job(admin::GetJobRequest { r#ref: Some(victim()) })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    exported.r#ref = Some(JobRef { name: "imported".into(), metadata: Some(app.clone()) });
    let with = |f: &dyn Fn(&mut admin::StoredJob)| {
        let mut job = exported.clone();
        f(&mut job);
        job
    };
    let import_cases: Vec<(&str, Vec<admin::StoredJob>, i32)> = vec![
        ("negative nanos", vec![with(&|j| j.created.as_mut().unwrap().nanos = -1)], 0),
        ("out of range", vec![with(&|j| j.next_due.as_mut().unwrap().seconds = i64::MAX)], 0),
        ("no created", vec![with(&|j| j.created = None)], 0),
        ("bad schedule", vec![with(&|j| j.job.as_mut().unwrap().schedule = Some("nope".into()))], 0),
        ("bad name", vec![with(&|j| j.r#ref.as_mut().unwrap().name = "a/b".into())], 0),
        ("twice", vec![exported.clone(), exported.clone()], 0),
        ("unknown on_conflict", vec![exported.clone()], 99),
        // one good and one bad job: nothing is stored
        ("good then bad", vec![exported.clone(), with(&|j| j.r#ref.as_mut().unwrap().name = "\0".into())], 2),
    ];
    for (what, jobs, on_conflict) in import_cases {
        let request = ImportJobsRequest { jobs, on_conflict, dry_run: false };
        assert_status(what, admin.import_jobs(request).await, Code::InvalidArgument, None);
    }
    let taken = with(&|j| j.r#ref = Some(victim()));
    let request = ImportJobsRequest { jobs: vec![taken], on_conflict: 0, dry_run: false };
    assert_status("import over a taken name", admin.import_jobs(request).await, Code::AlreadyExists, None);

    // ---- nothing changed, and both processes are up ----
    assert_eq!(snapshot(&mut admin).await, before, "a hostile request changed the store");
    assert_eq!(raw_http(&http, "GET", "/v1.0/healthz/outbound", b"").await.0, 204);
    assert!(scheduler.child.try_wait().unwrap().is_none(), "the scheduler died");
    assert!(sidecar.child.try_wait().unwrap().is_none(), "the sidecar died");
    let (status, _) = raw_http(&http, "GET", "/v1.0/jobs/keep-1", b"").await;
    assert_eq!(status, 200);
    scheduler.kill9();
    drop(sidecar);
}
