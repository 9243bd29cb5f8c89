//! The HTTP steering routes (kairos extension, docs/steering.md): the app's own jobs' status,
//! history, pause, resume, trigger-now and a filtered, paginated list.
//!
//! They live under `/v1.0-kairos/`, a prefix Dapr never uses (its versions are `v1.0`,
//! `v1.0-alpha1`, `v1.0-beta1`), so every `/v1.0/…` route stays exactly Dapr's:
//!
//! | Route | Answer |
//! |---|---|
//! | `GET /v1.0-kairos/jobs/{name}/status` | 200 `{"job": {…}, "status": {…}}` |
//! | `GET /v1.0-kairos/jobs/{name}/history?limit=N` | 200 `{"records": [{…}, …]}`, oldest first |
//! | `POST /v1.0-kairos/jobs/{name}/pause` | 200 `{"status": {…}}` |
//! | `POST /v1.0-kairos/jobs/{name}/resume` | 200 `{"status": {…}}` |
//! | `POST /v1.0-kairos/jobs/{name}/trigger` | 204 |
//! | `GET /v1.0-kairos/jobs?prefix=&state=&pageSize=&after=` | 200 `{"jobs": [{"job", "status"}, …], "nextAfter": "name"}` |
//!
//! `job` is the body `GET /v1.0/jobs/{name}` answers. The rest is protojson of the
//! `kairos.runtime.v1` messages but for two choices made for people with `curl`: states and
//! outcomes are lowercase names (`waiting-for-app`, `undeliverable`), and counters are JSON
//! numbers. Timestamps are RFC 3339 in UTC, durations protojson's (`0.250s`); unset fields are
//! left out. Errors are `{"errorCode", "message"}`: 404 `KAIROS_JOB_NOT_FOUND` for a job the
//! app does not have (another app's included), 400 `KAIROS_INVALID_REQUEST` for a bad query,
//! 501 `KAIROS_STEERING_UNAVAILABLE` when the scheduler offers no steering (an upstream Dapr
//! scheduler), else `KAIROS_JOB_*` with the scheduler's status mapped as the Jobs API maps it.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kairos_proto::admin::{self, JobState};
use kairos_proto::convert::{outcome_from_wire, state_from_wire, state_to_wire};
use kairos_proto::json as proto_json;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::errors::{ApiError, SteerOp};
use crate::http_api::{HttpState, error_response, url_name};
use crate::http_json::job_to_json;
use crate::jobs::{JobWithStatus, StatusFilter, StatusPage};

/// The prefix of every steering route.
pub const PREFIX: &str = "/v1.0-kairos";

/// The steering routes (the caller adds the token check).
pub fn routes() -> Router<Arc<HttpState>> {
    Router::new()
        .route("/v1.0-kairos/jobs", get(list_status))
        .route("/v1.0-kairos/jobs/{name}/status", get(job_status))
        .route("/v1.0-kairos/jobs/{name}/history", get(job_history))
        .route("/v1.0-kairos/jobs/{name}/pause", post(pause_job))
        .route("/v1.0-kairos/jobs/{name}/resume", post(resume_job))
        .route("/v1.0-kairos/jobs/{name}/trigger", post(trigger_job))
}

type Name = Result<Path<String>, PathRejection>;
type Params = Result<Query<Vec<(String, String)>>, QueryRejection>;

fn json_ok(json: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json)
        .into_response()
}

fn answer(state: &HttpState, result: Result<String, ApiError>) -> Response {
    match result {
        Ok(json) => json_ok(json),
        Err(err) => error_response(state, &err),
    }
}

fn name_of(name: Name, op: SteerOp) -> Result<String, ApiError> {
    url_name(name, |f| ApiError::Steer(op, f))
}

async fn job_status(State(state): State<Arc<HttpState>>, name: Name) -> Response {
    let result = async {
        let name = name_of(name, SteerOp::Status)?;
        let job = state.jobs.status(&name).await?;
        encode(&JobStatusJson::of(&job)?)
    };
    answer(&state, result.await)
}

async fn job_history(State(state): State<Arc<HttpState>>, name: Name, params: Params) -> Response {
    let result = async {
        let name = name_of(name, SteerOp::History)?;
        let mut limit = 0;
        for (key, value) in query(params)? {
            match key.as_str() {
                "limit" => limit = parse_u32("limit", &value)?,
                other => return Err(unknown_param(other, "limit")),
            }
        }
        let records = state.jobs.history(&name, limit).await?;
        let records = records.iter().map(RecordJson::of).collect::<Result<Vec<_>, _>>()?;
        encode(&HistoryJson { records })
    };
    answer(&state, result.await)
}

async fn pause_job(State(state): State<Arc<HttpState>>, name: Name) -> Response {
    set_paused(&state, name, true).await
}

async fn resume_job(State(state): State<Arc<HttpState>>, name: Name) -> Response {
    set_paused(&state, name, false).await
}

