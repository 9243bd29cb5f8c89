//! The HTTP Jobs API's JSON: the POST body in, the GET body out (spec §2.2, §2.3). Pure: no I/O.
//!
//! daprd reads the POST body with Go's `protojson` (`DiscardUnknown`, `AllowPartial`) into
//! `internals.v1.JobHTTPRequest`, and writes GET responses with `protojson` (`EmitUnpopulated:
//! false`) from the runtime `Job`. This module does both with `serde_json` and the protojson
//! codec of [`kairos_proto::json`], keeping the details that decide what SDKs see:
//!
//! * Field names: the JSON name (`dueTime`) or the proto name (`due_time`); unknown fields are
//!   skipped (their JSON must still be well formed, see [`proto_json::message_from_slice`]).
//! * A field given twice, under either name, is an error (`duplicate field`); so is a repeated
//!   key inside `data` (`duplicate map key`), and setting both `drop` and `constant`. Repeated
//!   *unknown* fields are fine, as in protojson.
//! * JSON `null` means "unset" for every field except `data`, whose type is
//!   `google.protobuf.Value`: there `null` is a value (the job gets data `null`).
//! * `repeats` and `maxRetries` are uint32: a JSON number or a string holding one, integral
//!   after exponent and fraction are applied (`1e2`, `5.0` and `"7"` are accepted; `-1`, `1.5`,
//!   `4294967296`, `" 7"` are not).
//! * `interval` is a protojson Duration string: `[+-]<digits>[.<up to 9 digits>]s`.
//! * Any JSON value is valid `data`; an object with `@type` is just an object.
//! * Error texts follow protojson's (`proto: (line 1:34): invalid value for uint32 field
//!   repeats: -1`), as [`kairos_proto::json`] gives them for every message it reads.
//!
//! Output is compact: Go's protojson randomly adds a space after some separators to stop
//! clients comparing bytes; kairos never does. Numbers inside `data` are formatted as Go does
//! (`1e+21`, `1e-7`, `-0`), see [`kairos_proto::json`].
//!
//! kairos extensions (skipped by upstream daprd, whose protojson discards unknown fields, so an
//! app that sends them to daprd gets Dapr's defaults):
//!
//! * `misfirePolicy` (or `misfire_policy`): `{"catchUp": "all" | "once" | "skip", "window": "1h"}`;
//!   both members optional (`catchUp` defaults to `all`, no `window` means no limit).
//! * `failurePolicy.exponential`: `{"initialInterval": "1s", "multiplier": 2, "maxInterval": "1m",
//!   "maxRetries": 5, "jitter": 0.1}`; `initialInterval` is required, `multiplier` defaults to 2,
//!   `jitter` to 0, no `maxInterval` means no cap, no `maxRetries` means retry forever. Snake-case
//!   names are accepted too. At most one of `drop`, `constant`, `exponential`.
//! * Their durations are Go duration strings (`1h30m`, `250ms`, `3600s`); GET renders them as
//!   protojson durations (`3600s`, `0.250s`), which read back the same.
//! * Bad values (unknown `catchUp`, an interval ≤ 0, a multiplier < 1, a jitter outside [0, 1], a
//!   `maxInterval` below `initialInterval`, a window under 1s) are a malformed body: 400
//!   `ERR_MALFORMED_REQUEST`, and nothing is stored.
//!
//! Kairos limits: JSON nesting deeper than [`proto_json::MAX_JSON_DEPTH`], and `data` deeper than
//! [`proto_json::MAX_DATA_DEPTH`] (what protobuf decoding in kairos accepts back), are refused as
//! malformed. protojson allows far deeper nesting.

use kairos_core::{JobSpec, Payload};
use kairos_proto::json::{self as proto_json, AnyJson, Object, VALUE_TYPE_URL};
use kairos_proto::{common, convert};
use prost::Message;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::errors::ApiError;

