//! The HTTP Jobs API's JSON: the POST body in, the GET body out (spec §2.2, §2.3). Pure: no I/O.
//!
//! daprd reads the POST body with Go's `protojson` (`DiscardUnknown`, `AllowPartial`) into
//! `internals.v1.JobHTTPRequest`, and writes GET responses with `protojson` (`EmitUnpopulated:
//! false`) from the runtime `Job`. This module reproduces both by hand, because the details
//! decide what SDKs see:
//!
//! * Field names: the JSON name (`dueTime`) or the proto name (`due_time`); unknown fields are
//!   skipped (their JSON must still be well formed).
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
//! * Error texts follow protojson's (`proto: (line 1:13): invalid value for uint32 field
//!   repeats: -1`); they are informative, not byte-for-byte guaranteed.
//!
//! Output is compact: Go's protojson randomly adds a space after some separators to stop
//! clients comparing bytes; kairos never does. Numbers inside `data` are formatted as Go does
//! (`1e+21`, `1e-7`, `-0`), which differs from `serde_json`'s formatting.
//!
//! Kairos limits: JSON nesting deeper than [`MAX_JSON_DEPTH`], and `data` deeper than
//! [`MAX_DATA_DEPTH`] (what protobuf decoding in kairos accepts back), are refused as malformed.
//! protojson allows far deeper nesting.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use kairos_core::{JobSpec, Payload};
use kairos_proto::{common, convert, runtime};
use prost::Message;
use prost_types::value::Kind;

use crate::errors::ApiError;
use crate::value::VALUE_TYPE_URL;

/// The deepest JSON nesting a POST body may have.
pub const MAX_JSON_DEPTH: usize = 200;

/// The deepest nesting of arrays and objects inside `data`: deeper values would not decode
/// again (prost stops at 100 nested messages, and every level is a `Value` plus a list or struct).
pub const MAX_DATA_DEPTH: usize = 32;

/// The deepest nesting of `Any` inside `Any` that [`any_to_json`] renders.
const MAX_ANY_DEPTH: usize = 32;

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
        decode_request(body).map_err(ApiError::MalformedBody)?
    };
    if !request.name.is_empty() {
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
    let failure_policy = request
        .failure_policy
        .map(convert::policy_from_proto)
        .transpose()
        .map_err(|e| ApiError::MalformedBody(e.to_string()))?
        .flatten();
    let spec = JobSpec {
        schedule: request.schedule,
        repeats: request.repeats,
        due_time: request.due_time,
        ttl: request.ttl,
        data: request.data.map(|v| Payload { type_url: VALUE_TYPE_URL.to_owned(), value: v.encode_to_vec() }),
        failure_policy,
    };
    Ok(ScheduleRequest { name: name.to_owned(), spec, overwrite: request.overwrite.unwrap_or(false) })
}

/// Renders a job as the body of `GET /v1.0/jobs/{name}` (spec §2.3): protojson of the runtime
/// `Job`, fields in field-number order, unset ones left out.
///
/// `data` is rendered as protojson renders an `Any` (see [`any_to_json`]).
///
/// # Errors
/// [`ApiError::EncodeResponse`] when `data` cannot be rendered.
pub fn job_to_json(name: &str, spec: &JobSpec) -> Result<String, ApiError> {
    let job = convert::spec_to_runtime_job(name, spec);
    let mut out = String::new();
    write_job(&mut out, &job)?;
    Ok(out)
}

/// Renders an `Any` as protojson does, with the types daprd can resolve that kairos knows:
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
///
/// # Errors
/// [`EncodeError`] with protojson's text.
pub fn any_to_json(type_url: &str, value: &[u8]) -> Result<String, EncodeError> {
    let mut out = String::new();
    write_any(&mut out, type_url, value, 0)?;
    Ok(out)
}

/// Renders a `google.protobuf.Value` as protojson does.
///
/// # Errors
/// [`EncodeError`] for a value with no kind or a non-finite number.
pub fn value_to_json(value: &prost_types::Value) -> Result<String, EncodeError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reading: a strict JSON tree that keeps raw number text, key order and positions, then the
// protojson rules of `JobHTTPRequest` applied to it.
// ---------------------------------------------------------------------------------------------

/// `internals.v1.JobHTTPRequest`.
#[derive(Debug, Default)]
struct HttpRequest {
    name: String,
    schedule: Option<String>,
    repeats: Option<u32>,
    due_time: Option<String>,
    ttl: Option<String>,
    data: Option<prost_types::Value>,
    overwrite: Option<bool>,
    failure_policy: Option<common::JobFailurePolicy>,
}

#[derive(Debug)]
struct Node<'a> {
    pos: usize,
    /// The token's text: the whole literal for scalars, `{` or `[` for composites.
    raw: &'a str,
    kind: NodeKind<'a>,
}

#[derive(Debug)]
enum NodeKind<'a> {
    Null,
    Bool(bool),
    Number,
    String(String),
    Array(Vec<Node<'a>>),
    Object(Vec<Member<'a>>),
}

#[derive(Debug)]
struct Member<'a> {
    name: String,
    name_pos: usize,
    name_raw: &'a str,
    value: Node<'a>,
}

/// Byte offset → protojson's `(line L:C)`, columns counted in characters.
fn position(src: &str, pos: usize) -> String {
    let before = src.get(..pos).unwrap_or(src);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    format!("(line {line}:{column})")
}

fn error_at(src: &str, pos: usize, msg: impl std::fmt::Display) -> String {
    format!("proto: {}: {msg}", position(src, pos))
}

