//! etcd's failures as [`StoreError`]s.

use super::MAX_CONFLICTS;
use crate::StoreError;

/// Maps a client error to a store error.
pub(super) fn etcd_error(what: &str, e: etcd_client::Error) -> StoreError {
    if let etcd_client::Error::GRpcStatus(status) = &e {
        if is_no_space(status) {
            return StoreError::Full {
                reason: format!("etcd refused the {what}: {}; {QUOTA_HINT}", status.message()),
            };
        }
        // etcd's gRPC server refuses a request above its size limit (--max-request-bytes plus
        // 512 KiB) before etcd sees it: as invalid as one etcd refuses itself, and no retry helps.
        let too_large =
            status.code() == tonic::Code::ResourceExhausted && status.message().contains("larger than max");
        if too_large
            || matches!(status.code(), tonic::Code::InvalidArgument | tonic::Code::FailedPrecondition)
        {
            return StoreError::Invalid {
                what: "etcd request",
                reason: format!("{what}: {}", status.message()),
            };
        }
    }
    StoreError::unavailable(format_args!("etcd {what} failed"), e)
}

/// What an operator does about etcd's space quota, in every error that hits it.
pub(super) const QUOTA_HINT: &str = "etcd's space quota (--quota-backend-bytes) is used up; writes resume once \
    space is freed (compact, defragment, then `etcdctl alarm disarm`)";

/// Whether etcd refused a request for its space quota ("etcdserver: mvcc: database space
/// exceeded", raised with the NOSPACE alarm).
fn is_no_space(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::ResourceExhausted && status.message().contains("database space exceeded")
}

/// A copy of `e` for another caller of a failed group.
pub(super) fn replicate(e: &StoreError) -> StoreError {
    match e {
        StoreError::AlreadyExists(k) => StoreError::AlreadyExists(k.clone()),
        StoreError::Invalid { what, reason } => StoreError::Invalid { what, reason: reason.clone() },
        StoreError::Unavailable { reason, source } => StoreError::Unavailable {
            reason: match source {
                Some(source) => format!("{reason}: {source}"),
                None => reason.clone(),
            },
            source: None,
        },
        StoreError::Corrupt(why) => StoreError::Corrupt(why.clone()),
        StoreError::Full { reason } => StoreError::Full { reason: reason.clone() },
        StoreError::InUse { path } => StoreError::InUse { path: path.clone() },
        StoreError::Fenced { partition } => StoreError::Fenced { partition: *partition },
    }
}

pub(super) fn contention(what: &str) -> StoreError {
    StoreError::Unavailable {
        reason: format!("{what}: gave up after {MAX_CONFLICTS} conflicting concurrent writes"),
        source: None,
    }
}
