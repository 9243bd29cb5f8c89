//! Job payloads: the `google.protobuf.Any` a job carries, and how JSON goes in and comes out.
//!
//! # Representation
//!
//! [`JobData::json`] (and so [`Job::data_json`](crate::Job::data_json)) stores a JSON value as
//! `Any{type_url: "type.googleapis.com/google.protobuf.Value", value: <encoded Value>}`, exactly
//! what the sidecar stores for a job scheduled over HTTP. That choice makes the payload readable
//! everywhere the sidecar renders it: an HTTP app receives the JSON itself as the body of
//! `POST /job/<name>`, and `GET /v1.0/jobs/<name>` shows it as JSON (raw bytes with an empty type
//! URL make that GET fail with a 500, spec §2.3). The type URL also says "this is JSON", so no
//! reader has to guess.
//!
//! Handlers written with other SDKs receive the raw `Any.value`, which for this representation
//! is protobuf bytes, not JSON text. To feed a Go or Python handler that parses JSON from the raw
//! bytes, use [`JobData::raw_json`] (`Any{type_url: "", value: <json text>}`, as the Go and Python
//! examples send).
//!
//! [`JobData::decode_json`] and [`JobEvent::data_json`](crate::JobEvent::data_json) read both
//! forms: a `Value`-typed `Any` is decoded as protobuf, anything else is parsed as JSON text.

use kairos_proto::json::{self as proto_json, JsonError};
use prost::Message;
use prost_types::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The type URL of a payload that holds a JSON value as a `google.protobuf.Value`.
pub use kairos_proto::json::VALUE_TYPE_URL;

/// Why a payload could not be built or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// The job carries no payload.
    #[error("the job has no data")]
    Missing,
    /// Serialising to, or deserialising from, JSON failed.
    #[error("job data is not the expected JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A `Value`-typed payload does not hold valid protobuf bytes.
    #[error("job data typed {VALUE_TYPE_URL} holds invalid protobuf bytes: {0}")]
    Protobuf(#[source] prost::DecodeError),
    /// A `Value` that protojson cannot write as JSON: an infinite or NaN number, or a nested
    /// value with no kind.
    #[error("job data holds a value JSON cannot represent: {0}")]
    NotJson(#[source] JsonError),
    /// The payload is not UTF-8 text.
    #[error("job data is not UTF-8 text: {0}")]
    Utf8(#[source] std::str::Utf8Error),
}

/// A job's payload: the `type_url` and `value` of its `google.protobuf.Any`, byte for byte.
///
/// ```
/// use kairos_sdk::{JobData, VALUE_TYPE_URL};
///
/// let data = JobData::json(&serde_json::json!({"db": "prod"})).unwrap();
/// assert_eq!(data.type_url, VALUE_TYPE_URL);
/// let back: serde_json::Value = data.decode_json().unwrap();
/// assert_eq!(back["db"], "prod");
///
/// let raw = JobData::raw_json(&[1, 2, 3]).unwrap();
/// assert_eq!((raw.type_url.as_str(), raw.value.as_slice()), ("", &b"[1,2,3]"[..]));
/// assert_eq!(raw.decode_json::<Vec<u8>>().unwrap(), vec![1, 2, 3]);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobData {
    /// The `Any.type_url`; empty for raw bytes.
    pub type_url: String,
    /// The `Any.value`, as stored and delivered.
    pub value: Vec<u8>,
}

impl JobData {
    /// A JSON value as a `google.protobuf.Value`-typed `Any` (see the module docs for why).
    ///
    /// Numbers become doubles, as protojson does: integers beyond ±2^53 lose precision.
    ///
    /// # Errors
    /// [`DataError::Json`] when `value` cannot be serialised to JSON.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, DataError> {
        let json = serde_json::to_value(value).map_err(DataError::Json)?;
        let value = proto_json::value_from_json(json).map_err(DataError::NotJson)?;
        Ok(JobData { type_url: VALUE_TYPE_URL.to_owned(), value: value.encode_to_vec() })
    }

    /// A JSON value as raw JSON text with an empty type URL, as the Go and Python examples send.
    ///
    /// # Errors
    /// [`DataError::Json`] when `value` cannot be serialised to JSON.
    pub fn raw_json<T: Serialize + ?Sized>(value: &T) -> Result<Self, DataError> {
        Ok(JobData { type_url: String::new(), value: serde_json::to_vec(value).map_err(DataError::Json)? })
    }

    /// Raw bytes with an empty type URL.
    pub fn bytes(value: impl Into<Vec<u8>>) -> Self {
        JobData { type_url: String::new(), value: value.into() }
    }

    /// Any type URL and bytes, e.g. an encoded protobuf message and its
    /// `type.googleapis.com/<full name>`.
    pub fn any(type_url: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        JobData { type_url: type_url.into(), value: value.into() }
    }

    /// Whether the payload is a `google.protobuf.Value` (JSON scheduled over HTTP or with
    /// [`JobData::json`]).
    pub fn is_json_value(&self) -> bool {
        is_value_type_url(&self.type_url)
    }

    /// Deserialises the payload: a `Value`-typed payload from its protobuf bytes, any other from
    /// JSON text.
    ///
    /// # Errors
    /// [`DataError::Missing`] for an empty payload; otherwise [`DataError::Protobuf`],
    /// [`DataError::NotJson`] or [`DataError::Json`] when the bytes are not what `T` expects.
    pub fn decode_json<T: DeserializeOwned>(&self) -> Result<T, DataError> {
        decode_json(&self.type_url, &self.value)
    }

    /// The payload as a JSON value, decoded as [`JobData::decode_json`] does.
    ///
    /// # Errors
    /// As [`JobData::decode_json`].
    pub fn to_json(&self) -> Result<serde_json::Value, DataError> {
        self.decode_json()
    }

    /// The raw bytes as UTF-8 text (not decoded: a `Value`-typed payload is protobuf).
    ///
    /// # Errors
    /// [`DataError::Utf8`] when the bytes are not UTF-8.
    pub fn as_str(&self) -> Result<&str, DataError> {
        std::str::from_utf8(&self.value).map_err(DataError::Utf8)
    }
}

