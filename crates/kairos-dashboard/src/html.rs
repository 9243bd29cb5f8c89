//! HTML building blocks: escaping, the page frame, times and durations in words.
//!
//! Every text that comes from a job (names, apps, payloads, error messages) goes through
//! [`esc`]: the pages are built with `format!`, so escaping is the one thing that keeps a job
//! named `<script>` a text.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// `s` escaped for HTML text and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Every byte but the unreserved characters of RFC 3986 (letters, digits, `-._~`).
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// `s` percent-encoded for a query value or a path segment (everything but unreserved
/// characters).
pub fn url(s: &str) -> String {
    utf8_percent_encode(s, RESERVED).to_string()
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes of lowercase or uppercase hex `s`; `None` when it is not hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// What the frame of a page needs besides its body.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub title: &'a str,
    /// Which top link is highlighted: `overview` or `jobs` (`login`: no links).
    pub nav: &'a str,
    /// Whether a logout button is shown (a token is configured).
    pub logout: bool,
    /// Whether the dashboard refuses actions.
    pub read_only: bool,
    /// The CSRF token forms carry.
    pub csrf: &'a str,
}

/// A whole page: head, navigation and `body`.
pub fn page(frame: &Frame<'_>, body: &str) -> String {
    let link = |id: &str, href: &str, text: &str| {
        let class = if frame.nav == id { " class=\"on\"" } else { "" };
        format!("<a href=\"{href}\"{class}>{text}</a>")
    };
    let logout = if frame.logout {
        format!(
            "<form method=\"post\" action=\"/logout\" class=\"logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Log out</button></form>",
            esc(frame.csrf)
        )
    } else {
        String::new()
    };
    let mode = if frame.read_only { "<span class=\"badge ro\">read-only</span>" } else { "" };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · kairos</title>\
         <link rel=\"stylesheet\" href=\"/assets/style.css\">\
         <script src=\"/assets/app.js\" defer></script></head>\
         <body><header><span class=\"brand\">kairos</span>{nav}{mode}{logout}</header>\
         <main>{body}</main></body></html>\n",
        title = esc(frame.title),
        // Logged out, the links would only lead back to the login form.
        nav = if frame.nav == "login" {
            String::new()
        } else {
            format!("<nav>{}{}</nav>", link("overview", "/", "Overview"), link("jobs", "/jobs", "Jobs"))
        },
    )
}

/// `ts` as `2026-12-07 02:30:05Z` (UTC, to the second).
pub fn time(ts: Timestamp) -> String {
    if ts == Timestamp::MAX {
        return "never".into();
    }
    ts.strftime("%Y-%m-%d %H:%M:%SZ").to_string()
}

/// `ts` as [`time`] with how far it is from `now` (`in 3 s`, `5 min ago`).
pub fn time_rel(ts: Timestamp, now: Timestamp) -> String {
    if ts == Timestamp::MAX {
        return "never".into();
    }
    let d = ts.duration_since(now);
    let words = if d.is_negative() { format!("{} ago", span(-d)) } else { format!("in {}", span(d)) };
    format!("<time datetime=\"{}\">{}</time> <span class=\"rel\">{}</span>", ts, time(ts), words)
}

/// A duration in short words: `850 ms`, `12 s`, `3 min 5 s`, `2 h 10 min`, `4 d 3 h`.
pub fn span(d: SignedDuration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    if ms.abs() < 1000 {
        format!("{ms} ms")
    } else if s.abs() < 60 {
        let tenths = d.as_millis() / 100;
        if tenths % 10 == 0 { format!("{s} s") } else { format!("{}.{} s", tenths / 10, (tenths % 10).abs()) }
    } else if s.abs() < 3600 {
        with_rest(s / 60, "min", s % 60, "s")
    } else if s.abs() < 86_400 {
        with_rest(s / 3600, "h", (s % 3600) / 60, "min")
    } else {
        with_rest(s / 86_400, "d", (s % 86_400) / 3600, "h")
    }
}

fn with_rest(major: i64, major_unit: &str, minor: i64, minor_unit: &str) -> String {
    if minor == 0 {
        format!("{major} {major_unit}")
    } else {
        format!("{major} {major_unit} {minor} {minor_unit}")
    }
}

/// A state as a coloured badge.
pub fn state_badge(state: &str) -> String {
    format!("<span class=\"badge st-{0}\">{0}</span>", esc(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn hex_round_trips_and_refuses_non_hex() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(unhex(&hex(&bytes)).unwrap(), bytes);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }

    #[test]
    fn url_encodes_everything_but_unreserved() {
        assert_eq!(url("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }

    #[test]
    fn spans_read_as_words() {
        assert_eq!(span(SignedDuration::from_millis(850)), "850 ms");
        assert_eq!(span(SignedDuration::from_millis(12_000)), "12 s");
        assert_eq!(span(SignedDuration::from_millis(1_500)), "1.5 s");
        assert_eq!(span(SignedDuration::from_secs(185)), "3 min 5 s");
        assert_eq!(span(SignedDuration::from_secs(7800)), "2 h 10 min");
        assert_eq!(span(SignedDuration::from_secs(4 * 86_400 + 3 * 3600)), "4 d 3 h");
    }
}
