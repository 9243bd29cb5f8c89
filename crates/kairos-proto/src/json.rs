//! Protojson for the messages kairos shows as JSON, written once for every crate.
//!
//! * `google.protobuf.Value` (with `Struct` and `ListValue`) both ways: [`ValueSeed`] reads JSON
//!   into a `Value`, [`ValueJson`] writes one. The sidecar uses them for the `data` of an HTTP
//!   POST body, for `GET /v1.0/jobs/{name}` and for the body of an HTTP app delivery; the SDK for
//!   its `JobData::json` payloads. So a job's data looks the same on every path.
//! * `google.protobuf.Any` of the well-known types, out only ([`AnyJson`]), and
//!   `google.protobuf.Duration` both ways ([`parse_duration`], [`duration_to_string`]).
//! * uint32 fields in, from their raw JSON text ([`uint32_from_raw`]).
//! * Messages in, as `protojson.Unmarshal` with `DiscardUnknown` reads them
//!   ([`message_from_slice`]): one JSON object ([`Object`] for message-typed fields), unknown
//!   fields skipped but checked as protojson checks them, and field readers where protojson
//!   reads a field otherwise than serde does ([`value_field`], [`duration_field`],
//!   [`uint32_field`]). The sidecar reads the HTTP `POST /v1.0/jobs/{name}` body with them.
//!
//! Numbers are written as Go's protojson writes them (a `serde_json` [`GoFormatter`]): shortest
//! round-trip digits, positional for 1e-6 ≤ |n| < 1e21 and exponent form outside (`1e+21`,
//! `1e-7`), `-0` kept. So `{"b":1e20,"d":-0.0}` comes out as `{"b":100000000000000000000,"d":-0}`
//! wherever kairos writes it, as daprd writes it for GET (`protojson.Marshal`) and for HTTP app
//! delivery (`structpb.Value.MarshalJSON`, which is protojson too). Strings are escaped as
//! protojson does (only `"`, `\` and control characters), which is `serde_json`'s escaping.
//! Output is compact: protojson's random extra spaces are never added.
//!
//! Error texts follow protojson's (`proto: google.protobuf.Value: none of the oneof fields is
//! set`, `proto: (line 1:34): invalid value for uint32 field repeats: -1`). Those of reading are
//! informative, not byte-for-byte guaranteed (positions are where the reader stopped, which
//! protojson puts at the start of the token).

use std::collections::BTreeMap;
use std::fmt;
use std::io;

use base64::Engine as _;
use jiff::SignedDuration;
use jiff::civil::DateTime;
use prost::Message;
use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{self, Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::value::RawValue;

/// The type URL of a payload that holds a JSON value as a `google.protobuf.Value`.
pub const VALUE_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Value";

/// protojson's bound on a `google.protobuf.Duration`: ±10 000 years of seconds.
pub const MAX_DURATION_SECONDS: i64 = 315_576_000_000;

/// The deepest nesting of `Any` inside `Any` that [`AnyJson`] renders.
const MAX_ANY_DEPTH: usize = 32;

/// Below 2^53 every integral double is exactly an `i64`.
const EXACT_INTEGER_LIMIT: f64 = 9_007_199_254_740_992.0;

/// Why a message could not be rendered as (or read from) JSON; the text is protojson's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(String);

impl JsonError {
    /// An error with this text.
    pub fn new(message: impl Into<String>) -> Self {
        JsonError(message.into())
    }
}

/// Renders `value` as compact JSON with Go's number formatting.
///
/// # Errors
/// [`JsonError`] with the serializer's text, e.g. for a `Value` protojson cannot render.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, JsonError> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut serializer).map_err(|e| JsonError(e.to_string()))?;
    // serde_json writes UTF-8 only.
    String::from_utf8(out).map_err(|e| JsonError(e.to_string()))
}

/// A `google.protobuf.Value` as protojson text.
///
/// # Errors
/// [`JsonError`] for a value (or a nested one) with no kind or a non-finite number.
pub fn value_to_string(value: &Value) -> Result<String, JsonError> {
    to_string(&ValueJson(value))
}

/// A `google.protobuf.Value` as a `serde_json` value, for typed deserialisation: integral
/// numbers below 2^53 (except `-0`) become JSON integers, so they read into integer types.
///
/// # Errors
/// As [`value_to_string`].
pub fn value_to_json(value: &Value) -> Result<serde_json::Value, JsonError> {
    serde_json::to_value(ValueJson(value)).map_err(|e| JsonError(e.to_string()))
}

/// A `serde_json` value as a `google.protobuf.Value` (numbers become doubles, as in protojson).
///
/// # Errors
/// None in practice: a `serde_json` value has no duplicate keys and no non-finite numbers.
pub fn value_from_json(json: serde_json::Value) -> Result<Value, JsonError> {
    ValueSeed::new(usize::MAX).deserialize(json).map_err(|e| JsonError(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Numbers as Go writes them
// ---------------------------------------------------------------------------------------------

/// A `serde_json` formatter that writes floats as Go's `protojson` and `encoding/json` do; every
/// other token as `serde_json`'s compact formatter.
#[derive(Debug, Clone, Copy, Default)]
pub struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        writer.write_all(go_float(value, false).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f32) -> io::Result<()> {
        writer.write_all(go_float(f64::from(value), true).as_bytes())
    }
}

/// Go's `strconv.AppendFloat(n, fmt, -1, bits)` with protojson's choice of `fmt`: shortest
/// round-trip digits, `'f'` for 1e-6 ≤ |n| < 1e21 and `'e'` outside, with the exponent's sign
/// always written and its leading zero dropped (`1e+21`, `1e-7`). `single` formats a float32.
/// Finite numbers only: serde_json writes non-finite ones as `null` before asking.
fn go_float(n: f64, single: bool) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let narrow = n as f32;
    // Go compares a float32 with float32 bounds, which are not the float64 ones.
    let exponent_form = if single {
        narrow != 0.0 && !(1e-6f32..1e21f32).contains(&narrow.abs())
    } else {
        n != 0.0 && !(1e-6..1e21).contains(&n.abs())
    };
    // Rust's float formatting gives the shortest round-trip digits, as Go's -1 precision does.
    let text = match (single, exponent_form) {
        (false, false) => format!("{n}"),
        (true, false) => format!("{narrow}"),
        (false, true) => format!("{n:e}"),
        (true, true) => format!("{narrow:e}"),
    };
    match text.split_once('e') {
        Some((mantissa, exp)) if !exp.starts_with('-') => format!("{mantissa}e+{exp}"),
        _ => text,
    }
}

// ---------------------------------------------------------------------------------------------
// google.protobuf.Value
// ---------------------------------------------------------------------------------------------

/// Writes a `google.protobuf.Value` as protojson does; fails, as protojson does, for a value
/// with no kind and for NaN or an infinity.
#[derive(Debug, Clone, Copy)]
pub struct ValueJson<'a>(pub &'a Value);