impl From<prost_types::Any> for JobData {
    fn from(any: prost_types::Any) -> Self {
        JobData { type_url: any.type_url, value: any.value }
    }
}

impl From<JobData> for prost_types::Any {
    fn from(data: JobData) -> Self {
        prost_types::Any { type_url: data.type_url, value: data.value }
    }
}

/// `type.googleapis.com/google.protobuf.Value`, or the same type under another host.
pub(crate) fn is_value_type_url(type_url: &str) -> bool {
    type_url == VALUE_TYPE_URL || type_url.rsplit_once('/').is_some_and(|(_, t)| t == "google.protobuf.Value")
}

pub(crate) fn decode_json<T: DeserializeOwned>(type_url: &str, value: &[u8]) -> Result<T, DataError> {
    if is_value_type_url(type_url) {
        let decoded = Value::decode(value).map_err(DataError::Protobuf)?;
        // An empty payload is a Value with no kind; read it as null rather than fail as
        // protojson's writer would (nested kind-less values do fail: no writer makes them).
        if decoded.kind.is_none() {
            return serde_json::from_value(serde_json::Value::Null).map_err(DataError::Json);
        }
        let json = proto_json::value_to_json(&decoded).map_err(DataError::NotJson)?;
        serde_json::from_value(json).map_err(DataError::Json)
    } else if value.is_empty() {
        Err(DataError::Missing)
    } else {
        serde_json::from_slice(value).map_err(DataError::Json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_value_typed_any() {
        // Every JSON kind through `Value` is kairos_proto::json's test; this one is the wrapping.
        for v in
            [json!(null), json!({"task": "db-backup", "metadata": {"db": "prod", "location": "/backup"}})]
        {
            let data = JobData::json(&v).unwrap();
            assert_eq!(data.type_url, VALUE_TYPE_URL);
            assert_eq!(data.to_json().unwrap(), v, "{v}");
        }
    }

    #[test]
    fn string_value_is_encoded_as_protobuf_field_3() {
        // Value.string_value is field 3, length-delimited: what the sidecar stores for HTTP data.
        assert_eq!(JobData::json("hi").unwrap().value, b"\x1a\x02hi");
    }

    #[test]
    fn integral_numbers_decode_into_integer_types() {
        let data = JobData::json(&json!({"n": 42})).unwrap();
        #[derive(serde::Deserialize)]
        struct N {
            n: u32,
        }
        assert_eq!(data.decode_json::<N>().unwrap().n, 42);
    }

    #[test]
    fn numbers_keep_their_protojson_form() {
        let data = JobData::json(&json!({"b": 1e20, "d": -0.0})).unwrap();
        let value = Value::decode(data.value.as_slice()).unwrap();
        assert_eq!(proto_json::value_to_string(&value).unwrap(), r#"{"b":100000000000000000000,"d":-0}"#);
        let back = data.to_json().unwrap();
        assert!(back["d"].as_f64().is_some_and(|d| d == 0.0 && d.is_sign_negative()));
    }

    #[test]
    fn raw_json_decodes_from_text() {
        let data = JobData::raw_json(&json!({"a": 1})).unwrap();
        assert_eq!(data.as_str().unwrap(), r#"{"a":1}"#);
        assert_eq!(data.to_json().unwrap(), json!({"a": 1}));
    }

    #[test]
    fn value_type_url_under_another_host_is_recognised() {
        assert!(is_value_type_url("example.com/google.protobuf.Value"));
        assert!(!is_value_type_url("type.googleapis.com/google.protobuf.StringValue"));
        assert!(!is_value_type_url(""));
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        assert!(matches!(JobData::default().to_json(), Err(DataError::Missing)));
        assert!(matches!(
            JobData::any(VALUE_TYPE_URL, b"\xff\xff\xff".to_vec()).to_json(),
            Err(DataError::Protobuf(_))
        ));
        assert!(matches!(JobData::bytes(b"not json".to_vec()).to_json(), Err(DataError::Json(_))));
        assert!(matches!(JobData::bytes(b"\xff".to_vec()).as_str(), Err(DataError::Utf8(_))));
        let inf = Value { kind: Some(prost_types::value::Kind::NumberValue(f64::INFINITY)) };
        let inf = JobData::any(VALUE_TYPE_URL, inf.encode_to_vec());
        assert!(matches!(inf.to_json(), Err(DataError::NotJson(_))));
        // An empty Value-typed payload is an empty Value message: JSON null.
        assert_eq!(JobData::any(VALUE_TYPE_URL, Vec::new()).to_json().unwrap(), json!(null));
    }
}
