//! A running sidecar: the HTTP and gRPC APIs, and the loop that takes triggers from the
//! scheduler to the app.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kairos_proto::auth::{TokenCheck, TokenScheme};
use kairos_proto::convert::payload_from_any;
use kairos_proto::runtime::dapr_server::DaprServer;
use kairos_proto::scheduler::{
    JobTargetType, WatchJobsRequestInitial, WatchJobsRequestResultStatus, WatchJobsResponse,
};
use kairos_proto::steer::steering_server::SteeringServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use crate::app_channel::{AppChannel, AppChannelConfig, AppChannelError};
use crate::errors::AuthFailure;
use crate::grpc_api::DaprJobsService;
use crate::grpc_steer::SteeringService;
use crate::health::{AppHealthConfig, AppProbe, run_streams_while_healthy, watch_app_health};
use crate::http_api::{HttpState, router};
use crate::job_metrics::DeliveryMetrics;
use crate::jobs::{DEFAULT_SCHEDULER_WAIT, Jobs};
use crate::metadata::Metadata;
use crate::scheduler_link::{SchedulerLink, TriggerHandler};
use crate::tls::{TlsError, TlsIdentity, TlsListener};

/// How a sidecar runs (daprd's flags and environment, spec §9).
#[derive(Debug, Clone)]
pub struct SidecarConfig {
    /// `--app-id`: the owner of the jobs.
    pub app_id: String,
    /// `NAMESPACE` (default `default`).
    pub namespace: String,
    /// Address the APIs listen on.
    pub listen: IpAddr,
    /// `--dapr-http-port` (0 picks a free port).
    pub http_port: u16,
    /// `--dapr-grpc-port` (0 picks a free port).
    pub grpc_port: u16,
    /// `DAPR_API_TOKEN`.
    pub api_token: Option<String>,
    /// `--max-body-size`.
    pub max_body_size: usize,
    /// The app channel; `None` without `--app-port` (jobs then stay staged in the scheduler).
    pub app: Option<AppChannelConfig>,
    /// How long a Jobs API call waits for an unreachable scheduler.
    pub scheduler_wait: Duration,
    /// Largest job payload accepted (`--max-job-data-size`); larger ones are refused with
    /// 400 / InvalidArgument `DAPR_SCHEDULER_SCHEDULE_JOB` and never reach the scheduler.
    pub max_job_data_size: usize,
    /// How long deliveries in flight may finish after a stop.
    pub shutdown_grace: Duration,
    /// Serve both APIs over TLS with this certificate (`--tls-cert-file`, `--tls-key-file`).
    pub tls: Option<TlsIdentity>,
    /// Also asked by `/v1.0/healthz` (under `kairos run`: the embedded scheduler's store).
    pub readiness: Option<Arc<dyn ReadinessCheck>>,
    /// App health checks (`--enable-app-health-check`); `None` when off.
    pub app_health: Option<AppHealthConfig>,
}

/// Something besides the sidecar itself whose readiness `/v1.0/healthz` reports.
#[async_trait]
pub trait ReadinessCheck: Send + Sync + std::fmt::Debug {
    /// Why it is not ready; empty when it is.
    async fn not_ready(&self) -> Vec<String>;
}

impl SidecarConfig {
    /// daprd's defaults for `app_id`.
    pub fn new(app_id: impl Into<String>) -> Self {
        SidecarConfig {
            app_id: app_id.into(),
            namespace: "default".into(),
            listen: IpAddr::V4(Ipv4Addr::LOCALHOST),
            http_port: 3500,
            grpc_port: 50001,
            api_token: None,
            max_body_size: 4 << 20,
            app: None,
            scheduler_wait: DEFAULT_SCHEDULER_WAIT,
            max_job_data_size: 4 << 20,
            shutdown_grace: crate::scheduler_link::DEFAULT_SHUTDOWN_GRACE,
            tls: None,
            readiness: None,
            app_health: None,
        }
    }
}