impl Serialize for ValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.0.kind {
            None => Err(ser::Error::custom("proto: google.protobuf.Value: none of the oneof fields is set")),
            Some(Kind::NullValue(_)) => serializer.serialize_unit(),
            Some(Kind::BoolValue(b)) => serializer.serialize_bool(*b),
            Some(Kind::NumberValue(n)) => serialize_number(*n, serializer),
            Some(Kind::StringValue(s)) => serializer.serialize_str(s),
            Some(Kind::ListValue(list)) => serialize_list(list, serializer),
            Some(Kind::StructValue(s)) => serialize_struct(s, serializer),
        }
    }
}

fn serialize_number<S: Serializer>(n: f64, serializer: S) -> Result<S::Ok, S::Error> {
    if !n.is_finite() {
        let shown = if n.is_nan() {
            "NaN"
        } else if n > 0.0 {
            "+Inf"
        } else {
            "-Inf"
        };
        return Err(ser::Error::custom(format_args!(
            "proto: google.protobuf.Value.number_value: invalid {shown} value"
        )));
    }
    // An integer writes the same digits as Go's shortest form, and reads into integer types
    // after `serde_json::to_value`; -0 must stay a float to keep its sign.
    #[allow(clippy::cast_possible_truncation, clippy::float_cmp)]
    if n.fract() == 0.0 && n.abs() < EXACT_INTEGER_LIMIT && !(n == 0.0 && n.is_sign_negative()) {
        return serializer.serialize_i64(n as i64);
    }
    serializer.serialize_f64(n)
}

fn serialize_list<S: Serializer>(list: &ListValue, serializer: S) -> Result<S::Ok, S::Error> {
    let mut seq = serializer.serialize_seq(Some(list.values.len()))?;
    for value in &list.values {
        seq.serialize_element(&ValueJson(value))?;
    }
    seq.end()
}

/// Keys come out sorted bytewise (the `BTreeMap` order), as protojson sorts map keys.
fn serialize_struct<S: Serializer>(s: &Struct, serializer: S) -> Result<S::Ok, S::Error> {
    let mut map = serializer.serialize_map(Some(s.fields.len()))?;
    for (key, value) in &s.fields {
        map.serialize_entry(key, &ValueJson(value))?;
    }
    map.end()
}

/// Reads any JSON value as a `google.protobuf.Value`, as protojson does: numbers become
/// doubles, a repeated object key is an error (`duplicate map key "a"`), and arrays and objects
/// may nest at most `max_depth` levels (deeper ones would not decode again: prost stops at 100
/// nested messages, and each level is a `Value` plus a list or struct).
#[derive(Debug, Clone, Copy)]
pub struct ValueSeed {
    depth: usize,
    max_depth: usize,
}

impl ValueSeed {
    /// A reader that refuses arrays and objects nested deeper than `max_depth` levels.
    pub fn new(max_depth: usize) -> Self {
        ValueSeed { depth: 0, max_depth }
    }