fn syntax_error(src: &str, pos: usize, msg: impl std::fmt::Display) -> String {
    format!("proto: syntax error {}: {msg}", position(src, pos))
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Parser<'a> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\r' | b'\n') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    fn err(&self, msg: impl std::fmt::Display) -> String {
        syntax_error(self.src, self.at, msg)
    }

    fn unexpected(&self) -> String {
        match self.src.get(self.at..).and_then(|s| s.chars().next()) {
            None => "proto: unexpected EOF".to_owned(),
            Some(c) => self.err(format_args!("invalid character {c:?}")),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, String> {
        self.skip_ws();
        let start = self.at;
        match self.bytes.get(self.at) {
            Some(b'{') | Some(b'[') if depth >= MAX_JSON_DEPTH => {
                Err(format!("proto: exceeded max recursion depth of {MAX_JSON_DEPTH}"))
            }
            Some(b'{') => {
                self.at += 1;
                let members = self.object_members(depth)?;
                Ok(Node { pos: start, raw: "{", kind: NodeKind::Object(members) })
            }
            Some(b'[') => {
                self.at += 1;
                let items = self.array_items(depth)?;
                Ok(Node { pos: start, raw: "[", kind: NodeKind::Array(items) })
            }
            Some(b'"') => {
                let s = self.string()?;
                Ok(self.token(start, NodeKind::String(s)))
            }
            Some(b'-' | b'0'..=b'9') => {
                self.number()?;
                Ok(self.token(start, NodeKind::Number))
            }
            Some(b't' | b'f' | b'n') => {
                let kind = if self.literal("true") {
                    NodeKind::Bool(true)
                } else if self.literal("false") {
                    NodeKind::Bool(false)
                } else if self.literal("null") {
                    NodeKind::Null
                } else {
                    return Err(self.unexpected());
                };
                Ok(self.token(start, kind))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn token(&self, start: usize, kind: NodeKind<'a>) -> Node<'a> {
        let src: &'a str = self.src;
        Node { pos: start, raw: &src[start..self.at], kind }
    }

    fn literal(&mut self, word: &str) -> bool {
        let rest = &self.bytes[self.at..];
        let follows_ok = rest.get(word.len()).is_none_or(|&c| !is_not_delim(c));
        if rest.starts_with(word.as_bytes()) && follows_ok {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn object_members(&mut self, depth: usize) -> Result<Vec<Member<'a>>, String> {
        let mut members = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&b'}') {
            self.at += 1;
            return Ok(members);
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.at) != Some(&b'"') {
                return Err(self.unexpected());
            }
            let name_pos = self.at;
            let name = self.string()?;
            let name_raw = &self.src[name_pos..self.at];
            self.skip_ws();
            if self.bytes.get(self.at) != Some(&b':') {
                return Err(self.unexpected());
            }
            self.at += 1;
            let value = self.value(depth + 1)?;
            members.push(Member { name, name_pos, name_raw, value });
            self.skip_ws();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b'}') => {
                    self.at += 1;
                    return Ok(members);
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn array_items(&mut self, depth: usize) -> Result<Vec<Node<'a>>, String> {
        let mut items = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.at) == Some(&b']') {
            self.at += 1;
            return Ok(items);
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.bytes.get(self.at) {
                Some(b',') => self.at += 1,
                Some(b']') => {
                    self.at += 1;
                    return Ok(items);
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    /// A JSON string starting at the opening quote.
    fn string(&mut self) -> Result<String, String> {
        self.at += 1;
        let mut out = String::new();
        let mut run = self.at;
        loop {
            let Some(&c) = self.bytes.get(self.at) else {
                return Err("proto: unexpected EOF".to_owned());
            };
            match c {
                b'"' => {
                    out.push_str(&self.src[run..self.at]);
                    self.at += 1;
                    return Ok(out);
                }
                b'\\' => {
                    out.push_str(&self.src[run..self.at]);
                    self.escape(&mut out)?;
                    run = self.at;
                }
                0..0x20 => return Err(self.err(format_args!("invalid character {:?} in string", c as char))),
                _ => self.at += 1,
            }
        }
    }

    fn escape(&mut self, out: &mut String) -> Result<(), String> {
        let start = self.at;
        let bad = |p: &Self| {
            let end = (start + 6).min(p.bytes.len());
            let text = p.src.get(start..end).unwrap_or("\\");
            syntax_error(p.src, start, format_args!("invalid escape code {text:?} in string"))
        };
        let Some(&c) = self.bytes.get(self.at + 1) else {
            return Err("proto: unexpected EOF".to_owned());
        };
        self.at += 2;
        let simple = match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = self.hex4().ok_or_else(|| bad(self))?;
                let code = if (0xD800..0xE000).contains(&high) {
                    // A surrogate must be a high one followed by an escaped low one.
                    if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                        return Err(bad(self));
                    }
                    self.at += 2;
                    let low = self.hex4().ok_or_else(|| bad(self))?;
                    if !(0xD800..0xDC00).contains(&high) || !(0xDC00..0xE000).contains(&low) {
                        return Err(bad(self));
                    }
                    0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                } else {
                    high
                };
                char::from_u32(code).ok_or_else(|| bad(self))?
            }
            _ => return Err(bad(self)),
        };
        out.push(simple);
        Ok(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.src.get(self.at..self.at + 4)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.at += 4;
        u32::from_str_radix(digits, 16).ok()
    }

    /// Advances over a JSON number (the strict grammar), which must end at a delimiter.
    fn number(&mut self) -> Result<(), String> {
        match json_number_len(&self.bytes[self.at..]) {
            Some(n) => {
                self.at += n;
                Ok(())
            }
            None => {
                let rest = &self.src[self.at..];
                let end = rest.find(|c: char| !(c.is_ascii() && is_not_delim(c as u8))).unwrap_or(rest.len());
                Err(self.err(format_args!("invalid value {}", &rest[..end])))
            }
        }
    }
}

/// Go's JSON decoder: a number or literal must not run into one of these.
fn is_not_delim(c: u8) -> bool {
    matches!(c, b'-' | b'+' | b'.' | b'_' | b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9')
}

/// The length of the JSON number at the start of `s`, if one is there and ends at a delimiter.
fn json_number_len(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    let digits = |i: &mut usize| {
        let start = *i;
        while s.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if s.first() == Some(&b'-') {
        i += 1;
    }
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return None,
    }
    if s.get(i) == Some(&b'.') {
        i += 1;
        if !digits(&mut i) {
            return None;
        }
    }
    if let Some(b'e' | b'E') = s.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = s.get(i) {
            i += 1;
        }
        if !digits(&mut i) {
            return None;
        }
    }
    if s.get(i).is_some_and(|&c| is_not_delim(c)) {
        return None;
    }
    Some(i)
}

/// A JSON number as an unsigned integer of `bits` bits, as protojson reads integers: exponent
/// and fraction applied, the result integral and in range.
fn json_number_to_uint(raw: &str, bits: u32) -> Option<u64> {
    let (neg, rest) = match raw.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, raw),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i32>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let int_part = int_part.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    if int_part.is_empty() && frac.is_empty() {
        return Some(0); // -0 is 0
    }
    let digits: String = if exp >= 0 {
        let exp = exp as usize;
        if frac.len() > exp || int_part.len() + exp > 20 {
            return None;
        }
        let mut d = format!("{int_part}{frac}");
        d.extend(std::iter::repeat_n('0', exp - frac.len()));
        d
    } else {
        if !frac.is_empty() {
            return None;
        }
        let point = int_part.len().checked_sub(exp.unsigned_abs() as usize)?;
        if int_part[point..].bytes().any(|b| b != b'0') {
            return None;
        }
        int_part[..point].to_owned()
    };
    if neg {
        return None;
    }
    let n: u64 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    (bits >= 64 || n < (1u64 << bits)).then_some(n)
}

/// The JSON text of a body, parsed; an object is required at the top.
fn decode_request(body: &[u8]) -> Result<HttpRequest, String> {
    let src = std::str::from_utf8(body).map_err(|e| {
        syntax_error(String::from_utf8_lossy(body).as_ref(), e.valid_up_to(), "invalid UTF-8")
    })?;
    let mut parser = Parser { src, bytes: body, at: 0 };
    let root = parser.value(0)?;
    parser.skip_ws();
    if parser.at < body.len() {
        return Err(syntax_error(src, parser.at, format_args!("unexpected token {}", &src[parser.at..])));
    }
    request_from_json(src, &root)
}

/// An object's fields as protojson sees them: unknown names dropped, a known field given twice
/// (under either name) rejected, `null` dropped unless `keep_null` says the field is a `Value`.
fn known_fields<'n, 'a>(
    src: &str,
    node: &'n Node<'a>,
    field_number: impl Fn(&str) -> Option<u32>,
    keep_null: impl Fn(u32) -> bool,
) -> Result<Vec<(u32, &'n Node<'a>)>, String> {
    let NodeKind::Object(members) = &node.kind else {
        return Err(syntax_error(src, node.pos, format_args!("unexpected token {}", node.raw)));
    };
    let mut seen = 0u64;
    let mut fields = Vec::new();
    for m in members {
        let Some(number) = field_number(&m.name) else { continue };
        if seen & (1 << number) != 0 {
            return Err(error_at(src, m.name_pos, format_args!("duplicate field {}", m.name_raw)));
        }
        seen |= 1 << number;
        if matches!(m.value.kind, NodeKind::Null) && !keep_null(number) {
            continue;
        }
        fields.push((number, &m.value));
    }
    Ok(fields)
}

fn request_from_json(src: &str, root: &Node<'_>) -> Result<HttpRequest, String> {
    let number = |name: &str| match name {
        "name" => Some(1),
        "schedule" => Some(2),
        "repeats" => Some(3),
        "dueTime" | "due_time" => Some(4),
        "ttl" => Some(5),
        "data" => Some(6),
        "overwrite" => Some(7),
        "failurePolicy" | "failure_policy" => Some(8),
        _ => None,
    };
    let mut req = HttpRequest::default();
    for (field, node) in known_fields(src, root, number, |n| n == 6)? {
        match field {
            1 => req.name = string_field(src, node, "name")?,
            2 => req.schedule = Some(string_field(src, node, "schedule")?),
            3 => req.repeats = Some(uint32_field(src, node, "repeats")?),
            4 => req.due_time = Some(string_field(src, node, "dueTime")?),
            5 => req.ttl = Some(string_field(src, node, "ttl")?),
            6 => req.data = Some(value_from_json(src, node, 0)?),
            7 => req.overwrite = Some(bool_field(src, node, "overwrite")?),
            _ => req.failure_policy = Some(policy_from_json(src, node)?),
        }
    }
    Ok(req)
}

fn invalid(src: &str, node: &Node<'_>, kind: &str, field: &str) -> String {
    error_at(src, node.pos, format_args!("invalid value for {kind} field {field}: {}", node.raw))
}

fn string_field(src: &str, node: &Node<'_>, field: &str) -> Result<String, String> {
    match &node.kind {
        NodeKind::String(s) => Ok(s.clone()),
        _ => Err(invalid(src, node, "string", field)),
    }
}

fn bool_field(src: &str, node: &Node<'_>, field: &str) -> Result<bool, String> {
    match node.kind {
        NodeKind::Bool(b) => Ok(b),
        _ => Err(invalid(src, node, "bool", field)),
    }
}

/// A uint32: a JSON number, or a string holding exactly one (no surrounding whitespace; like
/// protojson, only its first JSON token is read).
fn uint32_field(src: &str, node: &Node<'_>, field: &str) -> Result<u32, String> {
    let n = match &node.kind {
        NodeKind::Number => json_number_to_uint(node.raw, 32),
        NodeKind::String(s) if s.trim() == s => {
            json_number_len(s.as_bytes()).and_then(|len| json_number_to_uint(&s[..len], 32))
        }
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok()).ok_or_else(|| invalid(src, node, "uint32", field))
}

fn policy_from_json(src: &str, node: &Node<'_>) -> Result<common::JobFailurePolicy, String> {
    use common::job_failure_policy::Policy;
    let number = |name: &str| match name {
        "drop" => Some(1),
        "constant" => Some(2),
        _ => None,
    };
    let mut policy = None;
    for (field, value) in known_fields(src, node, number, |_| false)? {
        if policy.is_some() {
            let name = if field == 1 { "\"drop\"" } else { "\"constant\"" };
            return Err(error_at(
                src,
                value.pos,
                format_args!(
                    "error parsing {name}, oneof dapr.proto.common.v1.JobFailurePolicy.policy is already set"
                ),
            ));
        }
        policy = Some(if field == 1 {
            // JobFailurePolicyDrop has no fields; it must still be an object.
            known_fields(src, value, |_| None, |_| false)?;
            Policy::Drop(common::JobFailurePolicyDrop {})
        } else {
            Policy::Constant(constant_from_json(src, value)?)
        });
    }
    Ok(common::JobFailurePolicy { policy })
}

fn constant_from_json(src: &str, node: &Node<'_>) -> Result<common::JobFailurePolicyConstant, String> {
    let number = |name: &str| match name {
        "interval" => Some(1),
        "maxRetries" | "max_retries" => Some(2),
        _ => None,
    };
    let mut constant = common::JobFailurePolicyConstant::default();
    for (field, value) in known_fields(src, node, number, |_| false)? {
        if field == 1 {
            constant.interval = Some(duration_from_json(src, value)?);
        } else {
            constant.max_retries = Some(uint32_field(src, value, "maxRetries")?);
        }
    }
    Ok(constant)
}

const MAX_DURATION_SECONDS: i64 = 315_576_000_000;

fn duration_from_json(src: &str, node: &Node<'_>) -> Result<prost_types::Duration, String> {
    let NodeKind::String(s) = &node.kind else {
        return Err(syntax_error(src, node.pos, format_args!("unexpected token {}", node.raw)));
    };
    let d = parse_duration(s).ok_or_else(|| {
        error_at(src, node.pos, format_args!("invalid google.protobuf.Duration value {}", node.raw))
    })?;
    if d.seconds.abs() > MAX_DURATION_SECONDS {
        return Err(error_at(
            src,
            node.pos,
            format_args!("google.protobuf.Duration value out of range: {}", node.raw),
        ));
    }
    Ok(d)
}

/// protojson's Duration syntax: `[+-]` digits (no leading zeros), optional `.` and up to nine
/// digits, then `s`. `1.s`, `.5s` and even `.s` are valid; `1m`, `01s`, `1.0000000001s` are not.
fn parse_duration(s: &str) -> Option<prost_types::Duration> {
    let body = s.strip_suffix('s').filter(|_| s.len() >= 2)?;
    let (neg, body) = match body.as_bytes().first()? {
        b'-' => (true, &body[1..]),
        b'+' => (false, &body[1..]),
        _ => (false, body),
    };
    if body.is_empty() {
        return None;
    }
    let (int_part, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    let int_ok = int_part.is_empty() && frac.is_some()
        || int_part == "0"
        || (int_part.bytes().all(|b| b.is_ascii_digit())
            && !int_part.starts_with('0')
            && !int_part.is_empty());
    if !int_ok {
        return None;
    }
    let seconds: i64 = if int_part.is_empty() { 0 } else { int_part.parse().ok()? };
    let nanos: i32 = match frac {
        None => 0,
        Some(f) if f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            format!("{f:0<9}").parse().ok()?
        }
        Some(_) => return None,
    };
    Some(if neg {
        prost_types::Duration { seconds: -seconds, nanos: -nanos }
    } else {
        prost_types::Duration { seconds, nanos }
    })
}

/// `data`: any JSON value as a `google.protobuf.Value`.
fn value_from_json(src: &str, node: &Node<'_>, depth: usize) -> Result<prost_types::Value, String> {
    let kind = match &node.kind {
        NodeKind::Null => Kind::NullValue(0),
        NodeKind::Bool(b) => Kind::BoolValue(*b),
        NodeKind::Number => match node.raw.parse::<f64>() {
            Ok(n) if n.is_finite() => Kind::NumberValue(n),
            _ => {
                return Err(error_at(
                    src,
                    node.pos,
                    format_args!("invalid google.protobuf.Value: {}", node.raw),
                ));
            }
        },
        NodeKind::String(s) => Kind::StringValue(s.clone()),
        NodeKind::Array(_) | NodeKind::Object(_) if depth >= MAX_DATA_DEPTH => {
            return Err(error_at(
                src,
                node.pos,
                format_args!("data nests deeper than kairos supports ({MAX_DATA_DEPTH} levels)"),
            ));
        }
        NodeKind::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(|n| value_from_json(src, n, depth + 1)).collect::<Result<_, _>>()?,
        }),
        NodeKind::Object(members) => {
            let mut fields = BTreeMap::new();
            for m in members {
                let value = value_from_json(src, &m.value, depth + 1)?;
                if fields.insert(m.name.clone(), value).is_some() {
                    return Err(error_at(src, m.name_pos, format_args!("duplicate map key {}", m.name_raw)));
                }
            }
            Kind::StructValue(prost_types::Struct { fields })
        }
    };
    Ok(prost_types::Value { kind: Some(kind) })
}

// ---------------------------------------------------------------------------------------------
// Writing: protojson with EmitUnpopulated false.
// ---------------------------------------------------------------------------------------------

/// A JSON string as protojson writes it (same escapes as `serde_json`: `"`, `\`, and control
/// characters, with `\b \f \n \r \t` short forms; no HTML escaping).
fn write_str(out: &mut String, s: &str) {
    out.push_str(&serde_json::Value::from(s).to_string());
}

/// Writes `{"k":v,...}` from fields that each write their value.
struct ObjectWriter<'o> {
    out: &'o mut String,
    first: bool,
}

impl<'o> ObjectWriter<'o> {
    fn new(out: &'o mut String) -> Self {
        out.push('{');
        ObjectWriter { out, first: true }
    }

    fn key(&mut self, name: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, name);
        self.out.push(':');
        self.out
    }

    fn end(self) {
        self.out.push('}');
    }
}

fn write_job(out: &mut String, job: &runtime::Job) -> Result<(), EncodeError> {
    let mut o = ObjectWriter::new(out);
    if !job.name.is_empty() {
        write_str(o.key("name"), &job.name);
    }
    if let Some(s) = &job.schedule {
        write_str(o.key("schedule"), s);
    }
    if let Some(r) = job.repeats {
        let _ = write!(o.key("repeats"), "{r}");
    }
    if let Some(s) = &job.due_time {
        write_str(o.key("dueTime"), s);
    }
    if let Some(s) = &job.ttl {
        write_str(o.key("ttl"), s);
    }
    if let Some(any) = &job.data {
        write_any(o.key("data"), &any.type_url, &any.value, 0)?;
    }
    if let Some(policy) = &job.failure_policy {
        write_policy(o.key("failurePolicy"), policy)?;
    }
    o.end();
    Ok(())
}

fn write_policy(out: &mut String, policy: &common::JobFailurePolicy) -> Result<(), EncodeError> {
    use common::job_failure_policy::Policy;
    let mut o = ObjectWriter::new(out);
    match &policy.policy {
        None => {}
        Some(Policy::Drop(_)) => o.key("drop").push_str("{}"),
        Some(Policy::Constant(c)) => {
            let mut inner = ObjectWriter::new(o.key("constant"));
            if let Some(interval) = &c.interval {
                write_duration(inner.key("interval"), interval)?;
            }
            if let Some(n) = c.max_retries {
                let _ = write!(inner.key("maxRetries"), "{n}");
            }
            inner.end();
        }
    }
    o.end();
    Ok(())
}

/// protojson's Duration: `[-]<seconds>[.<3, 6 or 9 digits>]s`.
fn write_duration(out: &mut String, d: &prost_types::Duration) -> Result<(), EncodeError> {
    if d.seconds.abs() > MAX_DURATION_SECONDS {
        return Err(EncodeError(format!(
            "proto: google.protobuf.Duration: seconds out of range {}",
            d.seconds
        )));
    }
    if d.nanos.abs() >= 1_000_000_000 {
        return Err(EncodeError(format!("proto: google.protobuf.Duration: nanos out of range {}", d.nanos)));
    }
    if (d.seconds > 0 && d.nanos < 0) || (d.seconds < 0 && d.nanos > 0) {
        return Err(EncodeError(
            "proto: google.protobuf.Duration: signs of seconds and nanos do not match".to_owned(),
        ));
    }
    let sign = if d.seconds < 0 || d.nanos < 0 { "-" } else { "" };
    let text = format!("{sign}{}.{:09}", d.seconds.unsigned_abs(), d.nanos.unsigned_abs());
    out.push('"');
    out.push_str(trim_fraction(&text));
    out.push_str("s\"");
    Ok(())
}

/// Drops trailing zeros three digits at a time, as protojson does for durations and timestamps.
fn trim_fraction(text: &str) -> &str {
    let t = text.strip_suffix("000").unwrap_or(text);
    let t = t.strip_suffix("000").unwrap_or(t);
    t.strip_suffix(".000").unwrap_or(t)
}

fn write_any(out: &mut String, type_url: &str, value: &[u8], depth: usize) -> Result<(), EncodeError> {
    if type_url.is_empty() {
        if value.is_empty() {
            out.push_str("{}");
            return Ok(());
        }
        return Err(EncodeError("proto: google.protobuf.Any: type_url is not set".to_owned()));
    }
    if depth >= MAX_ANY_DEPTH {
        return Err(EncodeError("proto: exceeded max recursion depth".to_owned()));
    }
    let type_name = type_url.rsplit('/').next().unwrap_or(type_url);
    let unmarshal = |e: prost::DecodeError| {
        EncodeError(format!("proto: google.protobuf.Any: unable to unmarshal {type_url:?}: {e}"))
    };
    let mut o = ObjectWriter::new(out);
    write_str(o.key("@type"), type_url);
    let out = o.key("value");
    match type_name {
        "google.protobuf.Value" => write_value(out, &prost_types::Value::decode(value).map_err(unmarshal)?)?,
        "google.protobuf.Struct" => {
            write_struct(out, &prost_types::Struct::decode(value).map_err(unmarshal)?)?
        }
        "google.protobuf.ListValue" => {
            write_list(out, &prost_types::ListValue::decode(value).map_err(unmarshal)?)?;
        }
        "google.protobuf.Empty" => {
            <()>::decode(value).map_err(unmarshal)?;
            out.push_str("{}");
        }
        "google.protobuf.Duration" => {
            write_duration(out, &prost_types::Duration::decode(value).map_err(unmarshal)?)?;
        }
        "google.protobuf.Timestamp" => {
            write_timestamp(out, &prost_types::Timestamp::decode(value).map_err(unmarshal)?)?;
        }
        "google.protobuf.Any" => {
            let inner = prost_types::Any::decode(value).map_err(unmarshal)?;
            write_any(out, &inner.type_url, &inner.value, depth + 1)?;
        }
        "google.protobuf.StringValue" => write_str(out, &String::decode(value).map_err(unmarshal)?),
        "google.protobuf.BytesValue" => {
            out.push('"');
            base64_std(out, &Vec::<u8>::decode(value).map_err(unmarshal)?);
            out.push('"');
        }
        "google.protobuf.BoolValue" => {
            let _ = write!(out, "{}", bool::decode(value).map_err(unmarshal)?);
        }
        "google.protobuf.Int32Value" => {
            let _ = write!(out, "{}", i32::decode(value).map_err(unmarshal)?);
        }
        "google.protobuf.UInt32Value" => {
            let _ = write!(out, "{}", u32::decode(value).map_err(unmarshal)?);
        }
        // 64-bit integers are strings in protojson.
        "google.protobuf.Int64Value" => {
            let _ = write!(out, "\"{}\"", i64::decode(value).map_err(unmarshal)?);
        }
        "google.protobuf.UInt64Value" => {
            let _ = write!(out, "\"{}\"", u64::decode(value).map_err(unmarshal)?);
        }
        "google.protobuf.DoubleValue" => write_float(out, f64::decode(value).map_err(unmarshal)?, false),
        "google.protobuf.FloatValue" => {
            write_float(out, f64::from(f32::decode(value).map_err(unmarshal)?), true);
        }
        _ => {
            return Err(EncodeError(format!(
                "proto: google.protobuf.Any: unable to resolve {type_url:?}: not found"
            )));
        }
    }
    o.end();
    Ok(())
}

fn write_value(out: &mut String, value: &prost_types::Value) -> Result<(), EncodeError> {
    match &value.kind {
        None => {
            return Err(EncodeError(
                "proto: google.protobuf.Value: none of the oneof fields is set".to_owned(),
            ));
        }
        Some(Kind::NullValue(_)) => out.push_str("null"),
        Some(Kind::BoolValue(b)) => out.push_str(if *b { "true" } else { "false" }),
        Some(Kind::NumberValue(n)) => {
            if !n.is_finite() {
                let shown = if n.is_nan() {
                    "NaN"
                } else if *n > 0.0 {
                    "+Inf"
                } else {
                    "-Inf"
                };
                return Err(EncodeError(format!(
                    "proto: google.protobuf.Value.number_value: invalid {shown} value"
                )));
            }
            write_float(out, *n, false);
        }
        Some(Kind::StringValue(s)) => write_str(out, s),
        Some(Kind::ListValue(list)) => write_list(out, list)?,
        Some(Kind::StructValue(s)) => write_struct(out, s)?,
    }
    Ok(())
}

fn write_list(out: &mut String, list: &prost_types::ListValue) -> Result<(), EncodeError> {
    out.push('[');
    for (i, v) in list.values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_value(out, v)?;
    }
    out.push(']');
    Ok(())
}

