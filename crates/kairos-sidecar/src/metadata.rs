//! The metadata API: gRPC `Dapr/GetMetadata` and HTTP `GET /v1.0/metadata` (daprd's public
//! API), and the extended attributes set with `PUT /v1.0/metadata/{key}`.
//!
//! A Jobs sidecar knows its app id, its version, how it reaches the app (port, protocol,
//! channel address, concurrency, health checks) and which schedulers it uses; the answer holds
//! those and leaves out what daprd reports about actors, components and subscriptions.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kairos_proto::runtime::{
    AppConnectionHealthProperties, AppConnectionProperties, GetMetadataResponse, MetadataScheduler,
};

use crate::app_channel::AppChannelConfig;
use crate::health::{AppHealthConfig, go_duration};
use crate::scheduler_link::SchedulerLink;

/// The version reported as `runtimeVersion`: kairos's own.
pub const RUNTIME_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The extended attribute daprd fills with its version (kept for older clients).
pub const RUNTIME_VERSION_KEY: &str = "daprRuntimeVersion";

/// What the metadata API reports.
#[derive(Debug)]
pub struct Metadata {
    app_id: String,
    app: Option<AppChannelConfig>,
    /// The protocol and address are reported even without `--app-port`, as daprd does.
    protocol: String,
    channel_address: String,
    health: Option<AppHealthConfig>,
    link: SchedulerLink,
    extended: Mutex<BTreeMap<String, String>>,
}

impl Metadata {
    /// The metadata of a sidecar for `app_id`.
    pub fn new(
        app_id: impl Into<String>,
        app: Option<AppChannelConfig>,
        health: Option<AppHealthConfig>,
        link: SchedulerLink,
    ) -> Self {
        let (protocol, channel_address) = app.as_ref().map_or_else(
            || ("http".to_owned(), crate::app_channel::DEFAULT_APP_CHANNEL_ADDRESS.to_owned()),
            |a| (a.protocol.as_str().to_owned(), a.address.clone()),
        );
        Metadata {
            app_id: app_id.into(),
            app,
            protocol,
            channel_address,
            health,
            link,
            extended: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sets one extended attribute (`PUT /v1.0/metadata/{key}`).
    pub fn set_extended(&self, key: String, value: String) {
        self.extended.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key, value);
    }

    fn extended(&self) -> BTreeMap<String, String> {
        let mut extended = self.extended.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        extended.insert(RUNTIME_VERSION_KEY.to_owned(), RUNTIME_VERSION.to_owned());
        extended
    }

    /// The gRPC answer.
    pub fn to_proto(&self) -> GetMetadataResponse {
        let health = self.health.as_ref().map(|h| AppConnectionHealthProperties {
            health_check_path: if self.protocol == "http" { h.path.clone() } else { String::new() },
            health_probe_interval: go_duration(h.interval),
            health_probe_timeout: go_duration(h.timeout),
            health_threshold: i32::try_from(h.threshold).unwrap_or(i32::MAX),
        });
        let app = self.app.as_ref();
        GetMetadataResponse {
            id: self.app_id.clone(),
            extended_metadata: self.extended().into_iter().collect(),
            app_connection_properties: Some(AppConnectionProperties {
                port: app.map_or(0, |a| i32::from(a.port)),
                protocol: self.protocol.clone(),
                channel_address: self.channel_address.clone(),
                max_concurrency: app
                    .and_then(|a| a.max_concurrency)
                    .map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)),
                health,
            }),
            runtime_version: RUNTIME_VERSION.to_owned(),
            enabled_features: Vec::new(),
            scheduler: self
                .link
                .is_enabled()
                .then(|| MetadataScheduler { connected_addresses: self.link.addresses() }),
        }
    }

    /// The HTTP answer: daprd's JSON, where empty fields are left out and the scheduler's
    /// addresses are `connected_addresses`.
    pub fn to_json(&self) -> String {
        let answer = self.to_proto();
        let mut json = serde_json::Map::new();
        json.insert("id".into(), answer.id.into());
        json.insert("runtimeVersion".into(), answer.runtime_version.into());
        json.insert("extended".into(), serde_json::to_value(self.extended()).unwrap_or_default());
        if let Some(props) = answer.app_connection_properties {
            let mut app = serde_json::Map::new();
            if props.port != 0 {
                app.insert("port".into(), props.port.into());
            }
            app.insert("protocol".into(), props.protocol.into());
            app.insert("channelAddress".into(), props.channel_address.into());
            if props.max_concurrency != 0 {
                app.insert("maxConcurrency".into(), props.max_concurrency.into());
            }
            if let Some(health) = props.health {
                let mut h = serde_json::Map::new();
                if !health.health_check_path.is_empty() {
                    h.insert("healthCheckPath".into(), health.health_check_path.into());
                }
                h.insert("healthProbeInterval".into(), health.health_probe_interval.into());
                h.insert("healthProbeTimeout".into(), health.health_probe_timeout.into());
                h.insert("healthThreshold".into(), health.health_threshold.into());
                app.insert("health".into(), h.into());
            }
            json.insert("appConnectionProperties".into(), app.into());
        }
        if let Some(scheduler) = answer.scheduler {
            json.insert(
                "scheduler".into(),
                serde_json::json!({ "connected_addresses": scheduler.connected_addresses }),
            );
        }
        serde_json::Value::Object(json).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_channel::AppProtocol;

    #[test]
    fn reports_the_app_connection_and_health_settings() {
        let mut app = AppChannelConfig::new(AppProtocol::Http, 8080);
        app.max_concurrency = Some(4);
        let metadata =
            Metadata::new("my-app", Some(app), Some(AppHealthConfig::default()), SchedulerLink::disabled());
        metadata.set_extended("cliPID".into(), "42".into());
        let json: serde_json::Value = serde_json::from_str(&metadata.to_json()).unwrap();
        assert_eq!(json["id"], "my-app");
        assert_eq!(json["runtimeVersion"], RUNTIME_VERSION);
        assert_eq!(json["extended"]["cliPID"], "42");
        assert_eq!(json["extended"][RUNTIME_VERSION_KEY], RUNTIME_VERSION);
        let props = &json["appConnectionProperties"];
        assert_eq!(props["port"], 8080);
        assert_eq!(props["protocol"], "http");
        assert_eq!(props["channelAddress"], "127.0.0.1");
        assert_eq!(props["maxConcurrency"], 4);
        assert_eq!(props["health"]["healthCheckPath"], "/healthz");
        assert_eq!(props["health"]["healthProbeInterval"], "5s");
        assert_eq!(props["health"]["healthProbeTimeout"], "500ms");
        assert_eq!(props["health"]["healthThreshold"], 3);
        assert!(json.get("scheduler").is_none(), "disabled scheduler: no scheduler field");
    }

    #[test]
    fn grpc_apps_have_no_health_path_and_no_app_means_no_port() {
        let grpc = AppChannelConfig::new(AppProtocol::Grpc, 50051);
        let metadata =
            Metadata::new("a", Some(grpc), Some(AppHealthConfig::default()), SchedulerLink::disabled());
        let health = metadata.to_proto().app_connection_properties.unwrap().health.unwrap();
        assert_eq!(health.health_check_path, "");
        let none = Metadata::new("a", None, None, SchedulerLink::disabled()).to_proto();
        let props = none.app_connection_properties.unwrap();
        assert_eq!((props.port, props.protocol.as_str(), props.health), (0, "http", None));
    }
}