    fn nested(self) -> Result<Self, String> {
        if self.depth >= self.max_depth {
            return Err(format!("value nests deeper than kairos supports ({} levels)", self.max_depth));
        }
        Ok(ValueSeed { depth: self.depth + 1, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

fn kind(kind: Kind) -> Value {
    Value { kind: Some(kind) }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(kind(Kind::NullValue(0)))
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(kind(Kind::BoolValue(b)))
    }

    // Integer to double rounds to nearest, as parsing the digits as a double would.
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        Ok(kind(Kind::NumberValue(n as f64)))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        Ok(kind(Kind::NumberValue(n as f64)))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        if !n.is_finite() {
            return Err(E::custom(format_args!("invalid google.protobuf.Value: {n}")));
        }
        Ok(kind(Kind::NumberValue(n)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(kind(Kind::StringValue(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(kind(Kind::StringValue(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let child = self.nested().map_err(de::Error::custom)?;
        let mut values = Vec::new();
        while let Some(value) = seq.next_element_seed(child)? {
            values.push(value);
        }
        Ok(kind(Kind::ListValue(ListValue { values })))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let child = self.nested().map_err(de::Error::custom)?;
        let mut fields = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(child)?;
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format_args!("duplicate map key {key:?}")));
            }
            fields.insert(key, value);
        }
        Ok(kind(Kind::StructValue(Struct { fields })))
    }
}

// ---------------------------------------------------------------------------------------------
// uint32 fields
// ---------------------------------------------------------------------------------------------

/// Reads a uint32 field as protojson does, from the raw JSON text of its value: a JSON number,
/// or a string holding one (no surrounding whitespace; only its first JSON token is read),
/// integral once exponent and fraction are applied to the decimal digits (`1e2`, `5.0` and
/// `"7"` are 100, 5 and 7; `-1`, `1.5`, `4294967296` and `" 7"` are not uint32s). The raw text
/// is needed because a double would round `4294967295.00000000001` to an integer.
pub fn uint32_from_raw(raw: &str) -> Option<u32> {
    if !raw.starts_with('"') {
        return json_number_to_u32(raw);
    }
    let s: String = serde_json::from_str(raw).ok()?;
    let len = if s.trim() == s { json_number_len(s.as_bytes())? } else { return None };
    json_number_to_u32(&s[..len])
}

/// Go's JSON decoder: a number or literal must not run into one of these.
fn is_not_delim(c: u8) -> bool {
    matches!(c, b'-' | b'+' | b'.' | b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9')
}

/// The length of the JSON number at the start of `s`, if one is there and ends at a delimiter.
fn json_number_len(s: &[u8]) -> Option<usize> {
    let mut i = usize::from(s.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return None,
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        digits(&mut i).then_some(())?;
    }
    if let Some(b'e' | b'E') = s.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = s.get(i) {
            i += 1;
        }
        digits(&mut i).then_some(())?;
    }
    (!s.get(i).is_some_and(|&c| is_not_delim(c))).then_some(i)
}

/// A JSON number token as a uint32, exactly: its value is `digits × 10^scale`; with the
/// digits' own zeros moved into the scale, it is an integer iff the scale is not negative.
fn json_number_to_u32(token: &str) -> Option<u32> {
    let (negative, rest) = match token.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, token),
    };
    let (mantissa, exponent) = match rest.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int_part, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = format!("{int_part}{fraction}");
    let significant = all_digits.trim_start_matches('0');
    let digits = significant.trim_end_matches('0');
    if digits.is_empty() {
        return Some(0); // -0 is 0
    }
    let scale = i64::from(exponent) - fraction.len() as i64 + (significant.len() - digits.len()) as i64;
    if negative || scale < 0 || digits.len() as i64 + scale > 10 {
        return None;
    }
    format!("{digits}{}", "0".repeat(usize::try_from(scale).ok()?)).parse().ok()
}

// ---------------------------------------------------------------------------------------------
// google.protobuf.Any of the well-known types
// ---------------------------------------------------------------------------------------------

/// Writes an `Any` as protojson does, with the types daprd can resolve that kairos knows:
///
/// * neither type URL nor value → `{}`; a value without a type URL is an error;
/// * the type is the URL's text after its last `/`; these render as
///   `{"@type":<url>,"value":<JSON>}`: `google.protobuf.Value`, `Struct`, `ListValue`,
///   `Empty`, `Duration`, `Timestamp`, `Any`, and the wrappers `StringValue`, `BytesValue`,
///   `BoolValue`, `Int32Value`, `Int64Value`, `UInt32Value`, `UInt64Value`, `DoubleValue`,
///   `FloatValue`;
/// * any other type is an error ("unable to resolve"), like daprd for a type outside its
///   registry. (daprd also knows its own and other linked message types, such as
///   `google.protobuf.FieldMask` or `dapr.proto.*`; kairos refuses those too.)
#[derive(Debug, Clone, Copy)]
pub struct AnyJson<'a> {
    type_url: &'a str,
    value: &'a [u8],
    depth: usize,
}

impl<'a> AnyJson<'a> {
    /// The `Any` with this type URL and value.
    pub fn new(type_url: &'a str, value: &'a [u8]) -> Self {
        AnyJson { type_url, value, depth: 0 }
    }
}

/// `{}`, for `google.protobuf.Empty`.
#[derive(serde::Serialize)]
struct Empty {}

/// A float or double wrapper: protojson writes NaN and the infinities as strings.
struct WrappedFloat(f64, bool);

impl Serialize for WrappedFloat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let WrappedFloat(n, single) = *self;
        if n.is_nan() {
            serializer.serialize_str("NaN")
        } else if n.is_infinite() {
            serializer.serialize_str(if n > 0.0 { "Infinity" } else { "-Infinity" })
        } else if single {
            #[allow(clippy::cast_possible_truncation)]
            serializer.serialize_f32(n as f32)
        } else {
            serializer.serialize_f64(n)
        }
    }
}

impl Serialize for AnyJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let AnyJson { type_url, value, depth } = *self;
        if type_url.is_empty() {
            if value.is_empty() {
                return Empty {}.serialize(serializer);
            }
            return Err(ser::Error::custom("proto: google.protobuf.Any: type_url is not set"));
        }
        if depth >= MAX_ANY_DEPTH {
            return Err(ser::Error::custom("proto: exceeded max recursion depth"));
        }
        fn decode<M: Message + Default, E: ser::Error>(type_url: &str, bytes: &[u8]) -> Result<M, E> {
            M::decode(bytes).map_err(|e| {
                E::custom(format_args!("proto: google.protobuf.Any: unable to unmarshal {type_url:?}: {e}"))
            })
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_key("@type")?;
        map.serialize_value(type_url)?;
        map.serialize_key("value")?;
        let type_name = type_url.rsplit('/').next().unwrap_or(type_url);
        match type_name {
            "google.protobuf.Value" => {
                map.serialize_value(&ValueJson(&decode::<_, S::Error>(type_url, value)?))?
            }
            "google.protobuf.Struct" => {
                map.serialize_value(&ValueJson(&kind(Kind::StructValue(decode::<_, S::Error>(
                    type_url, value,
                )?))))?;
            }
            "google.protobuf.ListValue" => {
                map.serialize_value(&ValueJson(&kind(Kind::ListValue(decode::<_, S::Error>(
                    type_url, value,
                )?))))?;
            }
            "google.protobuf.Empty" => {
                decode::<(), S::Error>(type_url, value)?;
                map.serialize_value(&Empty {})?;
            }
            "google.protobuf.Duration" => {
                let text = duration_to_string(&decode::<_, S::Error>(type_url, value)?)
                    .map_err(ser::Error::custom)?;
                map.serialize_value(&text)?;
            }
            "google.protobuf.Timestamp" => {
                let text = timestamp_to_string(&decode::<_, S::Error>(type_url, value)?)
                    .map_err(ser::Error::custom)?;
                map.serialize_value(&text)?;
            }
            "google.protobuf.Any" => {
                let inner: prost_types::Any = decode::<_, S::Error>(type_url, value)?;
                let inner = AnyJson { type_url: &inner.type_url, value: &inner.value, depth: depth + 1 };
                map.serialize_value(&inner)?;
            }
            "google.protobuf.StringValue" => {
                map.serialize_value(&decode::<String, S::Error>(type_url, value)?)?
            }
            "google.protobuf.BytesValue" => {
                let bytes: Vec<u8> = decode::<_, S::Error>(type_url, value)?;
                map.serialize_value(&base64::engine::general_purpose::STANDARD.encode(bytes))?;
            }
            "google.protobuf.BoolValue" => {
                map.serialize_value(&decode::<bool, S::Error>(type_url, value)?)?
            }
            "google.protobuf.Int32Value" => {
                map.serialize_value(&decode::<i32, S::Error>(type_url, value)?)?
            }
            "google.protobuf.UInt32Value" => {
                map.serialize_value(&decode::<u32, S::Error>(type_url, value)?)?
            }
            // 64-bit integers are strings in protojson.
            "google.protobuf.Int64Value" => {
                map.serialize_value(&decode::<i64, S::Error>(type_url, value)?.to_string())?;
            }
            "google.protobuf.UInt64Value" => {
                map.serialize_value(&decode::<u64, S::Error>(type_url, value)?.to_string())?;
            }
            "google.protobuf.DoubleValue" => {
                map.serialize_value(&WrappedFloat(decode::<_, S::Error>(type_url, value)?, false))?;
            }
            "google.protobuf.FloatValue" => {
                let n: f32 = decode::<_, S::Error>(type_url, value)?;
                map.serialize_value(&WrappedFloat(f64::from(n), true))?;
            }
            _ => {
                return Err(ser::Error::custom(format_args!(
                    "proto: google.protobuf.Any: unable to resolve {type_url:?}: not found"
                )));
            }
        }
        map.end()
    }
}

