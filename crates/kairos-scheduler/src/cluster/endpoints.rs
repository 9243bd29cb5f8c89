//! The etcd client's endpoint set kept to the members that answer.

use std::collections::BTreeSet;
use std::time::Duration;

use etcd_client::Client;
use tokio_util::sync::CancellationToken;

use super::pause;

/// Keeps `client`'s endpoint set to the etcd members that answer, until `stop`.
///
/// etcd-client balances requests over its endpoints but keeps sending some to a member that is
/// down (each fails with a connect error), so every store call has a chance of failing while a
/// member of a healthy cluster is dead. This probes every endpoint with its own client twice a
/// second, takes a dead one out of the balance and puts it back once it answers again. It never
/// takes the last live-looking endpoint out: with none left, requests could not even try.
pub async fn keep_endpoints_healthy(client: Client, endpoints: Vec<String>, stop: CancellationToken) {
    if endpoints.len() < 2 {
        return;
    }
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(1));
    let mut probes = Vec::new();
    for endpoint in &endpoints {
        match Client::connect([endpoint.as_str()], Some(options.clone())).await {
            Ok(probe) => probes.push((endpoint.clone(), probe)),
            Err(err) => tracing::warn!(endpoint, error = %err, "cannot create an etcd health probe"),
        }
    }
    let mut removed: BTreeSet<String> = BTreeSet::new();
    while !stop.is_cancelled() {
        for (endpoint, probe) in &mut probes {
            let healthy = probe.status().await.is_ok();
            if healthy && removed.remove(endpoint.as_str()) {
                tracing::info!(endpoint, "etcd member answers again; using it");
                let _ = client.add_endpoint(endpoint.as_str()).await;
            } else if !healthy && !removed.contains(endpoint.as_str()) && removed.len() + 1 < endpoints.len()
            {
                tracing::warn!(endpoint, "etcd member does not answer; not using it for now");
                let _ = client.remove_endpoint(endpoint.as_str()).await;
                removed.insert(endpoint.clone());
            }
        }
        pause(&stop, Duration::from_millis(500)).await;
    }
}
