//! The Dapr wire protocols kairos speaks: the `.proto` files under `proto/` (written from the
//! field tables in `spec/dapr-jobs-api.md`) and the prost messages and tonic clients and
//! servers generated from them. It covers the sidecar's Jobs API (`dapr.proto.runtime.v1.Dapr`),
//! the app callbacks (`AppCallback`, `AppCallbackAlpha`, `AppCallbackHealthCheck`), the
//! Scheduler control plane (`dapr.proto.scheduler.v1.Scheduler`) and the shared
//! `dapr.proto.common.v1` messages, plus kairos's own operator service (`kairos.admin.v1`) and app steering service
//! (`kairos.runtime.v1`), and
//! [`json`], the one protojson codec (`google.protobuf.Value` both ways, well-known `Any`s out)
//! that the sidecar and the SDK share; also what every gRPC server and client of kairos shares
//! around the messages: the API-token check and the interceptor that sends one ([`auth`]), and
//! the servers' TLS identity and the HTTPS listener the sidecar and the dashboard serve axum on
//! ([`tls`]). It sits just above `kairos-core` and below every crate that
//! talks gRPC; it must never import storage, the engine or any server crate. Generated servers
//! have default stubs: a method left out answers `UNIMPLEMENTED`.

/// Generated code, one module per protobuf package.
pub mod dapr {
    /// Dapr's proto packages.
    pub mod proto {
        /// `dapr.proto.common.v1`.
        pub mod common {
            /// Failure policies and the HTTP extension.
            pub mod v1 {
                tonic::include_proto!("dapr.proto.common.v1");
            }
        }

        /// `dapr.proto.runtime.v1`.
        pub mod runtime {
            /// The Jobs API service and messages, and the app callback services.
            pub mod v1 {
                tonic::include_proto!("dapr.proto.runtime.v1");
            }
        }

        /// `dapr.proto.scheduler.v1`.
        pub mod scheduler {
            /// The Scheduler service and messages.
            pub mod v1 {
                tonic::include_proto!("dapr.proto.scheduler.v1");
            }
        }
    }
}

/// kairos's own protocols.
pub mod kairos {
    /// `kairos.admin.v1`.
    pub mod admin {
        /// The operator service: every job with its progress, export and import.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/admin/kairos.admin.v1.rs"));
        }
    }

    /// `kairos.runtime.v1`.
    pub mod runtime {
        /// The sidecar's steering service: an app's own jobs' status, history, pause, resume,
        /// trigger-now and a filtered list.
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/steer/kairos.runtime.v1.rs"));
        }
    }
}

pub mod api;
pub mod auth;
pub mod convert;
pub mod json;
pub mod tls;

pub use dapr::proto::common::v1 as common;
pub use dapr::proto::runtime::v1 as runtime;
pub use dapr::proto::scheduler::v1 as scheduler;
pub use kairos::admin::v1 as admin;
pub use kairos::runtime::v1 as steer;

/// The encoded `google.protobuf.FileDescriptorSet` of every file above (and the well-known
/// types they import), for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/kairos_descriptor.bin"));