async fn set_paused(state: &HttpState, name: Name, paused: bool) -> Response {
    let op = if paused { SteerOp::Pause } else { SteerOp::Resume };
    let result = async {
        let name = name_of(name, op)?;
        let status = if paused { state.jobs.pause(&name).await? } else { state.jobs.resume(&name).await? };
        encode(&StatusOnlyJson { status: StatusJson::of(&status)? })
    };
    answer(state, result.await)
}

async fn trigger_job(State(state): State<Arc<HttpState>>, name: Name) -> Response {
    let result = async {
        let name = name_of(name, SteerOp::Trigger)?;
        state.jobs.trigger(&name).await
    };
    match result.await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => error_response(&state, &err),
    }
}

async fn list_status(State(state): State<Arc<HttpState>>, params: Params) -> Response {
    let result = async {
        let filter = parse_list_query(query(params)?)?;
        let page = state.jobs.list_status(filter).await?;
        encode(&PageJson::of(&page)?)
    };
    answer(&state, result.await)
}

fn query(params: Params) -> Result<Vec<(String, String)>, ApiError> {
    params.map(|Query(pairs)| pairs).map_err(|e| ApiError::InvalidSteerRequest(e.body_text()))
}

fn unknown_param(name: &str, expected: &str) -> ApiError {
    ApiError::InvalidSteerRequest(format!("unknown query parameter {name:?}; expected {expected}"))
}

fn parse_u32(name: &str, value: &str) -> Result<u32, ApiError> {
    value.parse().map_err(|_| {
        ApiError::InvalidSteerRequest(format!(
            "{name} must be a whole number from 0 to 4294967295, got {value:?}"
        ))
    })
}

/// The list's filters from its query: `prefix`, `state` (a state name), `pageSize`, `after`.
///
/// # Errors
/// [`ApiError::InvalidSteerRequest`] for an unknown parameter or state, or a bad page size.
pub fn parse_list_query(pairs: Vec<(String, String)>) -> Result<StatusFilter, ApiError> {
    let mut filter = StatusFilter::default();
    for (key, value) in pairs {
        match key.as_str() {
            "prefix" => filter.name_prefix = value,
            "state" => filter.state = parse_state(&value)?,
            "pageSize" | "page_size" => filter.page_size = parse_u32("pageSize", &value)?,
            "after" => filter.after = value,
            other => return Err(unknown_param(other, "prefix, state, pageSize or after")),
        }
    }
    Ok(filter)
}

/// A state name (`scheduled`, `paused`, `waiting-for-app`, `retrying`, `finished`); empty means
/// any state.
///
/// # Errors
/// [`ApiError::InvalidSteerRequest`] for any other name.
pub fn parse_state(name: &str) -> Result<Option<JobState>, ApiError> {
    if name.is_empty() {
        return Ok(None);
    }
    let state: kairos_core::JobState = name
        .parse()
        .map_err(|e: kairos_core::status::StateError| ApiError::InvalidSteerRequest(e.to_string()))?;
    Ok(Some(state_to_wire(state)))
}

/// The name of a state as the routes write it; `None` for unspecified (or unknown) ones.
pub fn state_name(state: i32) -> Option<&'static str> {
    state_from_wire(state).ok().flatten().map(kairos_core::JobState::as_str)
}

/// The name of an outcome as the routes write it; `None` for unspecified (or unknown) ones.
pub fn outcome_name(outcome: i32) -> Option<&'static str> {
    outcome_from_wire(outcome).map(kairos_core::TriggerOutcome::as_str)
}

fn encode<T: Serialize>(value: &T) -> Result<String, ApiError> {
    proto_json::to_string(value).map_err(|e| encode_failed(&e))
}

fn encode_failed(e: &proto_json::JsonError) -> ApiError {
    ApiError::EncodeResponse(crate::http_json::EncodeError::new(e.to_string()))
}

fn timestamp(t: Option<&prost_types::Timestamp>) -> Result<Option<String>, ApiError> {
    t.map(proto_json::timestamp_to_string).transpose().map_err(|e| encode_failed(&e))
}

/// `kairos.admin.v1.JobStatus` as the routes write it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<&'static str>,
    paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_fire: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_fire: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_outcome: Option<&'static str>,
    ticks: u32,
    fired: u64,
    successes: u64,
    failures: u64,
    attempt: u32,
}

impl StatusJson {
    /// # Errors
    /// [`ApiError::EncodeResponse`] for a timestamp out of protojson's range.
    pub fn of(status: &admin::JobStatus) -> Result<Self, ApiError> {
        Ok(StatusJson {
            state: state_name(status.state),
            paused: status.paused,
            next_fire: timestamp(status.next_fire.as_ref())?,
            last_fire: timestamp(status.last_fire.as_ref())?,
            last_outcome: outcome_name(status.last_outcome),
            ticks: status.ticks,
            fired: status.fired,
            successes: status.successes,
            failures: status.failures,
            attempt: status.attempt,
        })
    }
}

/// `kairos.admin.v1.TriggerRecord` as the routes write it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RecordJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    tick: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fired_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    answered_at: Option<String>,
    attempt: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'static str>,
    manual: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    lateness: Option<String>,
}