/// Why a sidecar could not start.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    #[error("--app-id is required")]
    NoAppId,
    #[error("cannot listen on {address}: {source}")]
    Bind {
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    AppChannel(#[from] AppChannelError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Health(#[from] crate::health::HealthError),
}

/// A running sidecar.
#[derive(Debug)]
pub struct Sidecar {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    state: Arc<HttpState>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Delivers triggers over the app channel.
#[derive(Debug)]
struct AppDelivery {
    app: AppChannel,
    metrics: DeliveryMetrics,
}

#[async_trait]
impl TriggerHandler for AppDelivery {
    async fn handle(&self, trigger: &WatchJobsResponse) -> WatchJobsRequestResultStatus {
        // Debug level: at the default level no span is made per delivery (it cost more than the
        // rest of this function); the failure line carries the job and id itself.
        let span = tracing::debug_span!("delivery", job = %trigger.name, id = trigger.id, outcome = tracing::field::Empty);
        let data = trigger.data.clone().map(payload_from_any);
        let watch = kairos_core::Stopwatch::start();
        let delivery =
            tracing::Instrument::instrument(self.app.deliver(&trigger.name, data.as_ref()), span.clone())
                .await;
        let elapsed = watch.elapsed();
        self.metrics.record(&delivery, elapsed);
        let success = delivery.is_success();
        span.record("outcome", if success { "success" } else { "failed" });
        span.in_scope(|| {
            if success {
                tracing::debug!(?delivery, ?elapsed, "job delivered to app");
            } else {
                tracing::info!(job = %trigger.name, id = trigger.id, ?delivery, ?elapsed, "job delivery failed");
            }
        });
        if success { WatchJobsRequestResultStatus::Success } else { WatchJobsRequestResultStatus::Failed }
    }
}

impl Sidecar {
    /// Binds the APIs, starts serving, and (with an app) starts taking triggers once the app
    /// port accepts connections.
    ///
    /// # Errors
    /// [`SidecarError`] when a port cannot be bound or the app channel is misconfigured.
    pub async fn start(config: SidecarConfig, link: SchedulerLink) -> Result<Sidecar, SidecarError> {
        if config.app_id.is_empty() {
            return Err(SidecarError::NoAppId);
        }
        // Checked before anything is bound: a bad app channel, health setting or certificate is a
        // startup error.
        config.app.clone().map(AppChannel::new).transpose()?;
        if let (Some(app), Some(health)) = (&config.app, &config.app_health) {
            AppProbe::new(app, health)?;
        }
        if let Some(tls) = &config.tls {
            tls.server_config()?;
        }
        let http_listener = bind(SocketAddr::new(config.listen, config.http_port)).await?;
        let grpc_listener = bind(SocketAddr::new(config.listen, config.grpc_port)).await?;
        Self::start_on(config, link, http_listener, grpc_listener)
    }

    /// [`Sidecar::start`] on listeners the caller bound (`config.listen`, `http_port` and
    /// `grpc_port` are then unused), so that a caller binding port 0 knows the ports before
    /// anything starts. Must be called within a tokio runtime.
    ///
    /// # Errors
    /// [`SidecarError`] when a listener's address cannot be read or the app channel or TLS is
    /// misconfigured.
    pub fn start_on(
        config: SidecarConfig,
        link: SchedulerLink,
        http_listener: TcpListener,
        grpc_listener: TcpListener,
    ) -> Result<Sidecar, SidecarError> {
        if config.app_id.is_empty() {
            return Err(SidecarError::NoAppId);
        }
        let app = config.app.clone().map(AppChannel::new).transpose()?;
        let probe = match (&config.app, &config.app_health) {
            (Some(app), Some(health)) => Some((AppProbe::new(app, health)?, health.clone())),
            _ => None,
        };
        // Both APIs re-read the certificate and key when their files change (new connections get
        // the new one; a file that does not build is logged and the last good one stays).
        let tls = config
            .tls
            .as_ref()
            .map(|t| {
                Ok::<_, TlsError>((
                    t.reloading_server_config(b"http/1.1")?,
                    t.reloading_server_config(b"h2")?,
                ))
            })
            .transpose()?;
        let link = link.with_shutdown_grace(config.shutdown_grace);
        let http_addr = local_addr(&http_listener)?;
        let grpc_addr = local_addr(&grpc_listener)?;

        let jobs = Jobs::new(link.clone(), config.app_id.clone(), config.namespace.clone())
            .with_scheduler_wait(config.scheduler_wait)
            .with_max_job_data_size(config.max_job_data_size);
        let metadata = Arc::new(Metadata::new(
            config.app_id.clone(),
            config.app.clone(),
            config.app_health.clone(),
            link.clone(),
        ));
        let state = Arc::new(HttpState {
            metadata: metadata.clone(),
            jobs: jobs.clone(),
            api_token: config.api_token.clone(),
            max_body_size: config.max_body_size,
            ready: AtomicBool::new(false),
            readiness: config.readiness.clone(),
        });
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();

        let http = router(state.clone());
        let http_stop = stop.clone();
        let (https, plain) = match &tls {
            Some((http_tls, _)) => (
                Some(
                    TlsListener::new(http_listener, Arc::clone(http_tls))
                        .map_err(|source| SidecarError::Bind { address: http_addr, source })?,
                ),
                None,
            ),
            None => (None, Some(http_listener)),
        };
        tasks.push(tokio::spawn(async move {
            let served = match (https, plain) {
                (Some(listener), _) => {
                    axum::serve(listener, http).with_graceful_shutdown(http_stop.cancelled_owned()).await
                }
                (None, Some(listener)) => {
                    axum::serve(listener, http).with_graceful_shutdown(http_stop.cancelled_owned()).await
                }
                (None, None) => Ok(()),
            };
            if let Err(err) = served {
                tracing::error!(%err, "HTTP API server failed");
            }
        }));

        let grpc_stop = stop.clone();
        let grpc_tls = tls.map(|(_, grpc_tls)| grpc_tls);
        let max = config.max_body_size;
        let token_check = TokenCheck::new(
            TokenScheme::DaprApiToken,
            config.api_token.as_deref(),
            AuthFailure::Missing.message(),
            AuthFailure::Mismatch.message(),
        );
        // kairos's steering service, on the same port and behind the same token.
        let steering = InterceptedService::new(
            SteeringServer::new(SteeringService::new(jobs.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(usize::MAX),
            token_check.clone(),
        );
        let dapr = InterceptedService::new(
            DaprServer::new(DaprJobsService::new(jobs).with_metadata(metadata))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
            token_check,
        );
        tasks.push(tokio::spawn(async move {
            let (health_reporter, health) = tonic_health::server::health_reporter();
            health_reporter.set_serving::<DaprServer<DaprJobsService>>().await;
            // The .NET SDK asks reflection whether the stable jobs methods exist (spec §3.1).
            let reflection = tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(kairos_proto::FILE_DESCRIPTOR_SET)
                .build_v1();
            if let Err(err) = &reflection {
                tracing::warn!(%err, "gRPC reflection unavailable");
            }
            let router = tonic::transport::Server::builder()
                .add_service(health)
                .add_optional_service(reflection.ok())
                .add_service(dapr)
                .add_service(steering);
            let served = match grpc_tls {
                None => {
                    let incoming =
                        tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true));
                    router.serve_with_incoming_shutdown(incoming, grpc_stop.cancelled_owned()).await
                }
                Some(tls) => {
                    let incoming = kairos_proto::tls::tls_incoming(grpc_listener, tls);
                    router.serve_with_incoming_shutdown(incoming, grpc_stop.cancelled_owned()).await
                }
            };
            if let Err(err) = served {
                tracing::error!(%err, "gRPC API server failed");
            }
        }));

        match app {
            None => {
                state.ready.store(true, Ordering::Release);
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move { link.follow_hosts_only(stop).await }));
            }
            Some(app) => {
                let initial = WatchJobsRequestInitial {
                    app_id: config.app_id.clone(),
                    namespace: config.namespace.clone(),
                    accept_job_types: vec![JobTargetType::Job as i32],
                    ..Default::default()
                };
                let state = state.clone();
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    if app.wait_until_ready(stop.clone().cancelled_owned()).await.is_err() {
                        return;
                    }
                    tracing::info!("app is reachable; taking jobs from the scheduler");
                    state.ready.store(true, Ordering::Release);
                    let metrics = DeliveryMetrics::from_env(&initial.app_id);
                    let handler = Arc::new(AppDelivery { app, metrics });
                    match probe {
                        None => link.run_streams(initial, handler, stop).await,
                        Some((probe, health)) => {
                            let (healthy_tx, healthy_rx) = tokio::sync::watch::channel(false);
                            tokio::spawn(watch_app_health(probe, health, healthy_tx, stop.clone()));
                            run_streams_while_healthy(link, initial, handler, healthy_rx, stop).await;
                        }
                    }
                }));
            }
        }
        Ok(Sidecar { http_addr, grpc_addr, state, stop, tasks })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where the gRPC API listens.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Whether the app is reachable and triggers flow (what `/v1.0/healthz` reports).
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }

    /// Stops serving and taking triggers, and waits for the servers to finish: not ready first,
    /// then the APIs stop accepting, and deliveries in flight get the shutdown grace to finish
    /// and report to the scheduler (logged when it runs out).
    pub async fn shutdown(self) {
        self.state.ready.store(false, Ordering::Release);
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, SidecarError> {
    listener
        .local_addr()
        .map_err(|source| SidecarError::Bind { address: SocketAddr::from(([0, 0, 0, 0], 0)), source })
}

async fn bind(address: SocketAddr) -> Result<TcpListener, SidecarError> {
    TcpListener::bind(address).await.map_err(|source| SidecarError::Bind { address, source })
}
