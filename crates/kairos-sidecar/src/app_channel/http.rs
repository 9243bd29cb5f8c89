//! The HTTP transport of the app channel (spec §4.2): `POST /job/{name}`, with daprd's body
//! rules.

use kairos_core::Payload;
use kairos_proto::json::{VALUE_TYPE_URL, value_to_string};
use prost::Message;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

use super::{API_TOKEN_HEADER, Delivery, error_chain};

/// An HTTP app.
#[derive(Debug)]
pub(super) struct HttpApp {
    /// Pooled: connections to the app are kept alive between deliveries.
    pub(super) client: reqwest::Client,
    pub(super) base_url: String,
    pub(super) api_token: Option<HeaderValue>,
    pub(super) max_body_size: usize,
}

impl HttpApp {
    pub(super) async fn deliver(&self, name: &str, data: Option<&Payload>) -> Delivery {
        let Some(path) = job_path(name) else {
            return Delivery::Failed {
                reason: format!("job name {name:?} cannot be written as a URL path segment"),
            };
        };
        let url = format!("{}/{path}", self.base_url);
        let body = http_body(data);
        let mut request = self
            .client
            .post(&url)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            // hyper leaves it out for an empty body; Go's client sends `Content-Length: 0` on a POST.
            .header(CONTENT_LENGTH, body.len())
            .body(body);
        if let Some(token) = &self.api_token {
            request = request.header(API_TOKEN_HEADER, token.clone());
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(e) => return Delivery::Failed { reason: format!("POST {url} failed: {}", error_chain(&e)) },
        };
        let status = response.status();
        // The body is ignored, but reading it lets the connection go back to the pool.
        let mut read = 0;
        while read <= self.max_body_size {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
        match status.as_u16() {
            200..=299 => Delivery::Success,
            404 => Delivery::NotFoundCountedAsSuccess,
            _ => Delivery::Failed { reason: format!("the app answered HTTP {status} to POST {url}") },
        }
    }
}

/// `job/{name}`, with one leading `/` of the name stripped as daprd does.
///
/// Upstream concatenates the name into the URL and leaves its escaping to Go's `net/url`
/// (spec §11 [UNCONFIRMED]); here the name is one RFC 3986 path segment: unreserved characters,
/// sub-delims, `:` and `@` are kept and every other byte of its UTF-8 is percent-encoded with
/// upper-case hex (`my||job@name` → `my%7C%7Cjob@name`, a space → `%20`, `%` → `%25`). For the
/// names Dapr accepts this matches what Go sends except where Go keeps `!'()*` raw and
/// re-escapes them only when another character forced escaping; both forms decode to the name.
/// `None` for `.` and `..`, which URL parsers turn into path navigation even when escaped.
fn job_path(name: &str) -> Option<String> {
    let name = name.strip_prefix('/').unwrap_or(name);
    if name == "." || name == ".." {
        return None;
    }
    let mut path = String::with_capacity(4 + name.len());
    path.push_str("job/");
    for &byte in name.as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push('%');
            path.push(char::from(HEX[usize::from(byte >> 4)]));
            path.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
    Some(path)
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The HTTP request body daprd sends for a job's payload (`constructJobRequest`, spec §4.2).
///
/// * No payload or an empty value: an empty body.
/// * A `google.protobuf.Value` payload: its protojson (`"someData"`, `123`, `{"a":1}`), as
///   daprd's `structpb.Value.MarshalJSON` writes it and as GET shows it. Bytes that do not decode,
///   or a value protojson cannot write (NaN, no kind), fall back to the next rule (daprd fails the
///   delivery instead).
/// * Anything else: the raw value bytes trimmed as Go's `bytes.TrimSpace` does.
fn http_body(data: Option<&Payload>) -> Vec<u8> {
    let Some(payload) = data.filter(|p| !p.value.is_empty()) else {
        return Vec::new();
    };
    if payload.type_url == VALUE_TYPE_URL
        && let Ok(value) = prost_types::Value::decode(payload.value.as_slice())
        && let Ok(json) = value_to_string(&value)
    {
        return json.into_bytes();
    }
    go_trim_space(&payload.value).to_vec()
}

/// Go's `bytes.TrimSpace`: strips from both ends the leading and trailing runes of the UTF-8
/// decoding for which `unicode.IsSpace` holds.
///
/// Those are `\t \n \v \f \r` and space (0x09–0x0D, 0x20), U+0085 and U+00A0, U+1680,
/// U+2000–U+200A, U+2028, U+2029, U+202F, U+205F and U+3000. Non-ASCII spaces count only as
/// their UTF-8 encoding (U+0085 is `C2 85`, U+00A0 is `C2 A0`): a lone byte 0x85 or 0xA0 is
/// invalid UTF-8, which Go decodes as U+FFFD, not a space, and trimming stops there. So for
/// protobuf payloads only the ASCII bytes 0x09–0x0D and 0x20 matter in practice: a
/// `StringValue` of 11 bytes starts `0A 0B` and loses both.
fn go_trim_space(bytes: &[u8]) -> &[u8] {
    let mut start = 0;
    while let Some((c, len)) = first_char(&bytes[start..]) {
        if !is_go_space(c) {
            break;
        }
        start += len;
    }
    let mut end = bytes.len();
    while let Some((c, len)) = last_char(&bytes[start..end]) {
        if !is_go_space(c) {
            break;
        }
        end -= len;
    }
    &bytes[start..end]
}

/// Go's `unicode.IsSpace`: the Unicode White_Space property.
fn is_go_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r' | ' ' | '\u{85}' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}'
    )
}

