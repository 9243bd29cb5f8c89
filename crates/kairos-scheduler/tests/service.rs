//! The Scheduler gRPC service over real loopback connections: CRUD with upstream's codes and
//! texts, and WatchJobs streams (spec §5, §4.3, §7.7).

use std::sync::Arc;
use std::time::Duration;

use jiff::SignedDuration;
use kairos_core::{JobKey, ManualClock, Owner};
use kairos_proto::common::{JobFailurePolicy, JobFailurePolicyConstant, job_failure_policy};
use kairos_proto::convert::metadata_of;
use kairos_proto::scheduler::scheduler_client::SchedulerClient;
use kairos_proto::scheduler::watch_jobs_request::WatchJobRequestType;
use kairos_proto::scheduler::{
    DeleteByMetadataRequest, DeleteByNamePrefixRequest, DeleteJobRequest, GetJobRequest, Job, JobMetadata,
    JobTargetType, ListJobsRequest, ScheduleJobRequest, TargetActorReminder, WatchHostsRequest,
    WatchJobsRequest, WatchJobsRequestInitial, WatchJobsRequestResult, WatchJobsRequestResultStatus,
    WatchJobsResponse, job_target_metadata,
};
use kairos_scheduler::SchedulerService;
use kairos_store::StoreFault;
use kairos_store::memory::MemoryStore;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

mod common;

struct Server {
    client: SchedulerClient<Channel>,
    clock: ManualClock,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

impl Server {
    /// `GetJob` of `name` under `metadata`: the job, or the status it was refused with.
    async fn get(&mut self, name: &str, metadata: JobMetadata) -> Result<Job, tonic::Status> {
        let request = GetJobRequest { name: name.into(), metadata: Some(metadata) };
        Ok(self.client.get_job(request).await?.into_inner().job.expect("a found job is returned"))
    }
}

async fn server() -> Server {
    server_over(Arc::new(MemoryStore::new(8))).await
}

async fn server_over(store: Arc<MemoryStore>) -> Server {
    let (engine, clock) = common::manual_engine(store);
    let (_, hosts) = tokio::sync::watch::channel(vec!["scheduler-0:50006".to_owned()]);
    let api: Arc<dyn kairos_proto::api::SchedulerApi> = Arc::new(SchedulerService::new(engine, hosts));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(kairos_scheduler::serve(api, listener, async {
        let _ = rx.await;
    }));
    let client = SchedulerClient::connect(format!("http://{address}")).await.unwrap();
    Server { client, clock, _shutdown: tx }
}

fn owned_by(owner: Owner) -> JobMetadata {
    metadata_of(&JobKey { namespace: "default".into(), owner, name: String::new() })
}

fn app(app_id: &str) -> JobMetadata {
    owned_by(Owner::app(app_id))
}

/// An actor reminder as a sidecar sends it: with its own app id beside the actor that owns it.
fn actor(actor_type: &str, id: &str) -> JobMetadata {
    JobMetadata { app_id: "host-app".into(), ..owned_by(Owner::actor(actor_type, id)) }
}

fn schedule(name: &str, metadata: JobMetadata, job: Job) -> ScheduleJobRequest {
    ScheduleJobRequest { name: name.into(), job: Some(job), metadata: Some(metadata), overwrite: false }
}

fn due_now() -> Job {
    Job { due_time: Some("0s".into()), ..Job::default() }
}

fn far() -> Job {
    Job { due_time: Some("1h".into()), ..Job::default() }
}

struct Watch {
    tx: mpsc::Sender<WatchJobsRequest>,
    inbound: Streaming<WatchJobsResponse>,
}

impl Watch {
    async fn open(client: &SchedulerClient<Channel>, initial: WatchJobsRequestInitial) -> Watch {
        let (tx, rx) = mpsc::channel(64);
        tx.send(WatchJobsRequest { watch_job_request_type: Some(WatchJobRequestType::Initial(initial)) })
            .await
            .unwrap();
        let outbound = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        let inbound = client.clone().watch_jobs(outbound).await.unwrap().into_inner();
        Watch { tx, inbound }
    }