/// A schedule request read from `POST /v1.0/jobs/{name}` and checked as daprd does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRequest {
    /// The URL's name with surrounding whitespace removed.
    pub name: String,
    pub spec: JobSpec,
    pub overwrite: bool,
}

/// Why a job could not be rendered as protojson; the text is protojson's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EncodeError(String);

impl EncodeError {
    pub fn new(message: impl Into<String>) -> Self {
        EncodeError(message.into())
    }
}

/// Reads a POST body (spec §2.2) and runs daprd's checks, in daprd's order: the body must parse,
/// must not name the job, the URL name must not be blank, and a schedule or due time is needed.
/// An empty body is not parsed at all (so it fails with "Schedule is empty").
///
/// # Errors
/// [`ApiError::MalformedBody`], [`ApiError::NameInBody`], [`ApiError::EmptyName`] or
/// [`ApiError::EmptySchedule`].
pub fn parse_schedule_body(name_from_url: &str, body: &[u8]) -> Result<ScheduleRequest, ApiError> {
    let request = if body.is_empty() {
        HttpRequest::default()
    } else {
        proto_json::message_from_slice::<HttpRequest>(body)
            .map_err(|e| ApiError::MalformedBody(e.to_string()))?
    };
    if request.name.is_some_and(|name| !name.is_empty()) {
        return Err(ApiError::NameInBody);
    }
    // Go's strings.TrimSpace and Rust's trim agree: both strip Unicode White_Space.
    let name = name_from_url.trim();
    if name.is_empty() {
        return Err(ApiError::EmptyName);
    }
    if request.schedule.is_none() && request.due_time.is_none() {
        return Err(ApiError::EmptySchedule);
    }
    let failure_policy = match request.failure_policy {
        None => None,
        Some(Object(policy)) => convert::policy_from_proto(policy.into_proto()?)
            .map_err(|e| ApiError::MalformedBody(e.to_string()))?,
    };
    let misfire_policy = request
        .misfire_policy
        .map(|Object(m)| convert::misfire_from_proto(m.into_proto()))
        .transpose()
        .map_err(|e| ApiError::MalformedBody(e.to_string()))?;
    let spec = JobSpec {
        schedule: request.schedule,
        repeats: request.repeats,
        due_time: request.due_time,
        ttl: request.ttl,
        data: request.data.map(|v| Payload { type_url: VALUE_TYPE_URL.to_owned(), value: v.encode_to_vec() }),
        failure_policy,
        misfire_policy,
    };
    Ok(ScheduleRequest { name: name.to_owned(), spec, overwrite: request.overwrite.unwrap_or(false) })
}

