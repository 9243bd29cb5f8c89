//! The Jobs API's errors and the one table that maps each to its HTTP status, Dapr `errorCode`,
//! gRPC code and JSON shape (spec §2.4).
//!
//! daprd answers with two JSON shapes: the dapr/kit error (every `DAPR_SCHEDULER_*` code), which
//! carries a `google.rpc.ErrorInfo` in `details`, and the legacy `APIError`
//! (`{"errorCode","message"}`). A bad API token is plain text. [`ApiError::http_body`] writes
//! exactly those bytes; [`ApiError::grpc_status`] builds the matching `tonic::Status`, with the
//! same `ErrorInfo` packed into the status details for kit errors.

use std::collections::BTreeMap;
use std::fmt;

use prost::Message;
use tonic::Code;

use crate::http_json::EncodeError;

/// The `domain` of every Dapr `ErrorInfo`.
pub const ERROR_DOMAIN: &str = "dapr.io";

/// The type URL of `google.rpc.ErrorInfo` inside status details.
pub const ERROR_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.ErrorInfo";

/// A gRPC status returned by the scheduler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerStatus {
    pub code: Code,
    pub message: String,
}

impl SchedulerStatus {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        SchedulerStatus { code, message: message.into() }
    }
}

impl From<&tonic::Status> for SchedulerStatus {
    fn from(status: &tonic::Status) -> Self {
        SchedulerStatus { code: status.code(), message: status.message().to_owned() }
    }
}

impl From<tonic::Status> for SchedulerStatus {
    fn from(status: tonic::Status) -> Self {
        SchedulerStatus::from(&status)
    }
}

/// Go's text for a gRPC status error, which daprd embeds in its messages.
impl fmt::Display for SchedulerStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rpc error: code = {} desc = {}", go_code_name(self.code), self.message)
    }
}

/// Why a call to the scheduler failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchedulerFailure {
    /// The scheduler answered with an error status.
    Status(SchedulerStatus),
    /// No scheduler is configured (daprd without `--scheduler-host-address`).
    Disabled,
    /// No scheduler answered within the call's deadline (daprd waits 30 s for one).
    Unreachable,
}

/// What a kairos scheduler's message says when its store has no room for a write (disk full,
/// etcd quota used up); it comes with RESOURCE_EXHAUSTED.
pub const STORE_FULL_MARKER: &str = "no space left on device";

impl SchedulerFailure {
    /// Whether the scheduler refused the call because its store is full.
    pub fn is_store_full(&self) -> bool {
        matches!(self, SchedulerFailure::Status(s) if s.code == Code::ResourceExhausted && s.message.contains(STORE_FULL_MARKER))
    }

    /// The gRPC code as Go's `status.Code(err)` sees it: a plain (non-status) error is Unknown.
    pub fn code(&self) -> Code {
        match self {
            SchedulerFailure::Status(s) => s.code,
            SchedulerFailure::Disabled => Code::Unknown,
            SchedulerFailure::Unreachable => Code::DeadlineExceeded,
        }
    }
}

impl From<tonic::Status> for SchedulerFailure {
    fn from(status: tonic::Status) -> Self {
        SchedulerFailure::Status(status.into())
    }
}

impl fmt::Display for SchedulerFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedulerFailure::Status(s) => s.fmt(f),
            // pkg/runtime/scheduler/internal/clients/clients.go
            SchedulerFailure::Disabled => f.write_str("scheduler clients are disabled"),
            // What a Go client reports when its context deadline passes.
            SchedulerFailure::Unreachable => {
                SchedulerStatus::new(Code::DeadlineExceeded, "context deadline exceeded").fmt(f)
            }
        }
    }
}

/// How a call was refused for its API token (spec §3.4). Its gRPC message is daprd's
/// ([`AuthFailure::message`]); over HTTP the body is always `invalid api token`.
pub use kairos_proto::auth::TokenFailure as AuthFailure;