    async fn app(client: &SchedulerClient<Channel>, app_id: &str) -> Watch {
        Watch::open(
            client,
            WatchJobsRequestInitial {
                app_id: app_id.into(),
                namespace: "default".into(),
                ..Default::default()
            },
        )
        .await
    }

    async fn next(&mut self) -> WatchJobsResponse {
        tokio::time::timeout(Duration::from_secs(5), self.inbound.message())
            .await
            .expect("a trigger within 5 s")
            .expect("stream ok")
            .expect("stream open")
    }

    async fn nothing_for(&mut self, millis: u64) {
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(millis), self.inbound.message()).await {
            panic!("expected no trigger, got {got:?}");
        }
    }

    async fn answer(&self, id: u64, status: WatchJobsRequestResultStatus) {
        let result = WatchJobsRequestResult { id, status: status as i32 };
        self.tx
            .send(WatchJobsRequest { watch_job_request_type: Some(WatchJobRequestType::Result(result)) })
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn get_returns_the_job_as_given_with_the_default_policy() {
    let mut s = server().await;
    let job = Job { schedule: Some("@every 10s".into()), due_time: Some("10s".into()), ..Job::default() };
    s.client.schedule_job(schedule("j", app("a"), job.clone())).await.unwrap();
    let got = s.get("j", app("a")).await.unwrap();
    assert_eq!(got.schedule.as_deref(), Some("@every 10s"));
    assert_eq!(got.due_time.as_deref(), Some("10s"), "strings are returned as written");
    let policy = got.failure_policy.unwrap().policy.unwrap();
    assert_eq!(
        policy,
        job_failure_policy::Policy::Constant(JobFailurePolicyConstant {
            interval: Some(prost_types_duration(1)),
            max_retries: Some(3)
        })
    );
}

fn prost_types_duration(secs: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: secs, nanos: 0 }
}

#[tokio::test]
async fn errors_carry_upstream_codes_and_texts() {
    let mut s = server().await;
    s.client.schedule_job(schedule("dup", app("a"), far())).await.unwrap();
    let err = s.client.schedule_job(schedule("dup", app("a"), far())).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(err.message(), "job already exists: 'app||default||a||dup'");
    let mut overwrite = schedule("dup", app("a"), due_now());
    overwrite.overwrite = true;
    s.client.schedule_job(overwrite).await.unwrap();

    let bad = Job { schedule: Some("* * * * *".into()), ..Job::default() };
    let err = s.client.schedule_job(schedule("bad", app("a"), bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert!(
        err.message().starts_with("job failed validation: expected exactly 6 fields, found 5"),
        "{}",
        err.message()
    );

    let err = s
        .client
        .schedule_job(schedule("zero", app("a"), Job { repeats: Some(0), ..due_now() }))
        .await
        .unwrap_err();
    assert_eq!(err.message(), "job failed validation: defined repeats must be greater than 0");

    let err = s.client.schedule_job(schedule("a/b", app("a"), far())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert!(err.message().contains("job name is invalid"), "{}", err.message());

    let err = s.get("nope", app("a")).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "job not found: nope");

    s.client
        .delete_job(DeleteJobRequest { name: "nope".into(), metadata: Some(app("a")) })
        .await
        .expect("unknown delete is ok");

    let err = s
        .client
        .schedule_job(ScheduleJobRequest { metadata: None, ..schedule("m", app("a"), far()) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_full_store_answers_resource_exhausted_and_a_corrupt_one_internal_with_the_cause() {
    let store = Arc::new(MemoryStore::new(8));
    let faults = store.faults();
    let mut s = server_over(store).await;
    s.client.schedule_job(schedule("kept", app("a"), far())).await.unwrap();

    faults.set_fault(Some(StoreFault::Full("cannot write /data/jobs.redb".into())));
    let err = s.client.schedule_job(schedule("new", app("a"), far())).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert_eq!(err.message(), "store full (no space left on device): cannot write /data/jobs.redb");
    let err = s
        .client
        .delete_job(DeleteJobRequest { name: "kept".into(), metadata: Some(app("a")) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    // Reads go on.
    s.get("kept", app("a")).await.unwrap();

    faults.set_fault(Some(StoreFault::Corrupt("page 7 is damaged".into())));
    let err = s.client.schedule_job(schedule("new", app("a"), far())).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");
    assert_eq!(err.message(), "store corrupt: page 7 is damaged");

    faults.set_fault(None);
    s.client.schedule_job(schedule("new", app("a"), far())).await.unwrap();
}

#[tokio::test]
async fn list_and_bulk_deletes_are_scoped_to_the_owner() {
    let mut s = server().await;
    for name in ["b", "a", "c-1", "c-2"] {
        s.client.schedule_job(schedule(name, app("app1"), far())).await.unwrap();
    }
    s.client.schedule_job(schedule("a", app("app10"), far())).await.unwrap();
    let list =
        s.client.list_jobs(ListJobsRequest { metadata: Some(app("app1")) }).await.unwrap().into_inner();
    let names: Vec<_> = list.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c-1", "c-2"], "ascending by name, only app1's");
    assert_eq!(list.jobs[0].metadata.as_ref().unwrap().app_id, "app1");

    s.client
        .delete_by_name_prefix(DeleteByNamePrefixRequest {
            name_prefix: "c-".into(),
            metadata: Some(app("app1")),
        })
        .await
        .unwrap();
    let list =
        s.client.list_jobs(ListJobsRequest { metadata: Some(app("app1")) }).await.unwrap().into_inner();
    assert_eq!(list.jobs.len(), 2);

    s.client
        .delete_by_metadata(DeleteByMetadataRequest { metadata: Some(app("app1")), id_prefix_match: None })
        .await
        .unwrap();
    let list =
        s.client.list_jobs(ListJobsRequest { metadata: Some(app("app1")) }).await.unwrap().into_inner();
    assert!(list.jobs.is_empty());
    let list =
        s.client.list_jobs(ListJobsRequest { metadata: Some(app("app10")) }).await.unwrap().into_inner();
    assert_eq!(list.jobs.len(), 1, "app10 untouched");

    for id in ["user-1", "user-2", "admin"] {
        s.client.schedule_job(schedule("r", actor("Account", id), far())).await.unwrap();
    }
    s.client
        .delete_by_metadata(DeleteByMetadataRequest {
            metadata: Some(actor("Account", "user-")),
            id_prefix_match: Some(true),
        })
        .await
        .unwrap();
    assert!(s.get("r", actor("Account", "user-1")).await.is_err());
    assert!(s.get("r", actor("Account", "admin")).await.is_ok());
}

#[tokio::test]
async fn watch_jobs_delivers_triggers_with_name_id_data_and_metadata() {
    let mut s = server().await;
    let mut watch = Watch::app(&s.client, "a").await;
    let data = prost_types::Any { type_url: "type.googleapis.com/x".into(), value: b"payload".to_vec() };
    s.client
        .schedule_job(schedule("my||job@name", app("a"), Job { data: Some(data.clone()), ..due_now() }))
        .await
        .unwrap();
    let trigger = watch.next().await;
    assert_eq!(trigger.name, "my||job@name");
    assert_eq!(trigger.data, Some(data));
    let metadata = trigger.metadata.unwrap();
    assert_eq!((metadata.app_id.as_str(), metadata.namespace.as_str()), ("a", "default"));
    watch.answer(trigger.id, WatchJobsRequestResultStatus::Success).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(s.get("my||job@name", app("a")).await.is_err());
}

#[tokio::test]
async fn failed_result_is_retried_under_the_policy() {
    let mut s = server().await;
    let mut watch = Watch::app(&s.client, "a").await;
    let policy = JobFailurePolicy {
        policy: Some(job_failure_policy::Policy::Constant(JobFailurePolicyConstant {
            interval: None,
            max_retries: Some(2),
        })),
    };
    s.client
        .schedule_job(schedule("f", app("a"), Job { failure_policy: Some(policy), ..due_now() }))
        .await
        .unwrap();
    for _ in 0..3 {
        let t = watch.next().await;
        watch.answer(t.id, WatchJobsRequestResultStatus::Failed).await;
    }
    watch.nothing_for(300).await;
}

#[tokio::test]
async fn trigger_waits_for_a_stream_and_is_redelivered_when_its_stream_dies() {
    let mut s = server().await;
    s.client.schedule_job(schedule("staged", app("a"), due_now())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut other = Watch::app(&s.client, "b").await;
    let mut first = Watch::app(&s.client, "a").await;
    let t1 = first.next().await;
    assert_eq!(t1.name, "staged");
    drop(first);
    let mut second = Watch::app(&s.client, "a").await;
    let t2 = second.next().await;
    assert_eq!(t2.name, "staged", "the unanswered trigger comes again");
    second.answer(t2.id, WatchJobsRequestResultStatus::Success).await;
    other.nothing_for(200).await;
}

#[tokio::test]
async fn streams_of_one_app_share_the_load() {
    let mut s = server().await;
    let mut a = Watch::app(&s.client, "a").await;
    let mut b = Watch::app(&s.client, "a").await;
    for i in 0..6 {
        s.client.schedule_job(schedule(&format!("j{i}"), app("a"), far())).await.unwrap();
    }
    s.clock.advance(SignedDuration::from_secs(3600));
    let mut from_a = 0;
    let mut from_b = 0;
    for _ in 0..3 {
        a.next().await;
        from_a += 1;
        b.next().await;
        from_b += 1;
    }
    assert_eq!((from_a, from_b), (3, 3));
}

#[tokio::test]
async fn actor_reminders_go_to_streams_that_host_the_actor_type() {
    let mut s = server().await;
    // Two streams of an app hosting "Account": one takes only app jobs, the other every type.
    let hosting = |accept_job_types: Vec<i32>| WatchJobsRequestInitial {
        app_id: "host-app".into(),
        namespace: "default".into(),
        actor_types: vec!["Account".into()],
        accept_job_types,
        ..Default::default()
    };
    let mut apps_only = Watch::open(&s.client, hosting(vec![JobTargetType::Job as i32])).await;
    let mut host = Watch::open(&s.client, hosting(vec![])).await;
    s.client.schedule_job(schedule("remind", actor("Account", "42"), due_now())).await.unwrap();
    let t = host.next().await;
    assert_eq!(t.name, "remind");
    let target = t.metadata.unwrap().target.unwrap().r#type.unwrap();
    assert_eq!(
        target,
        job_target_metadata::Type::Actor(TargetActorReminder { id: "42".into(), r#type: "Account".into() })
    );
    apps_only.nothing_for(200).await;
}

#[tokio::test]
async fn watch_jobs_requires_an_initial_message() {
    let s = server().await;
    let (tx, rx) = mpsc::channel(4);
    let result = WatchJobsRequestResult { id: 1, status: 0 };
    tx.send(WatchJobsRequest { watch_job_request_type: Some(WatchJobRequestType::Result(result)) })
        .await
        .unwrap();
    let outbound = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let err = s.client.clone().watch_jobs(outbound).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn watch_hosts_reports_the_advertised_address() {
    let s = server().await;
    let mut hosts = s.client.clone().watch_hosts(WatchHostsRequest {}).await.unwrap().into_inner();
    let first = hosts.message().await.unwrap().unwrap();
    assert_eq!(first.hosts.len(), 1);
    assert_eq!(first.hosts[0].address, "scheduler-0:50006");
}