// ---------------------------------------------------------------------------------------------
// google.protobuf.Duration and Timestamp
// ---------------------------------------------------------------------------------------------

/// Reads protojson's Duration syntax: `[+-]` digits (no leading zeros), optional `.` and up to
/// nine digits, then `s`. `1.s`, `.5s` and even `.s` are valid; `1m`, `01s`, `1.0000000001s`
/// are not.
///
/// # Errors
/// [`JsonError`] with protojson's text (`invalid google.protobuf.Duration value "1m"`, or
/// `out of range` beyond ±[`MAX_DURATION_SECONDS`]).
pub fn parse_duration(s: &str) -> Result<prost_types::Duration, JsonError> {
    let d = duration_syntax(s)
        .ok_or_else(|| JsonError(format!("invalid google.protobuf.Duration value {s:?}")))?;
    if d.seconds.abs() > MAX_DURATION_SECONDS {
        return Err(JsonError(format!("google.protobuf.Duration value out of range: {s:?}")));
    }
    Ok(d)
}

fn duration_syntax(s: &str) -> Option<prost_types::Duration> {
    let body = s.strip_suffix('s').filter(|_| s.len() >= 2)?;
    let (neg, body) = match body.as_bytes().first()? {
        b'-' => (true, &body[1..]),
        b'+' => (false, &body[1..]),
        _ => (false, body),
    };
    let (int_part, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    let int_ok = (int_part.is_empty() && frac.is_some())
        || int_part == "0"
        || (!int_part.is_empty() && digits(int_part) && !int_part.starts_with('0'));
    if !int_ok {
        return None;
    }
    let seconds: i64 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
    let nanos: i32 = match frac {
        None => 0,
        Some(f) if f.len() <= 9 && digits(f) => format!("{f:0<9}").parse().ok()?,
        Some(_) => return None,
    };
    Some(if neg {
        prost_types::Duration { seconds: -seconds, nanos: -nanos }
    } else {
        prost_types::Duration { seconds, nanos }
    })
}

/// protojson's Duration: `[-]<seconds>[.<3, 6 or 9 digits>]s`.
///
/// # Errors
/// [`JsonError`] for a duration outside protojson's range or with inconsistent signs.
pub fn duration_to_string(d: &prost_types::Duration) -> Result<String, JsonError> {
    if d.seconds.abs() > MAX_DURATION_SECONDS {
        return Err(JsonError(format!(
            "proto: google.protobuf.Duration: seconds out of range {}",
            d.seconds
        )));
    }
    if d.nanos.abs() >= 1_000_000_000 {
        return Err(JsonError(format!("proto: google.protobuf.Duration: nanos out of range {}", d.nanos)));
    }
    if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
        return Err(JsonError(
            "proto: google.protobuf.Duration: signs of seconds and nanos do not match".to_owned(),
        ));
    }
    let sign = if d.seconds < 0 || d.nanos < 0 { "-" } else { "" };
    let text = format!("{sign}{}.{:09}", d.seconds.unsigned_abs(), d.nanos.unsigned_abs());
    Ok(format!("{}s", trim_fraction(&text)))
}

/// protojson's Timestamp: RFC 3339 in UTC, years 0001–9999, with 0, 3, 6 or 9 fraction digits.
///
/// # Errors
/// [`JsonError`] for a time outside protojson's range.
pub fn timestamp_to_string(t: &prost_types::Timestamp) -> Result<String, JsonError> {
    // 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z
    if !(-62_135_596_800..=253_402_300_799).contains(&t.seconds) {
        return Err(JsonError(format!(
            "proto: google.protobuf.Timestamp: seconds out of range {}",
            t.seconds
        )));
    }
    if !(0..=999_999_999).contains(&t.nanos) {
        return Err(JsonError(format!("proto: google.protobuf.Timestamp: nanos out of range {}", t.nanos)));
    }
    // A civil datetime, not a jiff Timestamp: those end a day before year 9999 does.
    let at = DateTime::constant(1970, 1, 1, 0, 0, 0, 0)
        .checked_add(SignedDuration::from_secs(t.seconds))
        .map_err(|e| JsonError(format!("proto: google.protobuf.Timestamp: {e}")))?;
    let text = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}",
        at.year(),
        at.month(),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        t.nanos
    );
    Ok(format!("{}Z", trim_fraction(&text)))
}

/// Drops trailing zeros three digits at a time, as protojson does for durations and timestamps.
fn trim_fraction(text: &str) -> &str {
    let t = text.strip_suffix("000").unwrap_or(text);
    let t = t.strip_suffix("000").unwrap_or(t);
    t.strip_suffix(".000").unwrap_or(t)
}

// ---------------------------------------------------------------------------------------------
// Messages in: protojson.Unmarshal with DiscardUnknown
// ---------------------------------------------------------------------------------------------

/// The deepest JSON nesting a message read by [`message_from_slice`] may have, skipped unknown
/// fields included. protojson allows far deeper nesting.
pub const MAX_JSON_DEPTH: usize = 200;

