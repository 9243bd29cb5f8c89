//! The HTTP Jobs API (spec §2): `POST|GET|DELETE /v1.0/jobs/{name}` and the same under
//! `/v1.0-alpha1`, plus the health routes the SDKs poll, and kairos's steering routes under
//! `/v1.0-kairos` ([`crate::http_steer`]), behind the same token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

use axum::extract::rejection::PathRejection;
use kairos_proto::auth::{self, TokenScheme};
use tonic::Code;

use crate::errors::{ApiError, SchedulerFailure, SchedulerStatus};
use crate::http_json::{job_to_json, parse_schedule_body};
use crate::jobs::Jobs;
use crate::metadata::Metadata;
use crate::server::ReadinessCheck;

/// What the HTTP handlers share.
#[derive(Debug)]
pub struct HttpState {
    pub jobs: Jobs,
    /// `DAPR_API_TOKEN`: required on every route but health when set.
    pub api_token: Option<String>,
    /// `--max-body-size`.
    pub max_body_size: usize,
    /// Set once the sidecar is fully up (app reachable, job streams open).
    pub ready: AtomicBool,
    /// Asked too by `/v1.0/healthz` once the sidecar is up.
    pub readiness: Option<Arc<dyn ReadinessCheck>>,
    /// What `GET /v1.0/metadata` reports.
    pub metadata: Arc<Metadata>,
}

/// The router of the HTTP API.
pub fn router(state: Arc<HttpState>) -> Router {
    let jobs = Router::new()
        .route("/v1.0/jobs/{name}", get(get_job).post(schedule_job).delete(delete_job))
        .route("/v1.0-alpha1/jobs/{name}", get(get_job).post(schedule_job).delete(delete_job))
        .route("/v1.0/metadata", get(get_metadata))
        .route("/v1.0/metadata/{key}", put(put_metadata))
        .merge(crate::http_steer::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/v1.0/healthz", get(healthz))
        .route("/v1.0/healthz/outbound", get(healthz_outbound))
        .merge(jobs)
        .with_state(state)
}

pub(crate) fn error_response(state: &HttpState, err: &ApiError) -> Response {
    let (status, body) = err.http_body(state.jobs.app_id(), state.jobs.namespace());
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static(err.content_type()))], body).into_response()
}

async fn require_token(State(state): State<Arc<HttpState>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &state.api_token {
        let given = request.headers().get(TokenScheme::DaprApiToken.metadata_key());
        if let Err(failure) = auth::verify(given.map(HeaderValue::as_bytes), expected) {
            return error_response(&state, &ApiError::Unauthenticated(failure));
        }
    }
    next.run(request).await
}

/// The job name of the URL. A name that does not decode to UTF-8 (`%FF`) can never be a job's
/// name; it is refused the way the scheduler refuses a bad name, with the route's Dapr error
/// code, rather than axum's plain-text 400.
pub(crate) fn url_name(
    name: Result<Path<String>, PathRejection>,
    refuse: impl FnOnce(SchedulerFailure) -> ApiError,
) -> Result<String, ApiError> {
    name.map(|Path(name)| name).map_err(|rejection| {
        refuse(SchedulerFailure::Status(SchedulerStatus::new(
            Code::InvalidArgument,
            format!("job name is invalid: {}", rejection.body_text()),
        )))
    })
}

async fn schedule_job(
    State(state): State<Arc<HttpState>>,
    name: Result<Path<String>, PathRejection>,
    body: Body,
) -> Response {
    let name = match url_name(name, ApiError::ScheduleJob) {
        Ok(name) => name,
        Err(err) => return error_response(&state, &err),
    };
    let bytes = match to_bytes(body, state.max_body_size).await {
        Ok(bytes) => bytes,
        Err(err) => {
            let reason =
                if std::error::Error::source(&err).is_some_and(|s| s.to_string().contains("length limit")) {
                    format!("request body exceeds the {}-byte limit (--max-body-size)", state.max_body_size)
                } else {
                    err.to_string()
                };
            return error_response(&state, &ApiError::BodyRead(reason));
        }
    };
    let request = match parse_schedule_body(&name, &bytes) {
        Ok(request) => request,
        Err(err) => return error_response(&state, &err),
    };
    match state.jobs.schedule(&request.name, request.spec, request.overwrite).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => error_response(&state, &err),
    }
}

async fn get_job(State(state): State<Arc<HttpState>>, name: Result<Path<String>, PathRejection>) -> Response {
    let result = async {
        let name = url_name(name, ApiError::GetJob)?;
        let spec = state.jobs.get(&name).await?;
        job_to_json(&name, &spec)
    };
    match result.await {
        Ok(json) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json)
                .into_response()
        }
        Err(err) => error_response(&state, &err),
    }
}

async fn delete_job(
    State(state): State<Arc<HttpState>>,
    name: Result<Path<String>, PathRejection>,
) -> Response {
    let name = match url_name(name, ApiError::DeleteJob) {
        Ok(name) => name,
        Err(err) => return error_response(&state, &err),
    };
    match state.jobs.delete(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(err) => error_response(&state, &err),
    }
}

/// `dapr run` reports the app's pid and command here; they are reported back under `extended`.
async fn put_metadata(
    State(state): State<Arc<HttpState>>,
    key: Result<Path<String>, PathRejection>,
    body: Body,
) -> Response {
    let Ok(Path(key)) = key else {
        return error_response(&state, &ApiError::BodyRead("invalid metadata key".to_owned()));
    };
    match to_bytes(body, state.max_body_size).await {
        Ok(bytes) => {
            state.metadata.set_extended(key, String::from_utf8_lossy(&bytes).into_owned());
            StatusCode::NO_CONTENT.into_response()
        }
        Err(err) => error_response(&state, &ApiError::BodyRead(err.to_string())),
    }
}

async fn get_metadata(State(state): State<Arc<HttpState>>) -> Response {
    let json = state.metadata.to_json();
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], json)
        .into_response()
}

async fn healthz(State(state): State<Arc<HttpState>>) -> Response {
    let mut message = "dapr is not ready".to_owned();
    if state.ready.load(Ordering::Acquire) {
        let reasons = match &state.readiness {
            Some(check) => check.not_ready().await,
            None => Vec::new(),
        };
        if reasons.is_empty() {
            return StatusCode::NO_CONTENT.into_response();
        }
        message = format!("{message}: {}", reasons.join("; "));
    }
    let body = serde_json::json!({ "errorCode": "ERR_HEALTH_NOT_READY", "message": message }).to_string();
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response()
}

/// The outbound API (the Jobs API) is up as soon as this server answers.
async fn healthz_outbound() -> StatusCode {
    StatusCode::NO_CONTENT
}