/// An error of the Jobs API, by cause (spec §2.4).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The HTTP body is not a valid `JobHTTPRequest` in protojson.
    #[error("failed deserializing HTTP body: {0}")]
    MalformedBody(String),
    /// The HTTP body could not be read (too large, connection lost).
    #[error("failed to read request body: {0}")]
    BodyRead(String),
    /// The HTTP body names the job; the name belongs in the URL.
    #[error("Set the job name in the url only")]
    NameInBody,
    /// A gRPC `ScheduleJobRequest` without a `job`.
    #[error("Job is empty")]
    EmptyJob,
    /// The job name is empty (or only whitespace, over HTTP).
    #[error("Name is empty")]
    EmptyName,
    /// Neither `schedule` nor `dueTime` was given.
    #[error("Schedule is empty")]
    EmptySchedule,
    /// The scheduler refused or failed to schedule the job.
    #[error("failed to schedule job due to: {0}")]
    ScheduleJob(SchedulerFailure),
    /// The scheduler failed to return the job (an unknown job included).
    #[error("failed to get job due to: {0}")]
    GetJob(SchedulerFailure),
    /// The scheduler failed to delete the job.
    #[error("failed to delete job due to: {0}")]
    DeleteJob(SchedulerFailure),
    /// The scheduler failed to list the app's jobs.
    #[error("failed to list jobs due to: {0}")]
    ListJobs(SchedulerFailure),
    /// The scheduler failed to delete jobs by prefix; daprd reports it as a delete error.
    #[error("failed to delete job due to: {0}")]
    DeleteJobsByPrefix(SchedulerFailure),
    /// A job could not be rendered as protojson for a GET response (spec §2.3).
    #[error("failed to encode response as JSON: {0}")]
    EncodeResponse(#[from] EncodeError),
    /// The API token is missing or wrong.
    #[error("{}", .0.message())]
    Unauthenticated(AuthFailure),
    /// A steering request (kairos extension) that cannot be served as given: a bad query
    /// parameter or filter.
    #[error("invalid request: {0}")]
    InvalidSteerRequest(String),
    /// A steering call (kairos extension) failed in the scheduler: the job is unknown to this
    /// app, the scheduler offers no steering (an upstream Dapr scheduler), or another failure.
    #[error("failed to {op} due to: {reason}", op = .0, reason = steer_reason(.1))]
    Steer(SteerOp, SchedulerFailure),
}

/// The steering calls, for their error messages (`Display`: what the call does) and codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::VariantArray)]
pub enum SteerOp {
    #[strum(to_string = "get job status")]
    Status,
    #[strum(to_string = "get job history")]
    History,
    #[strum(to_string = "pause job")]
    Pause,
    #[strum(to_string = "resume job")]
    Resume,
    #[strum(to_string = "trigger job")]
    Trigger,
    #[strum(to_string = "list job status")]
    List,
}

impl SteerOp {
    /// The `errorCode` of a failure of this call that has no more specific code.
    pub fn error_code(self) -> &'static str {
        match self {
            SteerOp::Status => "KAIROS_JOB_STATUS",
            SteerOp::History => "KAIROS_JOB_HISTORY",
            SteerOp::Pause => "KAIROS_JOB_PAUSE",
            SteerOp::Resume => "KAIROS_JOB_RESUME",
            SteerOp::Trigger => "KAIROS_JOB_TRIGGER",
            SteerOp::List => "KAIROS_LIST_JOB_STATUS",
        }
    }
}

/// Error code of a steering call to a job this app does not have (404).
pub const JOB_NOT_FOUND: &str = "KAIROS_JOB_NOT_FOUND";
/// Error code of a steering call the scheduler does not offer (501): an upstream Dapr
/// scheduler, or a kairos scheduler without its Admin service.
pub const STEERING_UNAVAILABLE: &str = "KAIROS_STEERING_UNAVAILABLE";
/// Error code of a steering request refused as given (400).
pub const INVALID_STEER_REQUEST: &str = "KAIROS_INVALID_REQUEST";

/// The scheduler failure of a steering call, said plainly when the scheduler has no steering.
fn steer_reason(failure: &SchedulerFailure) -> String {
    if failure.code() == Code::Unimplemented {
        format!(
            "the scheduler does not offer job steering (kairos.admin.v1.Admin; an upstream Dapr \
             scheduler has none): {failure}"
        )
    } else {
        failure.to_string()
    }
}

