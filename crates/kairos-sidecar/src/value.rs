//! JSON ⇄ `google.protobuf.Value`, the type of job data scheduled over HTTP (spec §2.2, §4.2).
//!
//! A JSON `data` field is stored as `Any{type_url: VALUE_TYPE_URL, value: <encoded Value>}`;
//! it is rendered back as JSON for GET responses and HTTP app deliveries.

use prost::Message;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};

/// The type URL of a job payload that holds a JSON value.
pub const VALUE_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Value";

/// Why encoded `Value` bytes could not be rendered as JSON.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    #[error("invalid google.protobuf.Value bytes: {0}")]
    Decode(String),
    /// Infinity and NaN have no JSON form.
    #[error("google.protobuf.Value holds a number JSON cannot represent: {0}")]
    NonFinite(f64),
}

/// A JSON value as a protobuf `Value`.
pub fn json_to_value(json: &serde_json::Value) -> Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(*b),
        // JSON numbers become doubles, as protojson does.
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s.clone()),
        serde_json::Value::Array(items) => {
            Kind::ListValue(ListValue { values: items.iter().map(json_to_value).collect() })
        }
        serde_json::Value::Object(map) => Kind::StructValue(Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), json_to_value(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// A protobuf `Value` as JSON.
///
/// # Errors
/// [`ValueError::NonFinite`] for an infinite or NaN number.
pub fn value_to_json(value: &Value) -> Result<serde_json::Value, ValueError> {
    Ok(match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => number_to_json(*n)?,
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(value_to_json).collect::<Result<_, _>>()?)
        }
        Some(Kind::StructValue(s)) => serde_json::Value::Object(
            s.fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), value_to_json(v)?)))
                .collect::<Result<_, ValueError>>()?,
        ),
    })
}

/// Integral doubles render without a fraction (`123`, not `123.0`), as Go's protojson does.
fn number_to_json(n: f64) -> Result<serde_json::Value, ValueError> {
    if !n.is_finite() {
        return Err(ValueError::NonFinite(n));
    }
    #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        return Ok(serde_json::Value::from(n as i64));
    }
    serde_json::Number::from_f64(n).map(serde_json::Value::Number).ok_or(ValueError::NonFinite(n))
}

/// Encodes a JSON value as `google.protobuf.Value` bytes.
pub fn json_to_value_bytes(json: &serde_json::Value) -> Vec<u8> {
    json_to_value(json).encode_to_vec()
}

/// Decodes `google.protobuf.Value` bytes and renders them as compact JSON text.
///
/// # Errors
/// [`ValueError`] when the bytes are not a `Value` or hold a non-finite number.
pub fn value_bytes_to_json(bytes: &[u8]) -> Result<serde_json::Value, ValueError> {
    let value = Value::decode(bytes).map_err(|e| ValueError::Decode(e.to_string()))?;
    value_to_json(&value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_round_trips_through_value_bytes() {
        for v in [
            json!("hello world"),
            json!(123),
            json!(-1.5),
            json!(true),
            json!(null),
            json!([1, "two", {"three": 3}]),
            json!({"Task": "db-backup", "Metadata": {"DBName": "my-prod-db", "BackupLocation": "/backup-dir"}}),
            json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x"}),
        ] {
            assert_eq!(value_bytes_to_json(&json_to_value_bytes(&v)).unwrap(), v, "{v}");
        }
    }

    #[test]
    fn string_value_encodes_as_protobuf_kind_field_3() {
        // Value.string_value is field 3, length-delimited: 0x1a, len, bytes.
        assert_eq!(json_to_value_bytes(&json!("hi")), b"\x1a\x02hi");
    }

    #[test]
    fn integral_numbers_render_without_fraction() {
        assert_eq!(value_bytes_to_json(&json_to_value_bytes(&json!(123.0))).unwrap().to_string(), "123");
        assert_eq!(value_bytes_to_json(&json_to_value_bytes(&json!(0.5))).unwrap().to_string(), "0.5");
    }

    #[test]
    fn garbage_bytes_are_an_error_not_a_panic() {
        assert!(value_bytes_to_json(b"\xff\xff\xff").is_err());
        let inf = Value { kind: Some(Kind::NumberValue(f64::INFINITY)) };
        assert!(value_to_json(&inf).is_err());
    }
}