/// The first rune of `bytes` and its length; `None` when empty or invalid UTF-8 (Go's
/// `utf8.RuneError`, never a space).
fn first_char(bytes: &[u8]) -> Option<(char, usize)> {
    (1..=bytes.len().min(4)).find_map(|n| single_char(&bytes[..n]))
}

/// The last rune of `bytes` and its length, as Go's `utf8.DecodeLastRune`.
fn last_char(bytes: &[u8]) -> Option<(char, usize)> {
    (1..=bytes.len().min(4)).find_map(|n| single_char(&bytes[bytes.len() - n..]))
}

fn single_char(bytes: &[u8]) -> Option<(char, usize)> {
    let s = std::str::from_utf8(bytes).ok()?;
    let mut chars = s.chars();
    let c = chars.next()?;
    chars.next().is_none().then_some((c, bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_path_is_one_percent_encoded_segment() {
        for (name, path) in [
            ("my-job", "job/my-job"),
            ("/leading", "job/leading"),
            ("my||job@name", "job/my%7C%7Cjob@name"),
            ("with space", "job/with%20space"),
            ("100%", "job/100%25"),
            ("a/b?c#d", "job/a%2Fb%3Fc%23d"),
            ("ünï", "job/%C3%BCn%C3%AF"),
            ("keep:~!$&'()*+,;=", "job/keep:~!$&'()*+,;="),
            ("...", "job/..."),
        ] {
            assert_eq!(job_path(name).as_deref(), Some(path), "{name}");
        }
        assert_eq!(job_path("."), None);
        assert_eq!(job_path(".."), None);
    }

    #[test]
    fn trim_space_matches_go_bytes_trim_space() {
        for (input, trimmed) in [
            (&b""[..], &b""[..]),
            (b" \t\n\x0b\x0c\r", b""),
            (b"\x0a\x0bhello world", b"hello world"),
            (b"\x08\x7b", b"\x08{"),
            (b"\x00abc\x00", b"\x00abc\x00"),
            (b"  a b  ", b"a b"),
            // U+0085 and U+00A0 as UTF-8 are spaces; the lone bytes are not.
            (b"\xc2\x85x\xc2\xa0", b"x"),
            (b"\x85x\xa0", b"\x85x\xa0"),
            // U+3000 and U+2028 at the ends; U+FEFF is not a space.
            ("\u{3000}y\u{2028}".as_bytes(), b"y"),
            ("\u{feff}z".as_bytes(), "\u{feff}z".as_bytes()),
            // Invalid UTF-8 stops trimming even with spaces behind it.
            (b" \xff \xff ", b"\xff \xff"),
            (b"\x1c\x1f", b"\x1c\x1f"),
        ] {
            assert_eq!(go_trim_space(input), trimmed, "{input:?}");
        }
    }

    #[test]
    fn http_body_follows_daprd_rules() {
        let value = |json: serde_json::Value| Payload {
            type_url: VALUE_TYPE_URL.to_owned(),
            value: kairos_proto::json::value_from_json(json).unwrap().encode_to_vec(),
        };
        assert_eq!(http_body(None), b"");
        assert_eq!(http_body(Some(&Payload::default())), b"");
        assert_eq!(http_body(Some(&Payload { type_url: VALUE_TYPE_URL.to_owned(), value: vec![] })), b"");
        assert_eq!(http_body(Some(&value(serde_json::json!("someData")))), b"\"someData\"");
        assert_eq!(http_body(Some(&value(serde_json::json!(123)))), b"123");
        assert_eq!(
            http_body(Some(&value(serde_json::json!({"b": [1, 2], "a": "x y"})))),
            br#"{"a":"x y","b":[1,2]}"#
        );
        // The numbers GET shows, not another rendering of them.
        assert_eq!(
            http_body(Some(&value(serde_json::json!({"b": 1e20, "d": -0.0})))),
            br#"{"b":100000000000000000000,"d":-0}"#
        );
        // Undecodable Value bytes fall back to the raw, trimmed bytes.
        let garbage = Payload { type_url: VALUE_TYPE_URL.to_owned(), value: b"\x1a\x09ab \n".to_vec() };
        assert!(prost_types::Value::decode(garbage.value.as_slice()).is_err(), "a truncated string field");
        assert_eq!(http_body(Some(&garbage)), b"\x1a\x09ab");
        let raw =
            Payload { type_url: "dapr.io/schedule/jobpayload".to_owned(), value: b" {\"k\": 1}\n".to_vec() };
        assert_eq!(http_body(Some(&raw)), b"{\"k\": 1}");
    }
}