/// Keys come out sorted (a `BTreeMap` orders them bytewise, as protojson sorts map keys).
fn write_struct(out: &mut String, s: &prost_types::Struct) -> Result<(), EncodeError> {
    let mut o = ObjectWriter::new(out);
    for (k, v) in &s.fields {
        write_value(o.key(k), v)?;
    }
    o.end();
    Ok(())
}

/// A float as protojson writes it: shortest round-trip digits, positional for
/// 1e-6 ≤ |n| < 1e21 and exponent form (`1e+21`, `1.5e-7`) outside; NaN and infinities as
/// the strings `"NaN"`, `"Infinity"`, `"-Infinity"`. `single` formats as a float32.
fn write_float(out: &mut String, n: f64, single: bool) {
    if n.is_nan() {
        out.push_str("\"NaN\"");
        return;
    }
    if n.is_infinite() {
        out.push_str(if n > 0.0 { "\"Infinity\"" } else { "\"-Infinity\"" });
        return;
    }
    #[allow(clippy::cast_possible_truncation)]
    let exponent_form = if single {
        let abs = (n as f32).abs();
        abs != 0.0 && !(1e-6f32..1e21f32).contains(&abs)
    } else {
        let abs = n.abs();
        abs != 0.0 && !(1e-6..1e21).contains(&abs)
    };
    #[allow(clippy::cast_possible_truncation)]
    let text = match (single, exponent_form) {
        (false, false) => format!("{n}"),
        (true, false) => format!("{}", n as f32),
        (false, true) => format!("{n:e}"),
        (true, true) => format!("{:e}", n as f32),
    };
    match text.split_once('e') {
        // Go writes the exponent with a sign and at least two digits, then drops the padding
        // zero of a negative one: 1e+21, 1e+300, 1e-7, 1e-10.
        Some((mantissa, exp)) => match exp.strip_prefix('-') {
            Some(neg) => {
                let _ = write!(out, "{mantissa}e-{neg}");
            }
            None => {
                let _ = write!(out, "{mantissa}e+{exp:0>2}");
            }
        },
        None => out.push_str(&text),
    }
}