/// The deepest nesting of arrays and objects in a `google.protobuf.Value` read by
/// [`value_field`]: deeper values would not decode again (prost stops at 100 nested messages,
/// and every level is a `Value` plus a list or struct).
pub const MAX_DATA_DEPTH: usize = 32;

/// Reads one message from protojson text, as `protojson.Unmarshal` with `DiscardUnknown` does.
/// `T` is a serde struct with the message's fields: its JSON name, the proto name as an alias,
/// message-typed fields as [`Object`], and scalar fields through [`uint32_field`],
/// [`duration_field`] or [`value_field`] where protojson's reading differs from serde's.
///
/// * The text must be UTF-8 and hold one JSON object (an array of the fields is refused).
/// * A field given twice, under either name, is an error (`duplicate field`, serde's check);
///   unknown fields are skipped, repeated ones too, but their JSON must still be well formed:
///   nested no deeper than [`MAX_JSON_DEPTH`], with `\u` escapes that form whole UTF-16
///   surrogate pairs (`serde_json` does not check the values it skips, protojson does).
/// * Errors are in protojson's shape: `proto: (line L:C): <what>` (see the module doc).
///
/// # Errors
/// [`JsonError`] for text protojson would refuse, or that breaks kairos's limits
/// ([`MAX_JSON_DEPTH`], and [`MAX_DATA_DEPTH`] in a [`value_field`]).
pub fn message_from_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, JsonError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| JsonError(format!("proto: syntax error (byte {}): invalid UTF-8", e.valid_up_to())))?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let Object(message) = Object::<T>::deserialize(&mut deserializer).map_err(proto_error)?;
    deserializer.end().map_err(proto_error)?;
    check_skipped_values(text)?;
    Ok(message)
}

/// A `serde_json` error in protojson's shape: `proto: (line L:C): <what>`.
fn proto_error(e: serde_json::Error) -> JsonError {
    let text = e.to_string();
    if e.line() == 0 {
        return JsonError(format!("proto: {text}"));
    }
    let at = format!(" at line {} column {}", e.line(), e.column());
    JsonError(format!(
        "proto: (line {}:{}): {}",
        e.line(),
        e.column(),
        text.strip_suffix(&at).unwrap_or(&text)
    ))
}

/// What protojson checks everywhere but `serde_json` does not in the values it skips (unknown
/// fields): nesting up to [`MAX_JSON_DEPTH`], and `\u` escapes that form whole UTF-16 surrogate
/// pairs. `text` is JSON that `serde_json` has read, so only those two things are looked at.
fn check_skipped_values(text: &str) -> Result<(), JsonError> {
    let bytes = text.as_bytes();
    let unit = |at: usize| {
        let hex = text.get(at..at + 4)?;
        u32::from_str_radix(hex, 16).ok()
    };
    let (mut depth, mut in_string, mut i) = (0usize, false, 0);
    while let Some(&b) = bytes.get(i) {
        i += 1;
        match (in_string, b) {
            (_, b'"') => in_string = !in_string,
            (false, b'{' | b'[') => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(JsonError(format!(
                        "proto: exceeded max recursion depth of {MAX_JSON_DEPTH}"
                    )));
                }
            }
            (false, b'}' | b']') => depth = depth.saturating_sub(1),
            (true, b'\\') if bytes.get(i) == Some(&b'u') => {
                let escape_start = i - 1;
                let first = unit(i + 1).unwrap_or(0);
                i += 5;
                let paired = match first {
                    0xD800..0xDC00 => {
                        let low = (bytes.get(i..i + 2) == Some(b"\\u")).then(|| unit(i + 2)).flatten();
                        i += 6;
                        low.is_some_and(|low| (0xDC00..0xE000).contains(&low))
                    }
                    0xDC00..0xE000 => false,
                    _ => true,
                };
                if !paired {
                    let shown = text.get(escape_start..(escape_start + 12).min(text.len())).unwrap_or("\\u");
                    return Err(JsonError(format!(
                        "proto: syntax error: invalid escape code {shown:?} in string"
                    )));
                }
            }
            (true, b'\\') => i += 1,
            _ => {}
        }
    }
    Ok(())
}

/// A message-typed field (or the top-level message): a JSON object only. serde's derived structs
/// also read an array of the fields in order, which protojson does not.
#[derive(Debug)]
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(MapOnly(deserializer)).map(Object)
    }
}

/// Hands every request to the inner deserializer as a request for a map.
struct MapOnly<D>(D);

impl<'de, D: Deserializer<'de>> Deserializer<'de> for MapOnly<D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A `google.protobuf.Value` field, for `#[serde(default, deserialize_with = ...)]`: any JSON
/// value nested at most [`MAX_DATA_DEPTH`] levels, read by [`ValueSeed`]. JSON `null` means
/// "unset" for every other field, but here it is a value (`NullValue`); only an absent field is
/// `None`. An object with `@type` is just an object.
///
/// # Errors
/// As [`ValueSeed`]: a repeated key, nesting too deep, or the deserializer's own error.
pub fn value_field<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    ValueSeed::new(MAX_DATA_DEPTH).deserialize(deserializer).map(Some)
}

/// A `google.protobuf.Duration` field: `null` is unset, a string is read by [`parse_duration`].
///
/// # Errors
/// A value that is not a string or `null`, or a string [`parse_duration`] refuses.
pub fn duration_field<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<prost_types::Duration>, D::Error> {
    let Some(text) = Option::<String>::deserialize(deserializer)? else { return Ok(None) };
    parse_duration(&text).map(Some).map_err(de::Error::custom)
}