/// Which body an error is written as over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorShape {
    /// dapr/kit error: `errorCode`, `message` and an `ErrorInfo` in `details`; the metadata has
    /// `appID` and, when `namespace` is true, `namespace`.
    Kit { namespace: bool },
    /// Legacy `APIError`: `errorCode` and `message` only.
    Legacy,
    /// `text/plain` body (Go's `http.Error`).
    PlainText,
}

/// One row of the §2.4 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorRow {
    pub http_status: u16,
    /// The Dapr `errorCode` (also the `ErrorInfo` reason); `None` for the plain-text 401.
    pub error_code: Option<&'static str>,
    pub grpc_code: Code,
    pub shape: ErrorShape,
}

const KIT: ErrorShape = ErrorShape::Kit { namespace: true };

impl ApiError {
    /// The row of the §2.4 table this error falls under.
    pub fn row(&self) -> ErrorRow {
        use ApiError as E;
        let row = |http_status, code, grpc_code, shape| ErrorRow {
            http_status,
            error_code: Some(code),
            grpc_code,
            shape,
        };
        match self {
            E::MalformedBody(_) => {
                row(400, "ERR_MALFORMED_REQUEST", Code::InvalidArgument, ErrorShape::Legacy)
            }
            E::BodyRead(_) => row(400, "ERR_BODY_READ", Code::InvalidArgument, ErrorShape::Legacy),
            E::NameInBody => row(
                400,
                "DAPR_SCHEDULER_JOB_NAME",
                Code::InvalidArgument,
                ErrorShape::Kit { namespace: false },
            ),
            E::EmptyJob => row(400, "DAPR_SCHEDULER_EMPTY", Code::InvalidArgument, KIT),
            E::EmptyName => row(400, "DAPR_SCHEDULER_JOB_NAME_EMPTY", Code::InvalidArgument, KIT),
            E::EmptySchedule => row(400, "DAPR_SCHEDULER_SCHEDULE_EMPTY", Code::InvalidArgument, KIT),
            E::ScheduleJob(failure) => {
                // pkg/api/errors/scheduler.go: the scheduler's code, Unknown made Internal, and
                // the HTTP status derived from it.
                let code = match failure.code() {
                    Code::Unknown | Code::Ok => Code::Internal,
                    code => code,
                };
                // A full store would be 429 Too Many Requests by that mapping, which tells the
                // app to slow down when only freeing space helps: 507 Insufficient Storage says
                // what happened (kairos' own choice; upstream's store has no such answer).
                let http = if failure.is_store_full() { 507 } else { http_status_from_code(code) };
                row(http, "DAPR_SCHEDULER_SCHEDULE_JOB", code, KIT)
            }
            E::GetJob(_) => row(500, "DAPR_SCHEDULER_GET_JOB", Code::Internal, KIT),
            E::DeleteJob(_) | E::DeleteJobsByPrefix(_) => {
                row(500, "DAPR_SCHEDULER_DELETE_JOB", Code::Internal, KIT)
            }
            E::ListJobs(_) => row(500, "DAPR_SCHEDULER_LIST_JOBS", Code::Internal, KIT),
            E::EncodeResponse(_) => row(500, "ERR_INTERNAL", Code::Internal, ErrorShape::Legacy),
            E::InvalidSteerRequest(_) => {
                row(400, INVALID_STEER_REQUEST, Code::InvalidArgument, ErrorShape::Legacy)
            }
            E::Steer(op, failure) => {
                let code = match failure.code() {
                    Code::Unknown | Code::Ok => Code::Internal,
                    code => code,
                };
                let http = if failure.is_store_full() { 507 } else { http_status_from_code(code) };
                let error_code = match code {
                    Code::NotFound => JOB_NOT_FOUND,
                    Code::Unimplemented => STEERING_UNAVAILABLE,
                    Code::InvalidArgument => INVALID_STEER_REQUEST,
                    _ => op.error_code(),
                };
                row(http, error_code, code, ErrorShape::Legacy)
            }
            E::Unauthenticated(_) => ErrorRow {
                http_status: 401,
                error_code: None,
                grpc_code: Code::Unauthenticated,
                shape: ErrorShape::PlainText,
            },
        }
    }

