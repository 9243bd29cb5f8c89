//! The gRPC transport of the app channel (spec §4.1): `AppCallback/OnJobEvent`, falling back to
//! `AppCallbackAlpha/OnJobEventAlpha1`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use kairos_core::Payload;
use kairos_proto::common::HttpExtension;
use kairos_proto::common::http_extension::Verb;
use kairos_proto::runtime::JobEventRequest;
use kairos_proto::runtime::app_callback_alpha_client::AppCallbackAlphaClient;
use kairos_proto::runtime::app_callback_client::AppCallbackClient;
use kairos_proto::tls::ClientTls;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use super::{API_TOKEN_HEADER, AppProtocol, Delivery, REPROBE_STABLE_EVERY, connect_lazy, error_chain};

/// The two gRPC job callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Callback {
    Stable,
    Alpha,
}

impl Callback {
    fn other(self) -> Callback {
        match self {
            Callback::Stable => Callback::Alpha,
            Callback::Alpha => Callback::Stable,
        }
    }

    fn method(self) -> &'static str {
        match self {
            Callback::Stable => "AppCallback/OnJobEvent",
            Callback::Alpha => "AppCallbackAlpha/OnJobEventAlpha1",
        }
    }
}

/// A gRPC app.
///
/// daprd calls `OnJobEvent` and, on UNIMPLEMENTED, `OnJobEventAlpha1` every time. The app sees
/// the same thing if the channel remembers that only Alpha1 answers and goes there directly, so
/// it does, saving a round trip per job for Go and JS apps. Whichever callback is tried first,
/// an UNIMPLEMENTED answer makes the channel try the other one. The memory is dropped (the
/// stable callback is tried first again) after an Unavailable answer, which is what a lost
/// connection looks like (the app may have been restarted as a newer build), after both
/// callbacks answered UNIMPLEMENTED, and once every [`REPROBE_STABLE_EVERY`] deliveries.
#[derive(Debug)]
pub(super) struct GrpcApp {
    pub(super) protocol: AppProtocol,
    pub(super) endpoint: Endpoint,
    /// `grpcs`: the connector's TLS configuration.
    pub(super) tls: Option<Arc<ClientTls>>,
    /// Created on first use: `connect_lazy` needs a Tokio runtime. It reconnects by itself.
    pub(super) channel: OnceLock<Channel>,
    pub(super) api_token: Option<AsciiMetadataValue>,
    pub(super) max_body_size: usize,
    pub(super) alpha_only: AtomicBool,
    pub(super) since_probe: AtomicU32,
}

impl GrpcApp {
    pub(super) async fn deliver(&self, name: &str, data: Option<&Payload>) -> Delivery {
        let first = if self.stable_first() { Callback::Stable } else { Callback::Alpha };
        // The request is built again for the fallback rather than cloned for every delivery.
        let (answered_by, result) = match self.call(first, job_event_request(name, data)).await {
            Err(status) if status.code() == Code::Unimplemented => {
                (first.other(), self.call(first.other(), job_event_request(name, data)).await)
            }
            result => (first, result),
        };
        self.remember(answered_by, &result);
        match result {
            Ok(()) => Delivery::Success,
            Err(status) if status.code() == Code::NotFound => Delivery::NotFoundCountedAsSuccess,
            Err(status) if status.code() == Code::Unimplemented => Delivery::Failed {
                reason:
                    "the app implements neither AppCallback/OnJobEvent nor AppCallbackAlpha/OnJobEventAlpha1 \
                         for this job: both answered Unimplemented"
                        .to_owned(),
            },
            // A connection or handshake failure: the protocol may not be what the app serves.
            Err(status) if status.code() == Code::Unavailable => Delivery::Failed {
                reason: format!(
                    "cannot call {} on the app: {} ({})",
                    answered_by.method(),
                    error_chain(&status),
                    self.protocol.hint()
                ),
            },
            Err(status) => Delivery::Failed {
                reason: format!(
                    "the app answered {:?} to {}: {}",
                    status.code(),
                    answered_by.method(),
                    status.message()
                ),
            },
        }
    }

    fn stable_first(&self) -> bool {
        if !self.alpha_only.load(Ordering::Relaxed) {
            return true;
        }
        let n = self.since_probe.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        if n >= REPROBE_STABLE_EVERY {
            self.since_probe.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    fn remember(&self, answered_by: Callback, result: &Result<(), Status>) {
        let alpha_only = match result {
            Err(status) if matches!(status.code(), Code::Unavailable | Code::Unimplemented) => false,
            _ => answered_by == Callback::Alpha,
        };
        if self.alpha_only.swap(alpha_only, Ordering::Relaxed) != alpha_only {
            tracing::debug!(
                callback = if alpha_only { Callback::Alpha.method() } else { Callback::Stable.method() },
                "app job callback tried first from now on"
            );
        }
    }

    async fn call(&self, callback: Callback, request: JobEventRequest) -> Result<(), Status> {
        let channel = self.channel.get_or_init(|| connect_lazy(&self.endpoint, self.tls.as_ref())).clone();
        let mut request = tonic::Request::new(request);
        if let Some(token) = &self.api_token {
            request.metadata_mut().insert(API_TOKEN_HEADER, token.clone());
        }
        match callback {
            Callback::Stable => AppCallbackClient::new(channel)
                .max_decoding_message_size(self.max_body_size)
                .max_encoding_message_size(self.max_body_size)
                .on_job_event(request)
                .await
                .map(drop),
            Callback::Alpha => {
                let mut client = AppCallbackAlphaClient::new(channel)
                    .max_decoding_message_size(self.max_body_size)
                    .max_encoding_message_size(self.max_body_size);
                // Upstream marks Alpha1 deprecated, but it is the only job callback of Go and JS
                // SDK apps (spec §8.2, §8.4): daprd still falls back to it, and so must we.
                #[allow(deprecated)]
                let result = client.on_job_event_alpha1(request).await;
                result.map(drop)
            }
        }
    }
}

/// What daprd's gRPC channel sends (`TriggerJob`, spec §4.1).
fn job_event_request(name: &str, data: Option<&Payload>) -> JobEventRequest {
    JobEventRequest {
        name: name.to_owned(),
        data: data.map(|p| prost_types::Any { type_url: p.type_url.clone(), value: p.value.clone() }),
        method: format!("job/{name}"),
        content_type: data.map(|p| p.type_url.clone()).unwrap_or_default(),
        http_extension: Some(HttpExtension { verb: Verb::Post.into(), querystring: String::new() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_event_request_matches_daprd() {
        let payload = Payload {
            type_url: "type.googleapis.com/io.dapr.RustTest".to_owned(),
            value: b"\x01\x02".to_vec(),
        };
        let request = job_event_request("my||job@name", Some(&payload));
        assert_eq!(request.name, "my||job@name");
        assert_eq!(request.method, "job/my||job@name");
        assert_eq!(request.content_type, payload.type_url);
        assert_eq!(
            request.data.as_ref().map(|a| (&a.type_url, &a.value)),
            Some((&payload.type_url, &payload.value))
        );
        assert_eq!(request.http_extension.as_ref().map(HttpExtension::verb), Some(Verb::Post));
        let bare = job_event_request("j", None);
        assert_eq!((bare.data, bare.content_type.as_str()), (None, ""));
    }
}