/// A uint32 field whose JSON name is `field`: `null` is unset, any other value is read from its
/// raw text by [`uint32_from_raw`]. The deserializer must be `serde_json`'s over borrowed text
/// (as in [`message_from_slice`]), which hands out raw values.
///
/// # Errors
/// `invalid value for uint32 field <field>: <raw text>` for a value that is not a uint32.
pub fn uint32_field<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &str,
) -> Result<Option<u32>, D::Error> {
    let Some(raw) = Option::<&RawValue>::deserialize(deserializer)? else { return Ok(None) };
    let text = raw.get();
    let n = uint32_from_raw(text);
    n.map(Some)
        .ok_or_else(|| de::Error::custom(format_args!("invalid value for uint32 field {field}: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn number(n: f64) -> Value {
        kind(Kind::NumberValue(n))
    }

    fn render_any(type_url: &str, value: &[u8]) -> Result<String, JsonError> {
        to_string(&AnyJson::new(type_url, value))
    }

    #[test]
    fn numbers_render_as_go_protojson_does() {
        for (n, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (123.0, "123"),
            (0.5, "0.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e20, "100000000000000000000"),
            (1.2345678901234568e20, "123456789012345680000"),
            (9_007_199_254_740_993.0, "9007199254740992"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (-2.5e-300, "-2.5e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(value_to_string(&number(n)).unwrap(), want, "{n:e}");
        }
        assert_eq!(go_float(f64::from(1e-7f32), true), "1e-7");
        assert_eq!(go_float(f64::from(0.1f32), true), "0.1");
    }

    // The issue that made this module: GET and app delivery disagreed on these.
    #[test]
    fn large_and_negative_zero_numbers_keep_protojson_form() {
        let value = value_from_json(json!({"b": 1e20, "d": -0.0})).unwrap();
        assert_eq!(value_to_string(&value).unwrap(), r#"{"b":100000000000000000000,"d":-0}"#);
    }

    #[test]
    fn non_finite_numbers_and_kindless_values_are_errors() {
        for (n, shown) in [(f64::NAN, "NaN"), (f64::INFINITY, "+Inf"), (f64::NEG_INFINITY, "-Inf")] {
            let err = value_to_string(&number(n)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("proto: google.protobuf.Value.number_value: invalid {shown} value")
            );
        }
        let list = kind(Kind::ListValue(ListValue { values: vec![Value { kind: None }] }));
        assert!(value_to_string(&list).unwrap_err().to_string().contains("none of the oneof fields is set"));
    }

    #[test]
    fn integral_numbers_become_json_integers_for_typed_reads() {
        let value = value_from_json(json!({"n": 42, "f": 1.5, "z": -0.0, "big": 1e20})).unwrap();
        let json = value_to_json(&value).unwrap();
        assert!(json["n"].is_i64());
        assert!(json["f"].is_f64());
        assert!(json["z"].as_f64().is_some_and(|z| z == 0.0 && z.is_sign_negative()));
        assert!(json["big"].is_f64());
    }

    #[test]
    fn json_round_trips_through_value() {
        for v in [
            json!("hello world"),
            json!(123),
            json!(-1.5),
            json!(true),
            json!(null),
            json!([1, "two", {"three": 3}, [], {}]),
            json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x"}),
        ] {
            let value = value_from_json(v.clone()).unwrap();
            assert_eq!(value_to_json(&value).unwrap(), v, "{v}");
            assert_eq!(value_to_string(&value).unwrap(), v.to_string(), "{v}");
        }
        // Value.string_value is field 3, length-delimited: 0x1a, len, bytes.
        assert_eq!(value_from_json(json!("hi")).unwrap().encode_to_vec(), b"\x1a\x02hi");
    }

    #[test]
    fn seed_refuses_duplicate_keys_and_deep_nesting() {
        let read = |text: &str, max: usize| {
            let mut de = serde_json::Deserializer::from_str(text);
            ValueSeed::new(max).deserialize(&mut de).map_err(|e| e.to_string())
        };
        assert!(read(r#"{"a":1,"a":2}"#, 8).unwrap_err().contains(r#"duplicate map key "a""#));
        assert!(read("[[[]]]", 3).is_ok());
        assert!(read("[[[[]]]]", 3).unwrap_err().contains("nests deeper"));
        assert_eq!(read("-0", 1).unwrap(), number(-0.0));
        assert_eq!(read("-0", 1).unwrap().encode_to_vec(), number(-0.0).encode_to_vec());
    }

    #[test]
    fn uint32_reads_numbers_and_quoted_numbers_exactly() {
        for (raw, want) in [
            ("5", Some(5)),
            ("0", Some(0)),
            ("-0", Some(0)),
            ("\"5\"", Some(5)),
            ("4294967295", Some(u32::MAX)),
            ("1e2", Some(100)),
            ("1E+2", Some(100)),
            ("5.0", Some(5)),
            ("0.5e1", Some(5)),
            ("10e-1", Some(1)),
            ("20.0e-1", Some(2)),
            ("\"1e1\"", Some(10)),
            ("\"5 6\"", Some(5)),
            ("-1", None),
            ("1.5", None),
            ("15.0e-1", None),
            ("4294967296", None),
            ("4294967295.00000000001", None),
            ("1e10", None),
            ("1e-1", None),
            ("0e3000000000", None),
            ("true", None),
            ("\"\"", None),
            ("\" 5\"", None),
            ("\"5 \"", None),
            ("\"-1\"", None),
            ("\"0x10\"", None),
            ("\"5x\"", None),
            ("\"01\"", None),
        ] {
            assert_eq!(uint32_from_raw(raw), want, "{raw}");
        }
    }

    #[test]
    fn durations_follow_protojson_syntax() {
        let d = |s: &str| duration_syntax(s).map(|d| (d.seconds, d.nanos));
        for (text, want) in [
            ("3s", Some((3, 0))),
            ("0s", Some((0, 0))),
            ("1.5s", Some((1, 500_000_000))),
            ("0.000000001s", Some((0, 1))),
            ("-1.5s", Some((-1, -500_000_000))),
            ("+2s", Some((2, 0))),
            ("1.s", Some((1, 0))),
            (".5s", Some((0, 500_000_000))),
            ("-.5s", Some((0, -500_000_000))),
            (".s", Some((0, 0))),
            ("315576000000s", Some((315_576_000_000, 0))),
            ("1m", None),
            ("1", None),
            ("s", None),
            ("-s", None),
            ("01s", None),
            ("00s", None),
            ("1.0000000001s", None),
            ("1e3s", None),
            (" 1s", None),
            ("1 s", None),
            ("1h30ms", None),
            ("99999999999999999999s", None),
        ] {
            assert_eq!(d(text), want, "{text:?}");
        }
        assert!(
            parse_duration("1m")
                .unwrap_err()
                .to_string()
                .contains(r#"invalid google.protobuf.Duration value "1m""#)
        );
        assert!(parse_duration("315576000001s").unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn durations_render_with_0_3_6_or_9_fraction_digits() {
        let render = |seconds, nanos| duration_to_string(&prost_types::Duration { seconds, nanos });
        for ((s, n), want) in [
            ((1, 0), "1s"),
            ((0, 0), "0s"),
            ((1, 500_000_000), "1.500s"),
            ((0, 1), "0.000000001s"),
            ((0, 1_000), "0.000001s"),
            ((0, 10_000), "0.000010s"),
            ((-1, -500_000_000), "-1.500s"),
            ((0, -1), "-0.000000001s"),
            ((315_576_000_000, 999_999_999), "315576000000.999999999s"),
        ] {
            assert_eq!(render(s, n).unwrap(), want);
        }
        assert!(render(1, -1).is_err());
        assert!(render(315_576_000_001, 0).is_err());
        assert!(render(0, 1_000_000_000).is_err());
    }

    #[test]
    fn any_without_type_url() {
        assert_eq!(render_any("", &[]).unwrap(), "{}");
        assert_eq!(
            render_any("", b"{}").unwrap_err().to_string(),
            "proto: google.protobuf.Any: type_url is not set"
        );
        for url in
            ["type.googleapis.com/io.dapr.RustTest", "dapr.io/schedule/jobpayload", "type.googleapis.com/"]
        {
            assert!(render_any(url, b"x").unwrap_err().to_string().contains("unable to resolve"), "{url}");
        }
    }

    #[test]
    fn well_known_types_render_like_protojson() {
        let t = |name: &str| format!("type.googleapis.com/google.protobuf.{name}");
        let check = |name: &str, bytes: Vec<u8>, value: &str| {
            let url = t(name);
            assert_eq!(
                render_any(&url, &bytes).unwrap(),
                format!(r#"{{"@type":"{url}","value":{value}}}"#),
                "{name}"
            );
        };
        check("StringValue", "x\"y".to_owned().encode_to_vec(), r#""x\"y""#);
        check("StringValue", vec![], r#""""#);
        check("BytesValue", b"hello".to_vec().encode_to_vec(), r#""aGVsbG8=""#);
        check("BytesValue", vec![0xfb, 0xff].encode_to_vec(), r#""+/8=""#);
        check("BoolValue", true.encode_to_vec(), "true");
        check("BoolValue", vec![], "false");
        check("Int32Value", (-5i32).encode_to_vec(), "-5");
        check("UInt32Value", u32::MAX.encode_to_vec(), "4294967295");
        check("Int64Value", i64::MIN.encode_to_vec(), r#""-9223372036854775808""#);
        check("UInt64Value", u64::MAX.encode_to_vec(), r#""18446744073709551615""#);
        check("DoubleValue", 1.5f64.encode_to_vec(), "1.5");
        check("DoubleValue", f64::NAN.encode_to_vec(), r#""NaN""#);
        check("DoubleValue", f64::NEG_INFINITY.encode_to_vec(), r#""-Infinity""#);
        check("FloatValue", 0.1f32.encode_to_vec(), "0.1");
        check("FloatValue", f32::INFINITY.encode_to_vec(), r#""Infinity""#);
        check("Empty", vec![], "{}");
        let null = kind(Kind::NullValue(0));
        let fields = BTreeMap::from([("b".to_owned(), kind(Kind::BoolValue(true))), ("a".to_owned(), null)]);
        check("Struct", Struct { fields }.encode_to_vec(), r#"{"a":null,"b":true}"#);
        check("ListValue", ListValue { values: vec![number(2.0)] }.encode_to_vec(), "[2]");
        check("Value", json_bytes(json!([1, "a"])), r#"[1,"a"]"#);
        check(
            "Duration",
            prost_types::Duration { seconds: 90, nanos: 1_000_000 }.encode_to_vec(),
            r#""90.001s""#,
        );
        for ((seconds, nanos), want) in [
            ((0, 0), "1970-01-01T00:00:00Z"),
            ((1_772_359_200, 120_000_000), "2026-03-01T10:00:00.120Z"),
            ((-62_135_596_800, 0), "0001-01-01T00:00:00Z"),
            ((253_402_300_799, 999_999_999), "9999-12-31T23:59:59.999999999Z"),
            ((951_782_400, 0), "2000-02-29T00:00:00Z"),
        ] {
            let bytes = prost_types::Timestamp { seconds, nanos }.encode_to_vec();
            check("Timestamp", bytes, &format!("{want:?}"));
        }
        let inner = prost_types::Any { type_url: t("StringValue"), value: "x".to_owned().encode_to_vec() };
        check("Any", inner.encode_to_vec(), &format!(r#"{{"@type":"{}","value":"x"}}"#, t("StringValue")));
        let ts = |seconds, nanos| prost_types::Timestamp { seconds, nanos }.encode_to_vec();
        assert!(render_any(&t("Timestamp"), &ts(253_402_300_800, 0)).is_err());
        assert!(render_any(&t("Timestamp"), &ts(0, -1)).is_err());
        assert!(render_any(&t("StringValue"), b"\x0a\x01\xff").is_err());
        assert!(render_any(&t("FieldMask"), &[]).is_err());
        assert!(
            render_any(&t("Value"), &[]).unwrap_err().to_string().contains("none of the oneof fields is set")
        );
        assert!(render_any(&t("Value"), &[0xff]).unwrap_err().to_string().contains("unable to unmarshal"));
        // the type is what follows the last '/'
        assert_eq!(
            render_any("example.com/x/google.protobuf.Value", &json_bytes(json!(1))).unwrap(),
            r#"{"@type":"example.com/x/google.protobuf.Value","value":1}"#
        );
    }

    fn json_bytes(json: serde_json::Value) -> Vec<u8> {
        value_from_json(json).unwrap().encode_to_vec()
    }

    #[test]
    fn any_nesting_is_bounded() {
        let mut inner = prost_types::Any::default();
        for _ in 0..100 {
            inner = prost_types::Any {
                type_url: "type.googleapis.com/google.protobuf.Any".into(),
                value: inner.encode_to_vec(),
            };
        }
        assert!(render_any(&inner.type_url, &inner.value).is_err());
    }

    #[test]
    fn prost_decodes_data_at_the_depth_limit_but_not_much_deeper() {
        let nested = |n: usize, lists: bool| {
            let mut v = kind(Kind::NullValue(0));
            for _ in 0..n {
                v = kind(if lists {
                    Kind::ListValue(ListValue { values: vec![v] })
                } else {
                    Kind::StructValue(Struct { fields: BTreeMap::from([("k".to_owned(), v)]) })
                });
            }
            v.encode_to_vec()
        };
        for lists in [true, false] {
            assert!(Value::decode(nested(MAX_DATA_DEPTH, lists).as_slice()).is_ok());
            assert!(Value::decode(nested(MAX_DATA_DEPTH * 2, lists).as_slice()).is_err());
        }
    }

    /// A message with one field of each kind the field readers handle.
    #[derive(Debug, serde::Deserialize)]
    struct Probe {
        #[serde(default, deserialize_with = "probe_count")]
        count: Option<u32>,
        #[serde(default, deserialize_with = "duration_field")]
        every: Option<prost_types::Duration>,
        #[serde(default, deserialize_with = "value_field")]
        data: Option<Value>,
        inner: Option<Object<Inner>>,
    }

    #[derive(Debug, serde::Deserialize)]
    struct Inner {
        name: Option<String>,
    }

    fn probe_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u32>, D::Error> {
        uint32_field(deserializer, "count")
    }

    fn read_probe(text: &str) -> Result<Probe, String> {
        message_from_slice::<Probe>(text.as_bytes()).map_err(|e| e.to_string())
    }

    fn nest(open: &str, n: usize, close: &str) -> String {
        format!("{}{}", open.repeat(n), close.repeat(n))
    }

    #[test]
    fn fields_read_as_protojson_reads_them() {
        let p =
            read_probe(r#"{"count":"7","every":"1.5s","data":{"@type":"x"},"inner":{"name":"n"}}"#).unwrap();
        assert_eq!(p.count, Some(7));
        assert_eq!(p.every, Some(prost_types::Duration { seconds: 1, nanos: 500_000_000 }));
        assert_eq!(p.data.map(|v| value_to_string(&v).unwrap()).as_deref(), Some(r#"{"@type":"x"}"#));
        assert_eq!(p.inner.and_then(|Object(i)| i.name).as_deref(), Some("n"));
        // null is unset, except for a Value, where it is the null value
        let p = read_probe(r#"{"count":null,"every":null,"data":null,"inner":null}"#).unwrap();
        assert_eq!((p.count, p.every, p.inner.is_none()), (None, None, true));
        assert_eq!(p.data, Some(kind(Kind::NullValue(0))));
        assert_eq!(read_probe("{}").unwrap().data, None);
        // unknown fields are skipped, repeated ones too, whatever JSON they hold
        read_probe(r#"{"x":[1,{"y":"\ud83d\ude00"}],"x":null}"#).unwrap();
        let deep_data = |n: usize| format!(r#"{{"data":{}}}"#, nest("[", n, "]"));
        read_probe(&deep_data(MAX_DATA_DEPTH)).unwrap();
        assert!(read_probe(&deep_data(MAX_DATA_DEPTH + 1)).unwrap_err().contains("nests deeper"));
    }

    #[test]
    fn refused_messages_get_protojson_error_texts() {
        let unknown = |n: usize| format!(r#"{{"x":{}}}"#, nest("[", n, "]"));
        read_probe(&unknown(MAX_JSON_DEPTH - 1)).unwrap();
        // brackets inside strings, even after an escaped quote, are not nesting
        read_probe(&format!(r#"{{"x":"\"{}"}}"#, "[".repeat(MAX_JSON_DEPTH))).unwrap();
        for (text, want) in [
            (r#"{"count":-1}"#, "proto: (line 1:12): invalid value for uint32 field count: -1"),
            (r#"{"every":"1m"}"#, r#"proto: (line 1:14): invalid google.protobuf.Duration value "1m""#),
            (r#"{"count":1,"count":2}"#, "proto: (line 1:18): duplicate field `count`"),
            (r#"{"data":{"a":1,"a":2}}"#, r#"proto: (line 1:21): duplicate map key "a""#),
            ("[]", "proto: (line 1:0): invalid type: sequence, expected struct Probe"),
            (r#"{"inner":[]}"#, "proto: (line 1:9): invalid type: sequence, expected struct Inner"),
            ("{} x", "proto: (line 1:4): trailing characters"),
            (&unknown(MAX_JSON_DEPTH), "proto: exceeded max recursion depth of 200"),
            (r#"{"x":"\ud800"}"#, r#"proto: syntax error: invalid escape code "\\ud800\"}" in string"#),
            (
                r#"{"x":["\udc00\ud800"]}"#,
                r#"proto: syntax error: invalid escape code "\\udc00\\ud800" in string"#,
            ),
            (
                r#"{"x":"\ud800\u0041"}"#,
                r#"proto: syntax error: invalid escape code "\\ud800\\u0041" in string"#,
            ),
        ] {
            assert_eq!(read_probe(text).unwrap_err(), want, "{text}");
        }
        // an escaped backslash before `u` is no escape
        read_probe(r#"{"x":"\\ud800"}"#).unwrap();
        let err = message_from_slice::<Probe>(b"{\"x\":\"\xff\"}").unwrap_err();
        assert_eq!(err.to_string(), "proto: syntax error (byte 6): invalid UTF-8");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn rendered_floats_read_back_exactly(n in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
                let text = value_to_string(&number(n)).unwrap();
                prop_assert_eq!(text.parse::<f64>().unwrap().to_bits(), n.to_bits());
            }

            #[test]
            fn timestamps_render_like_jiff_in_its_range(seconds in -62_135_596_800i64..=253_402_200_000, nanos in 0i32..1_000_000_000) {
                let text = timestamp_to_string(&prost_types::Timestamp { seconds, nanos }).unwrap();
                let back: jiff::Timestamp = text.parse().unwrap();
                prop_assert_eq!(back, jiff::Timestamp::new(seconds, nanos).unwrap());
            }
        }
    }
}