    pub fn http_status(&self) -> u16 {
        self.row().http_status
    }

    pub fn grpc_code(&self) -> Code {
        self.row().grpc_code
    }

    /// The `Content-Type` of [`ApiError::http_body`].
    pub fn content_type(&self) -> &'static str {
        match self.row().shape {
            ErrorShape::PlainText => "text/plain; charset=utf-8",
            ErrorShape::Kit { .. } | ErrorShape::Legacy => "application/json",
        }
    }

    /// The HTTP status and body daprd answers with for this error.
    ///
    /// JSON is written as Go's `encoding/json` writes it: struct fields in declaration order,
    /// map keys sorted, `<`, `>`, `&`, U+2028 and U+2029 escaped, no trailing newline.
    pub fn http_body(&self, app_id: &str, namespace: &str) -> (u16, String) {
        let row = self.row();
        let message = self.to_string();
        let body = match row.shape {
            // http.Error adds a newline.
            ErrorShape::PlainText => "invalid api token\n".to_owned(),
            ErrorShape::Legacy => format!(
                r#"{{"errorCode":{},"message":{}}}"#,
                go_json_string(row.error_code.unwrap_or_default()),
                go_json_string(&message)
            ),
            ErrorShape::Kit { .. } => {
                let reason = row.error_code.unwrap_or_default();
                let metadata = self
                    .error_metadata(app_id, namespace)
                    .iter()
                    .map(|(k, v)| format!("{}:{}", go_json_string(k), go_json_string(v)))
                    .collect::<Vec<_>>()
                    .join(",");
                // The detail is a Go map, so its keys come out sorted.
                format!(
                    r#"{{"errorCode":{reason_json},"message":{},"details":[{{"@type":{},"domain":{},"metadata":{{{metadata}}},"reason":{reason_json}}}]}}"#,
                    go_json_string(&message),
                    go_json_string(ERROR_INFO_TYPE_URL),
                    go_json_string(ERROR_DOMAIN),
                    reason_json = go_json_string(reason),
                )
            }
        };
        (row.http_status, body)
    }

    /// The gRPC status daprd answers with for this error. Kit errors carry a
    /// `google.rpc.ErrorInfo` (reason, domain `dapr.io`, metadata) in the status details.
    pub fn grpc_status(&self, app_id: &str, namespace: &str) -> tonic::Status {
        let row = self.row();
        let message = self.to_string();
        match (row.shape, row.error_code) {
            (ErrorShape::Kit { .. }, Some(reason)) => {
                let info = ErrorInfo {
                    reason: reason.to_owned(),
                    domain: ERROR_DOMAIN.to_owned(),
                    metadata: self.error_metadata(app_id, namespace),
                };
                let status = RpcStatus {
                    code: row.grpc_code as i32,
                    message: message.clone(),
                    details: vec![prost_types::Any {
                        type_url: ERROR_INFO_TYPE_URL.to_owned(),
                        value: info.encode_to_vec(),
                    }],
                };
                tonic::Status::with_details(
                    row.grpc_code,
                    message,
                    prost::bytes::Bytes::from(status.encode_to_vec()),
                )
            }
            _ => tonic::Status::new(row.grpc_code, message),
        }
    }

    fn error_metadata(&self, app_id: &str, namespace: &str) -> BTreeMap<String, String> {
        let mut metadata = BTreeMap::from([("appID".to_owned(), app_id.to_owned())]);
        if self.row().shape == KIT {
            metadata.insert("namespace".to_owned(), namespace.to_owned());
        }
        metadata
    }
}

/// `google.rpc.Status`, for the `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<prost_types::Any>,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorInfo {
    #[prost(string, tag = "1")]
    pub reason: String,
    #[prost(string, tag = "2")]
    pub domain: String,
    #[prost(btree_map = "string, string", tag = "3")]
    pub metadata: BTreeMap<String, String>,
}

