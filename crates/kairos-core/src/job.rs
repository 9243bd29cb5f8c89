//! Job specifications and their validation (spec §7.3).
//!
//! PLACEHOLDER: being written.

/// An opaque payload (a protobuf `Any`): stored and returned byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Payload {
    pub type_url: String,
    pub value: Vec<u8>,
}

/// What to do when a trigger fails (spec §7.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailurePolicy {
    Drop,
    Constant {
        interval: Option<jiff::SignedDuration>,
        max_retries: Option<u32>,
    },
}

/// A job as the user gave it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JobSpec {
    pub schedule: Option<String>,
}

/// A job's resolved timing.
#[derive(Debug, Clone)]
pub struct JobTiming;

/// Why a job was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job failed validation")]
pub struct ValidationError;