fn write_timestamp(out: &mut String, t: &prost_types::Timestamp) -> Result<(), EncodeError> {
    // 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z
    if !(-62_135_596_800..=253_402_300_799).contains(&t.seconds) {
        return Err(EncodeError(format!(
            "proto: google.protobuf.Timestamp: seconds out of range {}",
            t.seconds
        )));
    }
    if !(0..=999_999_999).contains(&t.nanos) {
        return Err(EncodeError(format!("proto: google.protobuf.Timestamp: nanos out of range {}", t.nanos)));
    }
    let days = t.seconds.div_euclid(86_400);
    let secs = t.seconds.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let text = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        t.nanos
    );
    out.push('"');
    out.push_str(trim_fraction(&text));
    out.push_str("Z\"");
    Ok(())
}

/// Days since 1970-01-01 → proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Standard base64 with padding, as protojson writes bytes.
fn base64_std(out: &mut String, bytes: &[u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policies::*;
    use serde_json::json;

    /// Failure policies without a jiff dependency: built through the proto conversions.
    mod policies {
        use kairos_core::FailurePolicy;
        use kairos_proto::{common, convert};

        pub fn constant(seconds: i64, nanos: i32, max_retries: Option<u32>) -> FailurePolicy {
            let proto = common::JobFailurePolicy {
                policy: Some(common::job_failure_policy::Policy::Constant(
                    common::JobFailurePolicyConstant {
                        interval: Some(prost_types::Duration { seconds, nanos }),
                        max_retries,
                    },
                )),
            };
            convert::policy_from_proto(proto).unwrap().unwrap()
        }

        pub fn constant_unset() -> FailurePolicy {
            FailurePolicy::Constant { interval: None, max_retries: None }
        }
    }

    fn parse(body: &str) -> Result<ScheduleRequest, ApiError> {
        parse_schedule_body("job", body.as_bytes())
    }

    fn parse_ok(body: &str) -> JobSpec {
        parse(body).unwrap_or_else(|e| panic!("{body}: {e}")).spec
    }

    fn malformed(body: &str) -> String {
        match parse(body) {
            Err(ApiError::MalformedBody(msg)) => msg,
            other => panic!("{body}: expected a malformed body, got {other:?}"),
        }
    }

    fn data_json(spec: &JobSpec) -> serde_json::Value {
        let json: serde_json::Value = serde_json::from_str(&job_to_json("job", spec).unwrap()).unwrap();
        json["data"].clone()
    }

    fn value_payload(json: serde_json::Value) -> Payload {
        Payload { type_url: VALUE_TYPE_URL.into(), value: crate::value::json_to_value_bytes(&json) }
    }

    // spec §2.2: the accepted example, verbatim.
    #[test]
    fn spec_2_2_accepts_the_upstream_example_body() {
        let body = r#"{"schedule":"@every 1m","repeats":123,"dueTime":"1000s","ttl":"123s","data":"hello world","failure_policy":{"constant":{"interval":"3s","max_retries":5}}}"#;
        let req = parse_schedule_body("  my-job ", body.as_bytes()).unwrap();
        assert_eq!(req.name, "my-job");
        assert!(!req.overwrite);
        assert_eq!(
            req.spec,
            JobSpec {
                schedule: Some("@every 1m".into()),
                repeats: Some(123),
                due_time: Some("1000s".into()),
                ttl: Some("123s".into()),
                data: Some(value_payload(json!("hello world"))),
                failure_policy: Some(constant(3, 0, Some(5))),
            }
        );
    }

    #[test]
    fn spec_2_2_both_name_styles_are_accepted() {
        let camel = parse_ok(
            r#"{"dueTime":"1s","failurePolicy":{"constant":{"interval":"2s","maxRetries":1}},"overwrite":true}"#,
        );
        let snake = parse_ok(
            r#"{"due_time":"1s","failure_policy":{"constant":{"interval":"2s","max_retries":1}},"overwrite":true}"#,
        );
        assert_eq!(camel, snake);
        assert_eq!(camel.due_time.as_deref(), Some("1s"));
        assert_eq!(camel.failure_policy, Some(constant(2, 0, Some(1))));
        assert!(parse(r#"{"dueTime":"1s","overwrite":true}"#).unwrap().overwrite);
        // Only the exact JSON or proto name: other spellings are unknown, hence ignored.
        assert_eq!(parse(r#"{"DueTime":"1s"}"#), Err(ApiError::EmptySchedule));
        assert_eq!(parse(r#"{"duetime":"1s"}"#), Err(ApiError::EmptySchedule));
    }

    #[test]
    fn spec_2_2_unknown_fields_are_ignored_but_must_be_valid_json() {
        let spec = parse_ok(r#"{"schedule":"@daily","foo":{"bar":[1,2,{"x":null}]},"foo":1,"@type":"x"}"#);
        assert_eq!(spec, JobSpec { schedule: Some("@daily".into()), ..JobSpec::default() });
        malformed(r#"{"schedule":"@daily","foo":[1,}"#);
        malformed(r#"{"schedule":"@daily","foo":tru}"#);
    }

    #[test]
    fn spec_2_2_data_takes_every_json_type() {
        for data in [
            json!("hello world"),
            json!(123),
            json!(-1.5),
            json!(1e300),
            json!(true),
            json!(false),
            json!(null),
            json!([1, "two", {"three": 3}, [], {}]),
            json!({}),
            json!({"Task": "db-backup", "Metadata": {"DBName": "my-prod-db", "BackupLocation": "/backup-dir"}}),
            // spec §2.2: an Any look-alike is a plain object
            json!({"@type": "type.googleapis.com/google.protobuf.StringValue", "value": "x"}),
        ] {
            let body = json!({"schedule": "@every 1s", "data": data}).to_string();
            let spec = parse_ok(&body);
            assert_eq!(spec.data, Some(value_payload(data.clone())), "{body}");
            assert_eq!(data_json(&spec), json!({"@type": VALUE_TYPE_URL, "value": data}), "{body}");
        }
    }

    #[test]
    fn spec_2_2_absent_data_is_none_and_null_data_is_a_null_value() {
        assert_eq!(parse_ok(r#"{"schedule":"@daily"}"#).data, None);
        let spec = parse_ok(r#"{"schedule":"@daily","data":null}"#);
        assert_eq!(spec.data, Some(Payload { type_url: VALUE_TYPE_URL.into(), value: vec![0x08, 0x00] }));
        assert_eq!(
            job_to_json("j", &spec).unwrap(),
            format!(
                r#"{{"name":"j","schedule":"@daily","data":{{"@type":"{VALUE_TYPE_URL}","value":null}}}}"#
            )
        );
    }

    #[test]
    fn spec_2_2_null_means_unset_for_every_other_field() {
        let spec = parse_ok(
            r#"{"name":null,"schedule":"@daily","repeats":null,"dueTime":null,"ttl":null,"overwrite":null,"failurePolicy":null}"#,
        );
        assert_eq!(spec, JobSpec { schedule: Some("@daily".into()), ..JobSpec::default() });
        assert_eq!(parse(r#"{"schedule":null}"#), Err(ApiError::EmptySchedule));
        // inside the policy too; an empty policy message means "no policy"
        assert_eq!(parse_ok(r#"{"dueTime":"1s","failurePolicy":{"drop":null}}"#).failure_policy, None);
        assert_eq!(
            parse_ok(r#"{"dueTime":"1s","failurePolicy":{"drop":null,"constant":{"interval":null,"maxRetries":null}}}"#)
                .failure_policy,
            Some(constant_unset())
        );
    }

    #[test]
    fn spec_2_2_failure_policies() {
        use kairos_core::FailurePolicy;
        let p =
            |body: &str| parse_ok(&format!(r#"{{"dueTime":"1s","failurePolicy":{body}}}"#)).failure_policy;
        assert_eq!(p(r#"{"drop":{}}"#), Some(FailurePolicy::Drop));
        assert_eq!(p(r#"{"drop":{"unknown":1}}"#), Some(FailurePolicy::Drop));
        assert_eq!(p(r#"{"constant":{}}"#), Some(constant_unset()));
        assert_eq!(p(r#"{"constant":{"interval":"1.5s"}}"#), Some(constant(1, 500_000_000, None)));
        assert_eq!(
            p(r#"{"constant":{"maxRetries":"7"}}"#),
            Some(FailurePolicy::Constant { interval: None, max_retries: Some(7) })
        );
        assert_eq!(p("{}"), None);
        malformed(r#"{"dueTime":"1s","failurePolicy":{"drop":{},"constant":{}}}"#);
        malformed(r#"{"dueTime":"1s","failurePolicy":{"drop":true}}"#);
        malformed(r#"{"dueTime":"1s","failurePolicy":"drop"}"#);
        malformed(r#"{"dueTime":"1s","failurePolicy":{"constant":{"maxRetries":-1}}}"#);
        malformed(r#"{"dueTime":"1s","failurePolicy":{"constant":{"interval":3}}}"#);
    }

    // spec §2.2: interval is a protojson Duration string.
    #[test]
    fn spec_2_2_interval_uses_protojson_duration_syntax() {
        let d = |s: &str| parse_duration(s).map(|d| (d.seconds, d.nanos));
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
        let body =
            |i: &str| format!(r#"{{"dueTime":"1s","failurePolicy":{{"constant":{{"interval":"{i}"}}}}}}"#);
        let msg = malformed(&body("1m"));
        assert!(msg.contains(r#"invalid google.protobuf.Duration value "1m""#), "{msg}");
        let msg = malformed(&body("315576000001s"));
        assert!(msg.contains("out of range"), "{msg}");
    }

    // spec §2.2 / §2.4: repeats is a uint32; anything else is a 400 ERR_MALFORMED_REQUEST.
    #[test]
    fn spec_2_2_repeats_is_a_uint32_number_or_quoted_number() {
        let r = |v: &str| parse(&format!(r#"{{"schedule":"@daily","repeats":{v}}}"#)).map(|r| r.spec.repeats);
        for (v, want) in [
            ("5", 5),
            ("0", 0),
            ("\"5\"", 5),
            ("4294967295", u32::MAX),
            ("\"4294967295\"", u32::MAX),
            ("1e2", 100),
            ("1E+2", 100),
            ("5.0", 5),
            ("0.5e1", 5),
            ("10e-1", 1),
            ("-0", 0),
            ("\"1e1\"", 10),
            // protojson reads only the first JSON token of the string
            ("\"5 6\"", 5),
        ] {
            assert_eq!(r(v), Ok(Some(want)), "{v}");
        }
        for v in [
            "-1",
            "1.5",
            "4294967296",
            "1e10",
            "1e-1",
            "true",
            "[1]",
            "{}",
            "\"\"",
            "\" 5\"",
            "\"5 \"",
            "\"abc\"",
            "\"-1\"",
            "\"0x10\"",
            "\"5x\"",
            "01",
            "1.",
            "+1",
            ".5",
            "NaN",
            "Infinity",
        ] {
            let Err(ApiError::MalformedBody(msg)) = r(v) else { panic!("{v}: {:?}", r(v)) };
            assert!(msg.starts_with("proto: "), "{v}: {msg}");
        }
        let msg = malformed(r#"{"schedule":"@daily","repeats":-1}"#);
        assert_eq!(msg, "proto: (line 1:32): invalid value for uint32 field repeats: -1");
        let (status, body) = ApiError::MalformedBody(msg).http_body("app", "ns");
        assert_eq!(status, 400);
        assert!(body.starts_with(
            r#"{"errorCode":"ERR_MALFORMED_REQUEST","message":"failed deserializing HTTP body: "#
        ));
    }

    #[test]
    fn spec_2_2_wrong_types_are_malformed() {
        for body in [
            r#"{"schedule":1}"#,
            r#"{"schedule":["@daily"]}"#,
            r#"{"dueTime":true}"#,
            r#"{"ttl":{}}"#,
            r#"{"overwrite":"true"}"#,
            r#"{"overwrite":1}"#,
            r#"{"name":1}"#,
            r#"{"data":1e400}"#,
            r#"{"data":-1e400}"#,
        ] {
            malformed(body);
        }
    }

    #[test]
    fn spec_2_2_body_must_be_one_json_object() {
        let msg = malformed("[{}]");
        assert_eq!(msg, "proto: syntax error (line 1:1): unexpected token [");
        for body in [
            "\"x\"",
            "1",
            "null",
            "true",
            " ",
            "{",
            "{\"schedule\":\"@daily\"",
            "{}{}",
            "{} x",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{'a':1}",
            "{\"a\":01}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\\ud800\"}",
            "{\"a\":\"tab\there\"}",
            "\u{feff}{}",
        ] {
            malformed(body);
        }
        assert!(matches!(
            parse_schedule_body("j", b"{\"schedule\":\"\xff\"}"),
            Err(ApiError::MalformedBody(_))
        ));
        // whitespace around the object is fine
        assert_eq!(parse_ok(" \n\t{\"schedule\":\"@daily\"}\r\n ").schedule.as_deref(), Some("@daily"));
    }

    #[test]
    fn spec_2_2_duplicate_fields_are_malformed_under_either_name() {
        let msg = malformed(r#"{"dueTime":"1s","due_time":"2s"}"#);
        assert_eq!(msg, r#"proto: (line 1:17): duplicate field "due_time""#);
        malformed(r#"{"schedule":"a","schedule":"b"}"#);
        // a null still counts as given
        malformed(r#"{"schedule":null,"schedule":"b"}"#);
        malformed(r#"{"dueTime":"1s","failurePolicy":{"constant":{"maxRetries":1,"max_retries":2}}}"#);
        let msg = malformed(r#"{"dueTime":"1s","data":{"a":1,"a":2}}"#);
        assert!(msg.contains(r#"duplicate map key "a""#), "{msg}");
    }

    #[test]
    fn json_escapes_are_decoded() {
        let spec = parse_ok(r#"{"schedule":"\u0040daily","data":"\ud83d\ude00 \"q\" \\ \/ \b\f\n\r\t"}"#);
        assert_eq!(spec.schedule.as_deref(), Some("@daily"));
        assert_eq!(data_json(&spec)["value"], json!("😀 \"q\" \\ / \u{8}\u{c}\n\r\t"));
    }

    // spec §2.4: daprd's checks and their order.
    #[test]
    fn spec_2_4_checks_run_in_daprd_order() {
        assert_eq!(parse_schedule_body("j", b""), Err(ApiError::EmptySchedule));
        assert_eq!(parse_schedule_body("j", b"{}"), Err(ApiError::EmptySchedule));
        assert_eq!(parse_schedule_body(" \t", br#"{"schedule":"@daily"}"#), Err(ApiError::EmptyName));
        assert_eq!(parse_schedule_body("\u{a0}\u{3000}", b""), Err(ApiError::EmptyName));
        assert_eq!(parse_schedule_body(" ", br#"{"name":"x"}"#), Err(ApiError::NameInBody));
        assert_eq!(
            parse_schedule_body("j", br#"{"name":"x","schedule":"@daily"}"#),
            Err(ApiError::NameInBody)
        );
        assert!(matches!(parse_schedule_body(" ", br#"{"name":1}"#), Err(ApiError::MalformedBody(_))));
        // an empty name in the body is no name
        assert_eq!(parse_schedule_body("j", br#"{"name":"","dueTime":"1s"}"#).unwrap().name, "j");
        // an empty schedule string is present: the scheduler judges it
        assert_eq!(parse_ok(r#"{"schedule":""}"#).schedule.as_deref(), Some(""));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let data = |n: usize| format!(r#"{{"schedule":"@daily","data":{}}}"#, deep(n));
        let spec = parse_ok(&data(MAX_DATA_DEPTH));
        // what kairos accepts it can render again
        assert!(job_to_json("j", &spec).is_ok());
        let msg = malformed(&data(MAX_DATA_DEPTH + 1));
        assert!(msg.contains("nests deeper"), "{msg}");
        // unknown fields may nest up to the JSON limit
        let unknown = |n: usize| format!(r#"{{"schedule":"@daily","x":{}}}"#, deep(n));
        parse_ok(&unknown(MAX_JSON_DEPTH - 1));
        malformed(&unknown(MAX_JSON_DEPTH));
        malformed(&"[".repeat(100_000));
    }

    #[test]
    fn prost_decodes_data_at_the_depth_limit_but_not_much_deeper() {
        let nested = |n: usize, lists: bool| {
            let mut v = prost_types::Value { kind: Some(Kind::NullValue(0)) };
            for _ in 0..n {
                let kind = if lists {
                    Kind::ListValue(prost_types::ListValue { values: vec![v] })
                } else {
                    Kind::StructValue(prost_types::Struct { fields: BTreeMap::from([("k".to_owned(), v)]) })
                };
                v = prost_types::Value { kind: Some(kind) };
            }
            v.encode_to_vec()
        };
        for lists in [true, false] {
            assert!(prost_types::Value::decode(nested(MAX_DATA_DEPTH, lists).as_slice()).is_ok());
            assert!(prost_types::Value::decode(nested(MAX_DATA_DEPTH * 2, lists).as_slice()).is_err());
        }
    }

    // spec §2.3: the GET body.
    #[test]
    fn spec_2_3_job_renders_as_protojson_in_field_order() {
        let spec = JobSpec {
            schedule: Some("@every 1m".into()),
            repeats: Some(123),
            due_time: Some("1000s".into()),
            ttl: Some("123s".into()),
            data: Some(value_payload(json!("hello world"))),
            failure_policy: Some(constant(3, 0, Some(5))),
        };
        assert_eq!(
            job_to_json("my-job", &spec).unwrap(),
            r#"{"name":"my-job","schedule":"@every 1m","repeats":123,"dueTime":"1000s","ttl":"123s","data":{"@type":"type.googleapis.com/google.protobuf.Value","value":"hello world"},"failurePolicy":{"constant":{"interval":"3s","maxRetries":5}}}"#
        );
        let spec = JobSpec { due_time: Some("10s".into()), ..JobSpec::default() }.with_default_policy();
        assert_eq!(
            job_to_json("j", &spec).unwrap(),
            r#"{"name":"j","dueTime":"10s","failurePolicy":{"constant":{"interval":"1s","maxRetries":3}}}"#
        );
        let spec = JobSpec {
            schedule: Some(String::new()),
            repeats: Some(0),
            failure_policy: Some(kairos_core::FailurePolicy::Drop),
            ..JobSpec::default()
        };
        assert_eq!(
            job_to_json("", &spec).unwrap(),
            r#"{"schedule":"","repeats":0,"failurePolicy":{"drop":{}}}"#
        );
        let spec = JobSpec { failure_policy: Some(constant_unset()), ..JobSpec::default() };
        assert_eq!(job_to_json("j\"<", &spec).unwrap(), r#"{"name":"j\"<","failurePolicy":{"constant":{}}}"#);
    }

    #[test]
    fn spec_2_3_durations_render_with_0_3_6_or_9_fraction_digits() {
        let render = |seconds, nanos| {
            let mut out = String::new();
            write_duration(&mut out, &prost_types::Duration { seconds, nanos }).map(|()| out)
        };
        for ((s, n), want) in [
            ((1, 0), "\"1s\""),
            ((0, 0), "\"0s\""),
            ((1, 500_000_000), "\"1.500s\""),
            ((0, 1), "\"0.000000001s\""),
            ((0, 1_000), "\"0.000001s\""),
            ((0, 10_000), "\"0.000010s\""),
            ((-1, -500_000_000), "\"-1.500s\""),
            ((0, -1), "\"-0.000000001s\""),
            ((315_576_000_000, 999_999_999), "\"315576000000.999999999s\""),
        ] {
            assert_eq!(render(s, n).unwrap(), want);
        }
        assert!(render(1, -1).is_err());
        assert!(render(315_576_000_001, 0).is_err());
        assert!(render(0, 1_000_000_000).is_err());
    }

    // spec §2.3 / §7.9: data from gRPC SDKs.
    #[test]
    fn spec_2_3_any_rendering() {
        let any = |type_url: &str, value: Vec<u8>| any_to_json(type_url, &value);
        assert_eq!(any("", vec![]).unwrap(), "{}");
        let err = any("", b"{\"a\":1}".to_vec()).unwrap_err();
        assert_eq!(err.to_string(), "proto: google.protobuf.Any: type_url is not set");
        for url in
            ["type.googleapis.com/io.dapr.RustTest", "dapr.io/schedule/jobpayload", "type.googleapis.com/"]
        {
            let err = any(url, b"x".to_vec()).unwrap_err();
            assert!(err.to_string().contains("unable to resolve"), "{err}");
            let spec = JobSpec {
                data: Some(Payload { type_url: url.into(), value: b"x".to_vec() }),
                ..JobSpec::default()
            };
            let err = job_to_json("j", &spec).unwrap_err();
            assert!(err.to_string().starts_with("failed to encode response as JSON: proto: "), "{err}");
            assert_eq!(err.http_status(), 500);
        }
        // the type is what follows the last '/'
        let v = crate::value::json_to_value_bytes(&json!([1, "a"]));
        assert_eq!(
            any("example.com/x/google.protobuf.Value", v.clone()).unwrap(),
            r#"{"@type":"example.com/x/google.protobuf.Value","value":[1,"a"]}"#
        );
        assert_eq!(
            any("google.protobuf.Value", v).unwrap(),
            r#"{"@type":"google.protobuf.Value","value":[1,"a"]}"#
        );
        // a Value with no kind, garbage bytes, a non-finite number
        assert!(
            any(VALUE_TYPE_URL, vec![]).unwrap_err().to_string().contains("none of the oneof fields is set")
        );
        assert!(any(VALUE_TYPE_URL, vec![0xff]).unwrap_err().to_string().contains("unable to unmarshal"));
        let nan = prost_types::Value { kind: Some(Kind::NumberValue(f64::NAN)) }.encode_to_vec();
        assert!(any(VALUE_TYPE_URL, nan).is_err());
    }

    #[test]
    fn spec_2_3_well_known_types_render_like_protojson() {
        let t = |name: &str| format!("type.googleapis.com/google.protobuf.{name}");
        let check = |name: &str, bytes: Vec<u8>, value: &str| {
            let url = t(name);
            assert_eq!(
                any_to_json(&url, &bytes).unwrap(),
                format!(r#"{{"@type":"{url}","value":{value}}}"#),
                "{name}"
            );
        };
        check("StringValue", "x\"y".to_owned().encode_to_vec(), r#""x\"y""#);
        check("StringValue", vec![], r#""""#);
        check("BytesValue", b"hello".to_vec().encode_to_vec(), r#""aGVsbG8=""#);
        check("BytesValue", vec![0xfb, 0xff].encode_to_vec(), r#""+/8=""#);
        check("BytesValue", b"abc".to_vec().encode_to_vec(), r#""YWJj""#);
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
        check(
            "Struct",
            prost_types::Struct {
                fields: BTreeMap::from([
                    ("b".to_owned(), prost_types::Value { kind: Some(Kind::BoolValue(true)) }),
                    ("a".to_owned(), prost_types::Value { kind: Some(Kind::NullValue(0)) }),
                ]),
            }
            .encode_to_vec(),
            r#"{"a":null,"b":true}"#,
        );
        check(
            "ListValue",
            prost_types::ListValue {
                values: vec![prost_types::Value { kind: Some(Kind::NumberValue(2.0)) }],
            }
            .encode_to_vec(),
            "[2]",
        );
        check(
            "Duration",
            prost_types::Duration { seconds: 90, nanos: 1_000_000 }.encode_to_vec(),
            r#""90.001s""#,
        );
        check(
            "Timestamp",
            prost_types::Timestamp { seconds: 0, nanos: 0 }.encode_to_vec(),
            r#""1970-01-01T00:00:00Z""#,
        );
        check(
            "Timestamp",
            prost_types::Timestamp { seconds: 1_772_359_200, nanos: 120_000_000 }.encode_to_vec(),
            r#""2026-03-01T10:00:00.120Z""#,
        );
        check(
            "Timestamp",
            prost_types::Timestamp { seconds: -62_135_596_800, nanos: 0 }.encode_to_vec(),
            r#""0001-01-01T00:00:00Z""#,
        );
        check(
            "Timestamp",
            prost_types::Timestamp { seconds: 253_402_300_799, nanos: 999_999_999 }.encode_to_vec(),
            r#""9999-12-31T23:59:59.999999999Z""#,
        );
        check(
            "Timestamp",
            prost_types::Timestamp { seconds: 951_782_400, nanos: 0 }.encode_to_vec(),
            r#""2000-02-29T00:00:00Z""#,
        );
        let inner = prost_types::Any { type_url: t("StringValue"), value: "x".to_owned().encode_to_vec() };
        check("Any", inner.encode_to_vec(), &format!(r#"{{"@type":"{}","value":"x"}}"#, t("StringValue")));
        assert!(
            any_to_json(
                &t("Timestamp"),
                &prost_types::Timestamp { seconds: 253_402_300_800, nanos: 0 }.encode_to_vec()
            )
            .is_err()
        );
        assert!(
            any_to_json(&t("Timestamp"), &prost_types::Timestamp { seconds: 0, nanos: -1 }.encode_to_vec())
                .is_err()
        );
        assert!(any_to_json(&t("StringValue"), b"\x0a\x01\xff").is_err());
        assert!(any_to_json(&t("FieldMask"), &[]).is_err());
    }

    #[test]
    fn any_nesting_is_bounded() {
        let mut any = prost_types::Any { type_url: String::new(), value: vec![] };
        for _ in 0..100 {
            any = prost_types::Any {
                type_url: "type.googleapis.com/google.protobuf.Any".into(),
                value: any.encode_to_vec(),
            };
        }
        assert!(any_to_json(&any.type_url, &any.value).is_err());
    }

    #[test]
    fn numbers_render_as_go_protojson_does() {
        let render = |n: f64| {
            let mut out = String::new();
            write_float(&mut out, n, false);
            out
        };
        for (n, want) in [
            (0.0, "0"),
            (-0.0, "-0"),
            (123.0, "123"),
            (0.5, "0.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e20, "100000000000000000000"),
            (1.2345678901234568e20, "123456789012345680000"),
            (1e21, "1e+21"),
            (1.5e300, "1.5e+300"),
            (1e-6, "0.000001"),
            (1e-7, "1e-7"),
            (1.5e-10, "1.5e-10"),
            (-2.5e-300, "-2.5e-300"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
        ] {
            assert_eq!(render(n), want, "{n:e}");
        }
        let mut out = String::new();
        write_float(&mut out, f64::from(1e-7f32), true);
        assert_eq!(out, "1e-7");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                ".*".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(".*", inner, 0..6)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #[test]
            fn parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..256), name in ".*") {
                let _ = parse_schedule_body(&name, &body);
            }

            #[test]
            fn parse_never_panics_on_near_json(body in r#"[\{\}\[\]":,0-9a-z_.eE+\- \\]{0,64}"#) {
                let _ = parse_schedule_body("j", body.as_bytes());
                let _ = parse_schedule_body("j", format!(r#"{{"schedule":"x","repeats":{body}}}"#).as_bytes());
                let _ = parse_schedule_body("j", format!(r#"{{"dueTime":"1s","data":{body}}}"#).as_bytes());
            }

            #[test]
            fn data_round_trips_through_parse_and_render(data in json_value()) {
                let body = json!({"dueTime": "1s", "data": data}).to_string();
                let spec = parse_schedule_body("j", body.as_bytes()).unwrap().spec;
                let payload = spec.data.clone().unwrap();
                // parsed as value.rs encodes the same JSON
                prop_assert_eq!(&payload, &value_payload(data.clone()));
                // rendered, then read back (by this parser: serde_json's float parsing is only
                // approximate), it is the same value
                let value = prost_types::Value::decode(payload.value.as_slice()).unwrap();
                let text = value_to_json(&value).unwrap();
                let rendered = job_to_json("j", &spec).unwrap();
                let expected = format!(r#""data":{{"@type":"{VALUE_TYPE_URL}","value":{text}}}"#);
                prop_assert!(rendered.contains(&expected));
                let again = parse_schedule_body("j", format!(r#"{{"dueTime":"1s","data":{text}}}"#).as_bytes());
                prop_assert_eq!(again.unwrap().spec.data, Some(payload));
                // and it is JSON any parser reads
                let _: serde_json::Value = serde_json::from_str(&rendered).unwrap();
            }

            #[test]
            fn rendered_floats_read_back_exactly(n in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
                let mut out = String::new();
                write_float(&mut out, n, false);
                prop_assert_eq!(out.parse::<f64>().unwrap().to_bits(), n.to_bits());
            }

            #[test]
            fn timestamps_render_like_iso_dates(seconds in -62_135_596_800i64..=253_402_300_799, nanos in 0i32..1_000_000_000) {
                let mut out = String::new();
                write_timestamp(&mut out, &prost_types::Timestamp { seconds, nanos }).unwrap();
                let days = seconds.div_euclid(86_400);
                // civil_from_days inverts days_from_civil
                let (y, m, d) = civil_from_days(days);
                let back = days_from_civil(y, m, d);
                prop_assert_eq!(back, days);
                prop_assert!(out.ends_with("Z\""));
            }
        }

        fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y.rem_euclid(400);
            let mp = if m > 2 { m - 3 } else { m + 9 };
            let doy = (153 * mp + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            era * 146_097 + doe - 719_468
        }
    }
}
