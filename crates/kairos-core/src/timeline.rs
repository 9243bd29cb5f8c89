//! The trigger timeline (spec §7.4). PLACEHOLDER: being written.

/// How far a job has got.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress;