/// Renders a job as the body of `GET /v1.0/jobs/{name}` (spec §2.3): protojson of the runtime
/// `Job`, fields in field-number order, unset ones left out; `data` as protojson renders an
/// `Any` ([`AnyJson`]).
///
/// # Errors
/// [`ApiError::EncodeResponse`] when `data` or the policy's interval cannot be rendered.
pub fn job_to_json(name: &str, spec: &JobSpec) -> Result<String, ApiError> {
    use common::job_failure_policy::Policy;
    let job = convert::spec_to_runtime_job(name, spec);
    let encode_error = |e: proto_json::JsonError| ApiError::EncodeResponse(EncodeError::new(e.to_string()));
    let failure_policy = match job.failure_policy.as_ref().map(|p| p.policy.as_ref()) {
        None => None,
        Some(None) => Some(PolicyJson::default()),
        Some(Some(Policy::Drop(_))) => Some(PolicyJson { drop: Some(Empty {}), ..PolicyJson::default() }),
        Some(Some(Policy::Constant(c))) => {
            let interval =
                c.interval.as_ref().map(proto_json::duration_to_string).transpose().map_err(encode_error)?;
            Some(PolicyJson {
                constant: Some(ConstantJson { interval, max_retries: c.max_retries }),
                ..PolicyJson::default()
            })
        }
        Some(Some(Policy::Exponential(e))) => {
            let duration = |d: &Option<prost_types::Duration>| {
                d.as_ref().map(proto_json::duration_to_string).transpose().map_err(encode_error)
            };
            Some(PolicyJson {
                exponential: Some(ExponentialJson {
                    initial_interval: duration(&e.initial_interval)?,
                    multiplier: e.multiplier,
                    max_interval: duration(&e.max_interval)?,
                    max_retries: e.max_retries,
                    jitter: e.jitter,
                }),
                ..PolicyJson::default()
            })
        }
    };
    let misfire_policy = match &job.misfire_policy {
        None => None,
        Some(m) => {
            let catch_up = match common::JobMisfireCatchUp::try_from(m.catch_up) {
                Ok(common::JobMisfireCatchUp::Once) => "once",
                Ok(common::JobMisfireCatchUp::Skip) => "skip",
                _ => "all",
            };
            let window =
                m.window.as_ref().map(proto_json::duration_to_string).transpose().map_err(encode_error)?;
            Some(MisfireJson { catch_up, window })
        }
    };
    let json = JobJson {
        name: &job.name,
        schedule: job.schedule.as_deref(),
        repeats: job.repeats,
        due_time: job.due_time.as_deref(),
        ttl: job.ttl.as_deref(),
        data: job.data.as_ref().map(|any| AnyJson::new(&any.type_url, &any.value)),
        failure_policy,
        misfire_policy,
    };
    proto_json::to_string(&json).map_err(encode_error)
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// `internals.v1.JobHTTPRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(expecting = "a job object")]
struct HttpRequest {
    name: Option<String>,
    schedule: Option<String>,
    #[serde(default, deserialize_with = "repeats")]
    repeats: Option<u32>,
    #[serde(rename = "dueTime", alias = "due_time")]
    due_time: Option<String>,
    ttl: Option<String>,
    // Not `Option<Value>`'s own reading: there `null` would be "unset", here it is a value.
    #[serde(default, deserialize_with = "proto_json::value_field")]
    data: Option<prost_types::Value>,
    overwrite: Option<bool>,
    #[serde(rename = "failurePolicy", alias = "failure_policy")]
    failure_policy: Option<Object<PolicyBody>>,
    #[serde(rename = "misfirePolicy", alias = "misfire_policy")]
    misfire_policy: Option<Object<MisfireBody>>,
}

/// `common.v1.JobMisfirePolicy` (a kairos extension), with the catch-up as a lowercase name.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a misfirePolicy object (JobMisfirePolicy)")]
struct MisfireBody {
    #[serde(rename = "catchUp", alias = "catch_up", default, deserialize_with = "catch_up")]
    catch_up: Option<kairos_core::CatchUp>,
    #[serde(default, deserialize_with = "go_duration")]
    window: Option<prost_types::Duration>,
}

impl MisfireBody {
    fn into_proto(self) -> common::JobMisfirePolicy {
        let catch_up = match self.catch_up.unwrap_or_default() {
            kairos_core::CatchUp::All => common::JobMisfireCatchUp::All,
            kairos_core::CatchUp::Once => common::JobMisfireCatchUp::Once,
            kairos_core::CatchUp::Skip => common::JobMisfireCatchUp::Skip,
        };
        common::JobMisfirePolicy { catch_up: catch_up.into(), window: self.window }
    }
}

/// `common.v1.JobFailurePolicyExponential` (a kairos extension).
#[derive(Debug, Deserialize)]
#[serde(expecting = "an exponential object (JobFailurePolicyExponential)")]
struct ExponentialBody {
    #[serde(
        rename = "initialInterval",
        alias = "initial_interval",
        default,
        deserialize_with = "go_duration"
    )]
    initial_interval: Option<prost_types::Duration>,
    multiplier: Option<f64>,
    #[serde(rename = "maxInterval", alias = "max_interval", default, deserialize_with = "go_duration")]
    max_interval: Option<prost_types::Duration>,
    #[serde(rename = "maxRetries", alias = "max_retries", default, deserialize_with = "max_retries")]
    max_retries: Option<u32>,
    jitter: Option<f64>,
}

