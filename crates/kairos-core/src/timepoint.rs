//! `dueTime` and `ttl` strings (spec §7.2): RFC 3339, Go duration, or ISO-8601 duration.
//!
//! PLACEHOLDER: the parsers are being written; the API below is fixed.

use jiff::Zoned;

/// Why a due time or ttl string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointInTimeError {
    /// None of the three formats matched (upstream: "due time format not recognized").
    #[error("due time format not recognized")]
    NotRecognized,
    /// An ISO-8601 repeating interval `Rn/…` with n > 0.
    #[error("repeats not supported for due time")]
    RepeatsNotSupported,
}

/// Resolves a due time or ttl string against `reference` (spec §7.2): RFC 3339 is absolute;
/// a Go duration or an ISO-8601 duration is added to `reference` (calendar parts with Go's
/// `AddDate` normalisation, in `reference`'s zone).
///
/// # Errors
/// [`PointInTimeError`] when the string is in none of the formats.
pub fn parse_point_in_time(input: &str, reference: &Zoned) -> Result<Zoned, PointInTimeError> {
    let _ = (input, reference);
    Err(PointInTimeError::NotRecognized)
}
