//! The `schedule` grammar of Dapr jobs (spec §7.1).
//!
//! PLACEHOLDER: the parser is being written; see the API below, which is fixed.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// A parsed `schedule` string: a 6-field cron (with seconds), a descriptor, or `@every`.
#[derive(Debug, Clone)]
pub struct Schedule {
    source: String,
}

/// Why a schedule string was rejected; the message follows upstream's parser where the spec
/// gives its text (e.g. `expected exactly 6 fields, found 5: [...]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ScheduleError {
    pub message: String,
}

impl Schedule {
    /// Parses `expr`; cron expressions without a `TZ=`/`CRON_TZ=` prefix run in `default_tz`.
    ///
    /// # Errors
    /// [`ScheduleError`] when `expr` is not in the grammar of spec §7.1.
    pub fn parse(expr: &str, default_tz: &TimeZone) -> Result<Schedule, ScheduleError> {
        let _ = default_tz;
        Err(ScheduleError { message: format!("schedule parsing is not built yet: {expr:?}") })
    }

    /// The first activation strictly after `after`, or `None` if there is none.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        let _ = after;
        None
    }

    /// The schedule exactly as the user wrote it.
    pub fn as_str(&self) -> &str {
        &self.source
    }
}
