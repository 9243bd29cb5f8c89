//! The HTTP transport of the app channel (spec §4.2): `POST /job/{name}`, with daprd's body
//! rules.

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kairos_core::Payload;
use kairos_proto::json::{VALUE_TYPE_URL, value_to_string};
use kairos_proto::tls::ClientTls;
use prost::Message;
use tokio_rustls::rustls;

use super::{API_TOKEN_HEADER, AppChannelConfig, AppChannelError, AppProtocol, Delivery, error_chain};

type HyperClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The HTTP client of an `http`, `https` or `h2c` app, shared by deliveries and health probes:
/// hyper's pooled client (connections to the app are kept alive between requests), over TLS
/// for `https`, HTTP/2 only for `h2c`. It follows no redirect (a job is delivered to one route)
/// and no proxy (the app is local). For `https` with a CA file, a new client is made when the
/// CA is reloaded (the pool of the old one drains by itself).
#[derive(Debug)]
pub(crate) struct AppHttpClient {
    protocol: AppProtocol,
    tls: Arc<ClientTls>,
    /// The client and the TLS configuration it was made with (boxed: a client is large).
    current: Box<Mutex<(Arc<rustls::ClientConfig>, HyperClient)>>,
}

impl AppHttpClient {
    /// The client of the app `config` describes. Must be called within a tokio runtime for a
    /// CA file to be re-read.
    ///
    /// # Errors
    /// As [`AppChannelConfig::client_tls`]; [`AppChannelError::InvalidAddress`] when the app's
    /// URL does not parse.
    pub(crate) fn new(config: &AppChannelConfig) -> Result<Self, AppChannelError> {
        config.base_url().parse::<http::Uri>().map_err(|e| config.invalid_address(e.to_string()))?;
        // The plain protocols never use it (their URLs are http://), but the connector wants one.
        let tls = match config.client_tls()? {
            Some(tls) => tls,
            None => ClientTls::for_app(None, b"http/1.1").map_err(AppChannelError::Tls)?,
        };
        let now = tls.current();
        let client = build(config.protocol, &now);
        Ok(AppHttpClient { protocol: config.protocol, tls, current: Box::new(Mutex::new((now, client))) })
    }

    /// The client to send the next request with.
    fn client(&self) -> HyperClient {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let now = self.tls.current();
        if !Arc::ptr_eq(&current.0, &now) {
            let client = build(self.protocol, &now);
            *current = (now, client);
        }
        current.1.clone()
    }

    /// Sends `method url` with `headers` and `body`, reads (and drops) at most `max_body` bytes
    /// of the answer so the connection can go back to the pool, and returns its status.
    ///
    /// # Errors
    /// Why no answer came, with its causes and what the protocol expects of the app.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, HeaderValue)],
        body: Vec<u8>,
        max_body: usize,
    ) -> Result<StatusCode, String> {
        let fail = |e: &dyn std::error::Error| {
            format!("{method} {url} failed: {} ({})", error_chain(e), self.protocol.hint())
        };
        let mut request = Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            request = request.header(*name, value.clone());
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| fail(&e))?;
        let response = self.client().request(request).await.map_err(|e| fail(&e))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut read = 0;
        while read <= max_body {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => break,
            }
        }
        Ok(status)
    }
}

fn build(protocol: AppProtocol, tls: &Arc<rustls::ClientConfig>) -> HyperClient {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    // The connector sets ALPN itself (http/1.1, from enable_http1) and refuses a preset one.
    let mut tls = rustls::ClientConfig::clone(tls);
    tls.alpn_protocols.clear();
    let connector =
        HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(tcp);
    Client::builder(TokioExecutor::new()).http2_only(protocol == AppProtocol::H2c).build(connector)
}

/// An HTTP app.
#[derive(Debug)]
pub(super) struct HttpApp {
    pub(super) client: AppHttpClient,
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
        let mut headers = vec![
            (CONTENT_TYPE.as_str(), HeaderValue::from_static("application/json")),
            // hyper leaves it out for an empty body; Go's client sends `Content-Length: 0` on a POST.
            (CONTENT_LENGTH.as_str(), HeaderValue::from(body.len())),
        ];
        if let Some(token) = &self.api_token {
            headers.push((API_TOKEN_HEADER, token.clone()));
        }
        let status = match self.client.send(Method::POST, &url, &headers, body, self.max_body_size).await {
            Ok(status) => status,
            Err(reason) => return Delivery::Failed { reason },
        };
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