/// A gRPC code's name as Go's `codes.Code.String()` prints it.
pub fn go_code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// gRPC code → HTTP status, as dapr/kit `HTTPStatusFromCode` (grpc-gateway's mapping) does.
pub fn http_status_from_code(code: Code) -> u16 {
    match code {
        Code::Ok => 200,
        Code::Cancelled => 408,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
        Code::DeadlineExceeded => 504,
        Code::NotFound => 404,
        Code::AlreadyExists | Code::Aborted => 409,
        Code::PermissionDenied => 403,
        Code::Unauthenticated => 401,
        Code::ResourceExhausted => 429,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

/// A JSON string literal as Go's `encoding/json` writes it (HTML-safe escaping).
fn go_json_string(s: &str) -> String {
    let json = serde_json::Value::from(s).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http_json::EncodeError;
    use strum::VariantArray;

    fn status(code: Code, msg: &str) -> SchedulerFailure {
        SchedulerFailure::Status(SchedulerStatus::new(code, msg))
    }

    fn kit(reason: &str, message: &str) -> String {
        format!(
            r#"{{"errorCode":"{reason}","message":"{message}","details":[{{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"dapr.io","metadata":{{"appID":"myapp","namespace":"default"}},"reason":"{reason}"}}]}}"#
        )
    }

    #[test]
    fn steering_errors_name_the_call() {
        let names = SteerOp::VARIANTS.iter().map(SteerOp::to_string).collect::<Vec<_>>();
        let expected = [
            "get job status",
            "get job history",
            "pause job",
            "resume job",
            "trigger job",
            "list job status",
        ];
        assert_eq!(names, expected);
        assert_eq!(
            ApiError::Steer(SteerOp::History, status(Code::Internal, "x")).to_string(),
            "failed to get job history due to: rpc error: code = Internal desc = x"
        );
    }

    // spec §2.4: the whole table, one row per situation.
    #[test]
    fn spec_2_4_every_error_maps_to_its_status_code_and_body() {
        let exists = "job already exists: 'app||default||myapp||j'";
        let full = "store full (no space left on device): cannot write /data/jobs.redb";
        let cases: Vec<(ApiError, u16, Code, String)> = vec![
            (
                ApiError::MalformedBody("proto: syntax error (line 1:1): unexpected token [".into()),
                400,
                Code::InvalidArgument,
                r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"failed deserializing HTTP body: proto: syntax error (line 1:1): unexpected token ["}"#.into(),
            ),
            (
                ApiError::BodyRead("unexpected EOF".into()),
                400,
                Code::InvalidArgument,
                r#"{"errorCode":"ERR_BODY_READ","message":"failed to read request body: unexpected EOF"}"#.into(),
            ),
            (
                ApiError::NameInBody,
                400,
                Code::InvalidArgument,
                r#"{"errorCode":"DAPR_SCHEDULER_JOB_NAME","message":"Set the job name in the url only","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"dapr.io","metadata":{"appID":"myapp"},"reason":"DAPR_SCHEDULER_JOB_NAME"}]}"#.into(),
            ),
            (ApiError::EmptyJob, 400, Code::InvalidArgument, kit("DAPR_SCHEDULER_EMPTY", "Job is empty")),
            (ApiError::EmptyName, 400, Code::InvalidArgument, kit("DAPR_SCHEDULER_JOB_NAME_EMPTY", "Name is empty")),
            (
                ApiError::EmptySchedule,
                400,
                Code::InvalidArgument,
                kit("DAPR_SCHEDULER_SCHEDULE_EMPTY", "Schedule is empty"),
            ),
            (
                ApiError::ScheduleJob(status(Code::AlreadyExists, exists)),
                409,
                Code::AlreadyExists,
                kit(
                    "DAPR_SCHEDULER_SCHEDULE_JOB",
                    &format!("failed to schedule job due to: rpc error: code = AlreadyExists desc = {exists}"),
                ),
            ),
            (
                ApiError::ScheduleJob(status(Code::Unknown, "job failed validation: bad")),
                500,
                Code::Internal,
                kit(
                    "DAPR_SCHEDULER_SCHEDULE_JOB",
                    "failed to schedule job due to: rpc error: code = Unknown desc = job failed validation: bad",
                ),
            ),
            (
                ApiError::ScheduleJob(status(Code::InvalidArgument, "x")),
                400,
                Code::InvalidArgument,
                kit("DAPR_SCHEDULER_SCHEDULE_JOB", "failed to schedule job due to: rpc error: code = InvalidArgument desc = x"),
            ),
            (
                ApiError::ScheduleJob(status(Code::NotFound, "x")),
                404,
                Code::NotFound,
                kit("DAPR_SCHEDULER_SCHEDULE_JOB", "failed to schedule job due to: rpc error: code = NotFound desc = x"),
            ),
            (
                ApiError::ScheduleJob(status(Code::Unavailable, "x")),
                503,
                Code::Unavailable,
                kit("DAPR_SCHEDULER_SCHEDULE_JOB", "failed to schedule job due to: rpc error: code = Unavailable desc = x"),
            ),
            (
                ApiError::ScheduleJob(status(Code::Internal, "x")),
                500,
                Code::Internal,
                kit("DAPR_SCHEDULER_SCHEDULE_JOB", "failed to schedule job due to: rpc error: code = Internal desc = x"),
            ),
            (
                ApiError::ScheduleJob(status(Code::ResourceExhausted, full)),
                507,
                Code::ResourceExhausted,
                kit(
                    "DAPR_SCHEDULER_SCHEDULE_JOB",
                    &format!("failed to schedule job due to: rpc error: code = ResourceExhausted desc = {full}"),
                ),
            ),
            (
                ApiError::DeleteJob(status(Code::ResourceExhausted, full)),
                500,
                Code::Internal,
                kit(
                    "DAPR_SCHEDULER_DELETE_JOB",
                    &format!("failed to delete job due to: rpc error: code = ResourceExhausted desc = {full}"),
                ),
            ),
            (
                ApiError::ScheduleJob(SchedulerFailure::Unreachable),
                504,
                Code::DeadlineExceeded,
                kit(
                    "DAPR_SCHEDULER_SCHEDULE_JOB",
                    "failed to schedule job due to: rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                ),
            ),
            (
                ApiError::ScheduleJob(SchedulerFailure::Disabled),
                500,
                Code::Internal,
                kit("DAPR_SCHEDULER_SCHEDULE_JOB", "failed to schedule job due to: scheduler clients are disabled"),
            ),
            (
                ApiError::GetJob(status(Code::NotFound, "job not found: j")),
                500,
                Code::Internal,
                kit(
                    "DAPR_SCHEDULER_GET_JOB",
                    "failed to get job due to: rpc error: code = NotFound desc = job not found: j",
                ),
            ),
            (
                ApiError::GetJob(SchedulerFailure::Disabled),
                500,
                Code::Internal,
                kit("DAPR_SCHEDULER_GET_JOB", "failed to get job due to: scheduler clients are disabled"),
            ),
            (
                ApiError::GetJob(SchedulerFailure::Unreachable),
                500,
                Code::Internal,
                kit(
                    "DAPR_SCHEDULER_GET_JOB",
                    "failed to get job due to: rpc error: code = DeadlineExceeded desc = context deadline exceeded",
                ),
            ),
            (
                ApiError::DeleteJob(status(Code::Unavailable, "x")),
                500,
                Code::Internal,
                kit("DAPR_SCHEDULER_DELETE_JOB", "failed to delete job due to: rpc error: code = Unavailable desc = x"),
            ),
            (
                ApiError::DeleteJob(SchedulerFailure::Disabled),
                500,
                Code::Internal,
                kit("DAPR_SCHEDULER_DELETE_JOB", "failed to delete job due to: scheduler clients are disabled"),
            ),
            (
                ApiError::ListJobs(status(Code::Internal, "x")),
                500,
                Code::Internal,
                kit("DAPR_SCHEDULER_LIST_JOBS", "failed to list jobs due to: rpc error: code = Internal desc = x"),
            ),
            (
                ApiError::DeleteJobsByPrefix(status(Code::InvalidArgument, "x")),
                500,
                Code::Internal,
                kit("DAPR_SCHEDULER_DELETE_JOB", "failed to delete job due to: rpc error: code = InvalidArgument desc = x"),
            ),
            (
                ApiError::EncodeResponse(EncodeError::new("proto: google.protobuf.Any: type_url is not set")),
                500,
                Code::Internal,
                r#"{"errorCode":"ERR_INTERNAL","message":"failed to encode response as JSON: proto: google.protobuf.Any: type_url is not set"}"#.into(),
            ),
            (ApiError::Unauthenticated(AuthFailure::Missing), 401, Code::Unauthenticated, "invalid api token\n".into()),
            (ApiError::Unauthenticated(AuthFailure::Mismatch), 401, Code::Unauthenticated, "invalid api token\n".into()),
        ];
        for (err, http, grpc, body) in cases {
            assert_eq!(err.http_body("myapp", "default"), (http, body.clone()), "{err:?}");
            assert_eq!(err.http_status(), http, "{err:?}");
            assert_eq!(err.grpc_code(), grpc, "{err:?}");
            let status = err.grpc_status("myapp", "default");
            assert_eq!(status.code(), grpc, "{err:?}");
            assert_eq!(status.message(), err.to_string(), "{err:?}");
            if let Some(code) = err.row().error_code {
                let json: serde_json::Value = serde_json::from_str(&body).unwrap();
                assert_eq!(json["errorCode"], code, "{err:?}");
                assert_eq!(json["message"], err.to_string(), "{err:?}");
            }
        }
    }

    #[test]
    fn spec_2_4_schedule_job_status_follows_the_grpc_gateway_mapping() {
        for (code, http) in [
            (Code::Cancelled, 408),
            (Code::PermissionDenied, 403),
            (Code::Unauthenticated, 401),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::DataLoss, 500),
        ] {
            let err = ApiError::ScheduleJob(status(code, "x"));
            assert_eq!((err.http_status(), err.grpc_code()), (http, code), "{code:?}");
        }
    }

    #[test]
    fn spec_2_4_grpc_status_carries_error_info_for_kit_errors_only() {
        let status = ApiError::EmptySchedule.grpc_status("myapp", "ns");
        let decoded = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(decoded.code, Code::InvalidArgument as i32);
        assert_eq!(decoded.message, "Schedule is empty");
        assert_eq!(decoded.details.len(), 1);
        assert_eq!(decoded.details[0].type_url, ERROR_INFO_TYPE_URL);
        let info = ErrorInfo::decode(decoded.details[0].value.as_slice()).unwrap();
        assert_eq!(info.reason, "DAPR_SCHEDULER_SCHEDULE_EMPTY");
        assert_eq!(info.domain, "dapr.io");
        assert_eq!(
            info.metadata,
            BTreeMap::from([("appID".into(), "myapp".into()), ("namespace".into(), "ns".into())])
        );

        let info = RpcStatus::decode(ApiError::NameInBody.grpc_status("myapp", "ns").details()).unwrap();
        let info = ErrorInfo::decode(info.details[0].value.as_slice()).unwrap();
        assert_eq!(info.metadata, BTreeMap::from([("appID".into(), "myapp".into())]));

        assert!(ApiError::MalformedBody("x".into()).grpc_status("a", "n").details().is_empty());
        let status = ApiError::Unauthenticated(AuthFailure::Mismatch).grpc_status("a", "n");
        assert_eq!(status.message(), "authentication error: api token mismatch");
        assert!(status.details().is_empty());
    }

    #[test]
    fn bodies_escape_like_go_encoding_json() {
        let err =
            ApiError::ScheduleJob(status(Code::AlreadyExists, "job already exists: 'a<b>&\"c\u{2028}'"));
        let (_, body) = err.http_body("app\n", "ns");
        assert!(body.contains(r#"'a\u003cb\u003e\u0026\"c\u2028'"#), "{body}");
        assert!(body.contains(r#""appID":"app\n""#), "{body}");
        // still valid JSON with the same text
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["message"], err.to_string());
        assert_eq!(err.content_type(), "application/json");
        assert_eq!(
            ApiError::Unauthenticated(AuthFailure::Missing).content_type(),
            "text/plain; charset=utf-8"
        );
    }

    #[test]
    fn scheduler_status_converts_from_tonic() {
        let err = ApiError::ScheduleJob(tonic::Status::already_exists("dup").into());
        assert_eq!(
            err.to_string(),
            "failed to schedule job due to: rpc error: code = AlreadyExists desc = dup"
        );
        assert_eq!(go_code_name(Code::Cancelled), "Canceled");
    }
}