/// `common.v1.JobFailurePolicy`: a oneof of `drop` and `constant`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a failurePolicy object (JobFailurePolicy)")]
struct PolicyBody {
    drop: Option<Object<DropBody>>,
    constant: Option<Object<ConstantBody>>,
    exponential: Option<Object<ExponentialBody>>,
}

/// `common.v1.JobFailurePolicyDrop`: no fields, but it must be an object.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a drop object (JobFailurePolicyDrop)")]
struct DropBody {}

/// `common.v1.JobFailurePolicyConstant`.
#[derive(Debug, Deserialize)]
#[serde(expecting = "a constant object (JobFailurePolicyConstant)")]
struct ConstantBody {
    #[serde(default, deserialize_with = "proto_json::duration_field")]
    interval: Option<prost_types::Duration>,
    #[serde(rename = "maxRetries", alias = "max_retries", default, deserialize_with = "max_retries")]
    max_retries: Option<u32>,
}

impl PolicyBody {
    fn into_proto(self) -> Result<common::JobFailurePolicy, ApiError> {
        use common::job_failure_policy::Policy;
        let already_set = |field: &str| {
            ApiError::MalformedBody(format!(
                "proto: error parsing \"{field}\", oneof dapr.proto.common.v1.JobFailurePolicy.policy is already set"
            ))
        };
        let policy = match (self.drop, self.constant, self.exponential) {
            (Some(_), Some(_), _) => return Err(already_set("constant")),
            (Some(_), None, Some(_)) | (None, Some(_), Some(_)) => return Err(already_set("exponential")),
            (Some(_), None, None) => Some(Policy::Drop(common::JobFailurePolicyDrop {})),
            (None, Some(Object(c)), None) => Some(Policy::Constant(common::JobFailurePolicyConstant {
                interval: c.interval,
                max_retries: c.max_retries,
            })),
            (None, None, Some(Object(e))) => Some(Policy::Exponential(common::JobFailurePolicyExponential {
                initial_interval: e.initial_interval,
                multiplier: e.multiplier,
                max_interval: e.max_interval,
                max_retries: e.max_retries,
                jitter: e.jitter,
            })),
            (None, None, None) => None,
        };
        Ok(common::JobFailurePolicy { policy })
    }
}

/// A Go duration string (`1h30m`, `250ms`, `3600s`), for the extensions' durations.
fn go_duration<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<prost_types::Duration>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
    let d = kairos_core::duration::parse_go_duration(&text)
        .map_err(|e| de::Error::custom(format_args!("invalid duration {text:?}: {e}")))?;
    Ok(Some(convert::duration_to_proto(d)))
}

fn catch_up<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<kairos_core::CatchUp>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
    text.parse().map(Some).map_err(de::Error::custom)
}

fn repeats<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    proto_json::uint32_field(deserializer, "repeats")
}

fn max_retries<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
    proto_json::uint32_field(deserializer, "maxRetries")
}

// ---------------------------------------------------------------------------------------------
// Writing: protojson with EmitUnpopulated false.
// ---------------------------------------------------------------------------------------------

/// The runtime `Job` as protojson writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobJson<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    schedule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeats: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    due_time: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<AnyJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure_policy: Option<PolicyJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    misfire_policy: Option<MisfireJson>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MisfireJson {
    catch_up: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    window: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExponentialJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    initial_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    multiplier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_retries: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    jitter: Option<f64>,
}

#[derive(Default, Serialize)]
struct PolicyJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    drop: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    constant: Option<ConstantJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exponential: Option<ExponentialJson>,
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConstantJson {
    #[serde(skip_serializing_if = "Option::is_none")]
    interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_retries: Option<u32>,
}
