//! The replica's etcd lease kept alive, and its loss reported.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;
use jiff::{SignedDuration, Timestamp};
use kairos_core::{Backoff, Clock};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{RETRY, pause};

/// The lease as the keep-alive task last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseState {
    /// Kept alive; etcd has confirmed it recently enough.
    Alive,
    /// Not confirmed for a whole TTL, or etcd says it is gone.
    Lost,
}

/// Keeps lease `id` alive, re-creating the keep-alive stream after errors. Reports `Lost` when
/// no confirmation came for a whole `ttl` or etcd answers that the lease no longer exists.
pub(super) async fn keep_alive(
    client: Client,
    id: i64,
    ttl: Duration,
    clock: Arc<dyn Clock>,
    tx: watch::Sender<LeaseState>,
    stop: CancellationToken,
) {
    let every = ttl / 3;
    let ttl = SignedDuration::try_from(ttl).unwrap_or(SignedDuration::from_secs(5));
    let mut confirmed = clock.now();
    let lost = |confirmed: Timestamp| clock.now().duration_since(confirmed) >= ttl;
    // Never longer than RETRY: the lease has only a TTL to be confirmed again.
    let mut backoff = Backoff::new(RETRY, RETRY);
    while !stop.is_cancelled() {
        let (mut keeper, mut stream) = match client.clone().lease_keep_alive(id).await {
            Ok(pair) => pair,
            Err(err) => {
                tracing::debug!(lease = id, error = %err, "lease keep-alive stream failed; retrying");
                if lost(confirmed) {
                    tx.send_replace(LeaseState::Lost);
                    return;
                }
                pause(&stop, backoff.next_delay()).await;
                continue;
            }
        };
        loop {
            if keeper.keep_alive().await.is_err() {
                break;
            }
            let Some(answer) = stop.run_until_cancelled(tokio::time::timeout(every, stream.message())).await
            else {
                return;
            };
            match answer {
                Ok(Ok(Some(response))) if response.ttl() > 0 => {
                    confirmed = clock.now();
                }
                Ok(Ok(Some(_))) => {
                    tracing::warn!(lease = id, "etcd says the lease has expired");
                    tx.send_replace(LeaseState::Lost);
                    return;
                }
                Ok(Ok(None) | Err(_)) => break,
                Err(_) => {}
            }
            if lost(confirmed) {
                tx.send_replace(LeaseState::Lost);
                return;
            }
            pause(&stop, every).await;
            if stop.is_cancelled() {
                return;
            }
        }
        if lost(confirmed) {
            tx.send_replace(LeaseState::Lost);
            return;
        }
        pause(&stop, backoff.next_delay()).await;
    }
}
