//! The Admin service's steering RPCs over an engine on a ManualClock: codes for bad input and
//! unknown jobs, pause/resume/status, history, trigger-now, and ListJobStatus's filters and
//! pages (process tests in crates/kairos/tests/steer_admin.rs cover restarts and replicas).

use std::sync::Arc;

use jiff::SignedDuration;
use kairos_core::{JobKey, JobSpec, ManualClock};
use kairos_engine::{Engine, Outcome, Registration};
use kairos_proto::admin::admin_server::Admin;
use kairos_proto::admin::{
    GetJobHistoryRequest, GetJobStatusRequest, JobRef, JobState, ListJobStatusRequest, PauseJobRequest,
    ResumeJobRequest, TriggerJobRequest, TriggerOutcome,
};
use kairos_proto::convert::metadata_of;
use kairos_scheduler::admin::{AdminService, ref_of};
use kairos_store::PutMode;
use kairos_store::memory::MemoryStore;
use tonic::{Code, Request};

mod common;

fn setup() -> (Engine, AdminService, ManualClock) {
    let (engine, clock) = common::manual_engine(Arc::new(MemoryStore::new(4)));
    (engine.clone(), AdminService::new(engine), clock)
}

fn every_minute() -> JobSpec {
    JobSpec { schedule: Some("@every 1m".into()), ..JobSpec::default() }
}

fn r(key: &JobKey) -> Option<JobRef> {
    Some(ref_of(key))
}