impl RecordJson {
    fn of(record: &admin::TriggerRecord) -> Result<Self, ApiError> {
        let lateness = record
            .lateness
            .as_ref()
            .map(proto_json::duration_to_string)
            .transpose()
            .map_err(|e| encode_failed(&e))?;
        Ok(RecordJson {
            tick: timestamp(record.tick.as_ref())?,
            fired_at: timestamp(record.fired_at.as_ref())?,
            answered_at: timestamp(record.answered_at.as_ref())?,
            attempt: record.attempt,
            outcome: outcome_name(record.outcome),
            manual: record.manual,
            lateness,
        })
    }
}

#[derive(Serialize)]
struct HistoryJson {
    records: Vec<RecordJson>,
}

#[derive(Serialize)]
struct StatusOnlyJson {
    status: StatusJson,
}

/// A job (as `GET /v1.0/jobs/{name}` renders it) with its status.
#[derive(Serialize)]
struct JobStatusJson {
    job: Box<RawValue>,
    status: StatusJson,
}

impl JobStatusJson {
    fn of(job: &JobWithStatus) -> Result<Self, ApiError> {
        let rendered = job_to_json(&job.name, &job.spec)?;
        let job_json = RawValue::from_string(rendered)
            .map_err(|e| encode_failed(&proto_json::JsonError::new(e.to_string())))?;
        Ok(JobStatusJson { job: job_json, status: StatusJson::of(&job.status)? })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PageJson {
    jobs: Vec<JobStatusJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_after: Option<String>,
}

impl PageJson {
    fn of(page: &StatusPage) -> Result<Self, ApiError> {
        Ok(PageJson {
            jobs: page.jobs.iter().map(JobStatusJson::of).collect::<Result<_, _>>()?,
            next_after: page.next_after.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_proto::admin::TriggerOutcome;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn list_query_reads_every_filter_and_refuses_bad_ones() {
        let filter = parse_list_query(pairs(&[
            ("prefix", "nightly-"),
            ("state", "waiting-for-app"),
            ("pageSize", "25"),
            ("after", "nightly-b"),
        ]))
        .unwrap();
        assert_eq!(
            filter,
            StatusFilter {
                name_prefix: "nightly-".into(),
                state: Some(JobState::WaitingForApp),
                after: "nightly-b".into(),
                page_size: 25,
            }
        );
        assert_eq!(parse_list_query(pairs(&[("state", "")])).unwrap().state, None);
        for (bad, says) in [
            (("state", "sleeping"), "invalid job state \"sleeping\""),
            (("pageSize", "-1"), "pageSize must be a whole number"),
            (("pageSize", "ten"), "pageSize must be a whole number"),
            (("color", "red"), "unknown query parameter \"color\""),
        ] {
            let err = parse_list_query(pairs(&[bad])).unwrap_err();
            assert_eq!(err.http_status(), 400, "{bad:?}");
            let (_, body) = err.http_body("app", "default");
            let body: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["errorCode"], "KAIROS_INVALID_REQUEST", "{bad:?}");
            assert!(body["message"].as_str().unwrap().contains(says), "{bad:?}: {body}");
        }
    }

    #[test]
    fn status_renders_names_numbers_and_rfc3339_times() {
        let status = admin::JobStatus {
            state: JobState::Retrying as i32,
            next_fire: Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 250_000_000 }),
            last_fire: Some(prost_types::Timestamp { seconds: 1_799_999_990, nanos: 0 }),
            last_outcome: TriggerOutcome::Failed as i32,
            ticks: 4,
            fired: 7,
            successes: 4,
            failures: 3,
            attempt: 2,
            paused: false,
        };
        let json = proto_json::to_string(&StatusJson::of(&status).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"state":"retrying","paused":false,"nextFire":"2027-01-15T08:00:00.250Z","lastFire":"2027-01-15T07:59:50Z","lastOutcome":"failed","ticks":4,"fired":7,"successes":4,"failures":3,"attempt":2}"#
        );
        // Before the first delivery: no last fire, no outcome.
        let fresh = admin::JobStatus { state: JobState::Scheduled as i32, ..Default::default() };
        assert_eq!(
            proto_json::to_string(&StatusJson::of(&fresh).unwrap()).unwrap(),
            r#"{"state":"scheduled","paused":false,"ticks":0,"fired":0,"successes":0,"failures":0,"attempt":0}"#
        );
    }

    #[test]
    fn records_render_lateness_as_a_protojson_duration() {
        let record = admin::TriggerRecord {
            tick: Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 0 }),
            fired_at: Some(prost_types::Timestamp { seconds: 1_800_000_000, nanos: 12_000_000 }),
            answered_at: None,
            attempt: 0,
            outcome: TriggerOutcome::Success as i32,
            manual: true,
            lateness: Some(prost_types::Duration { seconds: 0, nanos: 12_000_000 }),
        };
        let json = proto_json::to_string(&RecordJson::of(&record).unwrap()).unwrap();
        assert_eq!(
            json,
            r#"{"tick":"2027-01-15T08:00:00Z","firedAt":"2027-01-15T08:00:00.012Z","attempt":0,"outcome":"success","manual":true,"lateness":"0.012s"}"#
        );
    }
}