async fn state_of(admin: &AdminService, key: &JobKey) -> JobState {
    let response =
        admin.get_job_status(Request::new(GetJobStatusRequest { r#ref: r(key) })).await.unwrap().into_inner();
    response.status.unwrap().state()
}

#[tokio::test]
async fn unknown_jobs_are_not_found_and_bad_keys_invalid() {
    let (_engine, admin, _clock) = setup();
    let missing = JobKey::app("default", "app", "nope");
    let code = admin
        .get_job_status(Request::new(GetJobStatusRequest { r#ref: r(&missing) }))
        .await
        .unwrap_err()
        .code();
    assert_eq!(code, Code::NotFound);
    let code = admin
        .get_job_history(Request::new(GetJobHistoryRequest { r#ref: r(&missing), limit: 0 }))
        .await
        .unwrap_err()
        .code();
    assert_eq!(code, Code::NotFound);
    let code =
        admin.pause_job(Request::new(PauseJobRequest { r#ref: r(&missing) })).await.unwrap_err().code();
    assert_eq!(code, Code::NotFound);
    let code =
        admin.resume_job(Request::new(ResumeJobRequest { r#ref: r(&missing) })).await.unwrap_err().code();
    assert_eq!(code, Code::NotFound);
    let code =
        admin.trigger_job(Request::new(TriggerJobRequest { r#ref: r(&missing) })).await.unwrap_err().code();
    assert_eq!(code, Code::NotFound);

    // No ref, no namespace, an unknown state, a bad prefix: INVALID_ARGUMENT.
    let code = admin.pause_job(Request::new(PauseJobRequest { r#ref: None })).await.unwrap_err().code();
    assert_eq!(code, Code::InvalidArgument);
    let mut metadata = metadata_of(&missing);
    metadata.namespace.clear();
    let bad = JobRef { name: "x".into(), metadata: Some(metadata) };
    let code =
        admin.trigger_job(Request::new(TriggerJobRequest { r#ref: Some(bad) })).await.unwrap_err().code();
    assert_eq!(code, Code::InvalidArgument);
    let list = |state: i32, prefix: &str| ListJobStatusRequest {
        owner: None,
        name_prefix: prefix.into(),
        state,
        after: None,
        page_size: 0,
    };
    let code = admin.list_job_status(Request::new(list(99, ""))).await.unwrap_err().code();
    assert_eq!(code, Code::InvalidArgument);
    let code = admin.list_job_status(Request::new(list(0, "a\u{7}"))).await.unwrap_err().code();
    assert_eq!(code, Code::InvalidArgument);
}

#[tokio::test]
async fn pause_resume_and_trigger_show_in_status_and_history() {
    let (engine, admin, clock) = setup();
    let key = JobKey::app("default", "app", "tick");
    engine.schedule(key.clone(), every_minute(), PutMode::CreateOnly).await.unwrap();
    assert_eq!(state_of(&admin, &key).await, JobState::Scheduled);

    let paused =
        admin.pause_job(Request::new(PauseJobRequest { r#ref: r(&key) })).await.unwrap().into_inner();
    let status = paused.status.unwrap();
    assert!(status.paused);
    assert_eq!(status.state(), JobState::Paused);
    assert_eq!(status.next_fire, None, "no ttl: a paused job has no next fire");
    assert_eq!(state_of(&admin, &key).await, JobState::Paused);
    // Pausing again changes nothing.
    admin.pause_job(Request::new(PauseJobRequest { r#ref: r(&key) })).await.unwrap();

    // Trigger-now is allowed while paused, and delivers through the subscriber.
    let mut sub = engine.subscribe(&Registration {
        namespace: "default".into(),
        app_id: Some("app".into()),
        actor_types: Vec::new(),
    });
    admin.trigger_job(Request::new(TriggerJobRequest { r#ref: r(&key) })).await.unwrap();
    let trigger = tokio::time::timeout(std::time::Duration::from_secs(5), sub.recv()).await.unwrap().unwrap();
    assert_eq!(trigger.key, key);
    assert!(sub.complete(trigger.id, Outcome::Success));
    let history = async {
        loop {
            let records = admin
                .get_job_history(Request::new(GetJobHistoryRequest { r#ref: r(&key), limit: 0 }))
                .await
                .unwrap()
                .into_inner()
                .records;
            if !records.is_empty() {
                return records;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    };
    let records = tokio::time::timeout(std::time::Duration::from_secs(5), history).await.unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0].manual);
    assert_eq!(records[0].attempt, 0);
    assert_eq!(records[0].outcome(), TriggerOutcome::Success);
    let status = admin
        .get_job_status(Request::new(GetJobStatusRequest { r#ref: r(&key) }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!((status.ticks, status.fired, status.successes), (0, 1, 1), "a trigger-now is no tick");
    assert_eq!(status.state(), JobState::Paused);

    clock.advance(SignedDuration::from_mins(5));
    let resumed =
        admin.resume_job(Request::new(ResumeJobRequest { r#ref: r(&key) })).await.unwrap().into_inner();
    let status = resumed.status.unwrap();
    assert!(!status.paused);
    assert_eq!(status.state(), JobState::Scheduled);
    assert!(status.next_fire.is_some());
}

#[tokio::test]
async fn list_job_status_filters_by_owner_prefix_and_state_and_pages() {
    let (engine, admin, _clock) = setup();
    for app in ["a", "b"] {
        for name in ["night-1", "night-2", "night-3", "day-1"] {
            engine
                .schedule(JobKey::app("default", app, name), every_minute(), PutMode::CreateOnly)
                .await
                .unwrap();
        }
    }
    engine.pause(&JobKey::app("default", "b", "night-2")).await.unwrap();
    engine.pause(&JobKey::app("default", "a", "day-1")).await.unwrap();

    let names = |jobs: &[kairos_proto::admin::JobStatusEntry]| -> Vec<String> {
        jobs.iter()
            .map(|e| {
                let r = e.job.as_ref().unwrap().r#ref.as_ref().unwrap();
                format!("{}/{}", r.metadata.as_ref().unwrap().app_id, r.name)
            })
            .collect()
    };
    let list = |owner: Option<&str>, prefix: &str, state: JobState, after: Option<JobRef>, size: u32| {
        ListJobStatusRequest {
            owner: owner.map(|app| metadata_of(&JobKey::app("default", app, "x"))),
            name_prefix: prefix.into(),
            state: state.into(),
            after,
            page_size: size,
        }
    };
    // Every owner, paused only.
    let page = admin
        .list_job_status(Request::new(list(None, "", JobState::Paused, None, 0)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&page.jobs), ["a/day-1", "b/night-2"]);
    assert!(page.next_after.is_none());
    assert!(page.jobs.iter().all(|e| e.status.as_ref().unwrap().paused));

    // One owner, a prefix, pages of two.
    let first = admin
        .list_job_status(Request::new(list(Some("a"), "night-", JobState::Unspecified, None, 2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&first.jobs), ["a/night-1", "a/night-2"]);
    let next = first.next_after.expect("a full page says where to go on");
    let second = admin
        .list_job_status(Request::new(list(Some("a"), "night-", JobState::Unspecified, Some(next), 2)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(names(&second.jobs), ["a/night-3"]);
    assert!(second.next_after.is_none());

    // Every owner, a prefix, pages of three: all six night jobs across two pages.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = admin
            .list_job_status(Request::new(list(None, "night-", JobState::Unspecified, after, 3)))
            .await
            .unwrap()
            .into_inner();
        seen.extend(names(&page.jobs));
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ["a/night-1", "a/night-2", "a/night-3", "b/night-1", "b/night-2", "b/night-3"]);

    // An `after` of another owner than the one listed is refused.
    let other = Some(ref_of(&JobKey::app("default", "b", "night-1")));
    let code = admin
        .list_job_status(Request::new(list(Some("a"), "", JobState::Unspecified, other, 2)))
        .await
        .unwrap_err()
        .code();
    assert_eq!(code, Code::InvalidArgument);
}
