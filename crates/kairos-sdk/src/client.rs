//! The Jobs API client: one gRPC channel to the sidecar's `dapr.proto.runtime.v1.Dapr` service.
//!
//! Every call tries the stable RPC first and falls back to its `…Alpha1` twin when the sidecar
//! does not know the stable name: gRPC `UNIMPLEMENTED`, or `UNKNOWN` with "failed to proxy
//! request" (how daprd ≤ 1.17 answers an unknown method, spec §3.1), as the official Rust SDK
//! does. Unlike the official SDK, `list_jobs` and `delete_jobs_by_prefix` fall back too: their
//! Alpha1 twins have the same shape, and the fallback costs nothing on a current sidecar.

use std::fmt;
use std::time::Duration;

use kairos_proto::runtime::dapr_client::DaprClient;
use kairos_proto::runtime::{
    DeleteJobRequest, DeleteJobsByPrefixRequest, DeleteJobsByPrefixRequestAlpha1, GetJobRequest,
    ListJobsRequest, ListJobsRequestAlpha1, ScheduleJobRequest,
};
use kairos_proto::steer::steering_client::SteeringClient;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use crate::{Error, Job};

/// The generated gRPC client of the sidecar's Dapr service.
type Grpc = DaprClient<Channel>;

/// The metadata key that carries `DAPR_API_TOKEN` to the sidecar (and `APP_API_TOKEN` to apps).
pub const API_TOKEN_HEADER: &str = "dapr-api-token";

/// The connect timeout when `DAPR_CLIENT_TIMEOUT_SECONDS` is unset, as in the official SDKs.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The gRPC port when neither `DAPR_GRPC_ENDPOINT` nor `DAPR_GRPC_PORT` is set.
pub const DEFAULT_GRPC_PORT: u16 = 50001;

/// Where the sidecar is and how to talk to it.
///
/// ```
/// use std::time::Duration;
/// use kairos_sdk::ClientConfig;
///
/// // What `from_env` reads, here from a map instead of the process environment.
/// let env = [("DAPR_GRPC_PORT", "50011"), ("DAPR_API_TOKEN", "s3cret")];
/// let config = ClientConfig::from_lookup(|k| env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))?;
/// assert_eq!(config.endpoint, "127.0.0.1:50011");
/// assert_eq!(config.api_token.as_deref(), Some("s3cret"));
/// assert_eq!(config.connect_timeout, Duration::from_secs(5));
/// # Ok::<(), kairos_sdk::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientConfig {
    /// `host:port` or `http://host:port` (a missing port means 80, as in Dapr's endpoint format).
    pub endpoint: String,
    /// Sent as `dapr-api-token` metadata on every call when set.
    pub api_token: Option<String>,
    /// How long to wait for the first connection.
    pub connect_timeout: Duration,
}

impl fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientConfig")
            .field("endpoint", &self.endpoint)
            .field("api_token", &self.api_token.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl ClientConfig {
    /// The sidecar at `endpoint`, without a token, with the default connect timeout.
    pub fn new(endpoint: impl Into<String>) -> Self {
        ClientConfig { endpoint: endpoint.into(), api_token: None, connect_timeout: DEFAULT_CONNECT_TIMEOUT }
    }

    setters! {
        /// Sets or clears the API token.
        with_api_token(token: Option<String>) => api_token = token;

        /// Sets the connect timeout.
        with_connect_timeout(timeout: Duration) => connect_timeout = timeout;
    }

    /// Reads the process environment, as the official SDKs do:
    ///
    /// * `DAPR_GRPC_ENDPOINT` (`host:port`, `http://host:port`; `https` is refused), else
    ///   `DAPR_RUNTIME_HOST` (default `127.0.0.1`) and `DAPR_GRPC_PORT` (default 50001);
    /// * `DAPR_API_TOKEN`, sent as `dapr-api-token` metadata;
    /// * `DAPR_CLIENT_TIMEOUT_SECONDS`, the connect timeout (default 5).
    ///
    /// Empty variables count as unset.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a port or timeout that is not a positive integer.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`ClientConfig::from_env`], reading variables through `lookup`.
    ///
    /// # Errors
    /// As [`ClientConfig::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let endpoint = match var("DAPR_GRPC_ENDPOINT") {
            Some(endpoint) => endpoint,
            None => {
                let host = var("DAPR_RUNTIME_HOST").unwrap_or_else(|| "127.0.0.1".to_owned());
                let port = match var("DAPR_GRPC_PORT") {
                    None => DEFAULT_GRPC_PORT,
                    Some(port) => {
                        port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| Error::InvalidSetting {
                            name: "DAPR_GRPC_PORT",
                            value: port.clone(),
                            reason: "expected a port number between 1 and 65535".into(),
                        })?
                    }
                };
                if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            }
        };
        let connect_timeout = match var("DAPR_CLIENT_TIMEOUT_SECONDS") {
            None => DEFAULT_CONNECT_TIMEOUT,
            Some(secs) => {
                Duration::from_secs(secs.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    Error::InvalidSetting {
                        name: "DAPR_CLIENT_TIMEOUT_SECONDS",
                        value: secs.clone(),
                        reason: "expected a positive whole number of seconds".into(),
                    }
                })?)
            }
        };
        Ok(ClientConfig { endpoint, api_token: var("DAPR_API_TOKEN"), connect_timeout })
    }
}

/// `host:port`, `http://host[:port]`, optionally `?tls=false` → `http://host:port`.
///
/// # Errors
/// [`Error::TlsNotSupported`] for `https://` or `?tls=true`; [`Error::InvalidEndpoint`] for
/// anything else that is not a plain-text gRPC address.
pub(crate) fn endpoint_uri(endpoint: &str) -> Result<String, Error> {
    let invalid =
        |reason: &str| Error::InvalidEndpoint { endpoint: endpoint.to_owned(), reason: reason.into() };
    let trimmed = endpoint.trim();
    let (base, query) = trimmed.split_once('?').unwrap_or((trimmed, ""));
    for param in query.split('&').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some((key, value)) if key.eq_ignore_ascii_case("tls") => {
                if value.eq_ignore_ascii_case("true") {
                    return Err(Error::TlsNotSupported(endpoint.to_owned()));
                }
                if !value.eq_ignore_ascii_case("false") {
                    return Err(invalid("tls must be true or false"));
                }
            }
            _ => return Err(invalid("the only query parameter understood is tls")),
        }
    }
    let authority = match base.split_once("://") {
        None => base,
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
            return Err(Error::TlsNotSupported(endpoint.to_owned()));
        }
        Some((scheme, _)) => {
            return Err(invalid(&format!(
                "unsupported scheme {scheme:?}; use host:port or http://host:port"
            )));
        }
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() {
        return Err(invalid("no host"));
    }
    if authority.contains('/') {
        return Err(invalid("a path is not supported"));
    }
    // The text after the last ':' is a port unless it is inside an IPv6 literal.
    let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !port.contains(']') && (!host.contains(':') || host.ends_with(']'))
    });
    if has_port {
        let port = authority.rsplit_once(':').map(|(_, p)| p).unwrap_or_default();
        if port.parse::<u16>().ok().filter(|p| *p > 0).is_none() {
            return Err(invalid(&format!("invalid port {port:?}")));
        }
        Ok(format!("http://{authority}"))
    } else {
        Ok(format!("http://{authority}:80"))
    }
}

/// An async client of the sidecar's Jobs API. Cheap to clone; clones share one connection.
///
/// Against a real kairos sidecar (started in-process by the hidden lines, with an embedded
/// scheduler on an in-memory store):
///
/// ```
/// use kairos_sdk::{Client, FailurePolicy, Job};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "multi_thread", worker_threads = 2)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let sidecar = sidecar::start().await;
/// # let endpoint = sidecar.grpc_addr().to_string();
/// // Under `kairos run` or `dapr run`: Client::from_env().await?
/// let client = Client::connect(endpoint).await?;
///
/// let backup = Job::new("backup-db")
///     .schedule("@every 1h")
///     .repeats(24)
///     .data_json(&serde_json::json!({"db": "prod"}))?
///     .failure_policy(FailurePolicy::constant(Duration::from_secs(5), Some(2)));
/// client.schedule_job(backup.clone(), false).await?;
/// client.schedule_job(Job::new("backup-logs").due_time("10m"), false).await?;
///
/// // Scheduling an existing name again needs overwrite = true.
/// let again = client.schedule_job(backup.clone(), false).await.unwrap_err();
/// assert!(again.is_already_exists());
/// client.schedule_job(backup, true).await?;
///
/// let job = client.get_job("backup-db").await?;
/// assert_eq!((job.schedule.as_deref(), job.repeats), (Some("@every 1h"), Some(24)));
/// assert_eq!(job.decode_data::<serde_json::Value>()?["db"], "prod");
///
/// let names: Vec<String> = client.list_jobs().await?.into_iter().map(|j| j.name).collect();
/// assert_eq!(names, ["backup-db", "backup-logs"]);
///
/// client.delete_job("backup-logs").await?;
/// assert!(client.get_job("backup-logs").await.unwrap_err().is_not_found());
/// client.delete_jobs_by_prefix("backup-").await?;
/// assert!(client.list_jobs().await?.is_empty());
/// # sidecar.shutdown().await;
/// # Ok(())
/// # }
/// # mod sidecar {
/// #     use std::sync::Arc;
/// #     use kairos_sidecar::{scheduler_link::SchedulerLink, server::{Sidecar, SidecarConfig}};
/// #     pub async fn start() -> Sidecar {
/// #         let store = Arc::new(kairos_store::memory::MemoryStore::new(1));
/// #         let engine = kairos_engine::Engine::new(store, Arc::new(kairos_core::SystemClock), Default::default());
/// #         engine.own_all();
/// #         let (_hosts_tx, hosts) = tokio::sync::watch::channel(vec!["in-process".to_owned()]);
/// #         let scheduler = Arc::new(kairos_scheduler::SchedulerService::new(engine, hosts));
/// #         let mut config = SidecarConfig::new("doc-app");
/// #         (config.http_port, config.grpc_port) = (0, 0);
/// #         Sidecar::start(config, SchedulerLink::in_process(scheduler)).await.unwrap()
/// #     }
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    grpc: Grpc,
    /// kairos's steering service, on the same channel.
    pub(crate) steer: SteeringClient<Channel>,
    token: Option<AsciiMetadataValue>,
    endpoint: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("api_token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects to the sidecar at `endpoint` (`host:port` or `http://host:port`), without a token.
    ///
    /// # Errors
    /// As [`Client::connect_with`].
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, Error> {
        Self::connect_with(ClientConfig::new(endpoint)).await
    }

    /// Connects to the sidecar the environment names (see [`ClientConfig::from_env`]).
    ///
    /// # Errors
    /// As [`ClientConfig::from_env`] and [`Client::connect_with`].
    pub async fn from_env() -> Result<Self, Error> {
        Self::connect_with(ClientConfig::from_env()?).await
    }

    /// Connects as `config` says, waiting at most its connect timeout; later reconnects are
    /// automatic.
    ///
    /// # Errors
    /// [`Error::TlsNotSupported`] or [`Error::InvalidEndpoint`] for an unusable endpoint,
    /// [`Error::InvalidSetting`] for a token that cannot be sent as metadata,
    /// [`Error::Connect`] when the sidecar cannot be reached in time.
    pub async fn connect_with(config: ClientConfig) -> Result<Self, Error> {
        let uri = endpoint_uri(&config.endpoint)?;
        let endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| Error::InvalidEndpoint { endpoint: config.endpoint.clone(), reason: e.to_string() })?
            .connect_timeout(config.connect_timeout);
        let channel =
            endpoint.connect().await.map_err(|source| Error::Connect { endpoint: uri.clone(), source })?;
        let mut client = Self::from_channel(channel, config.api_token)?;
        client.endpoint = uri;
        Ok(client)
    }

    /// A client over a channel built elsewhere (e.g. with TLS, which tonic supports behind its
    /// `tls-*` features), sending `api_token` as `dapr-api-token` when set.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] when the token holds characters metadata cannot carry.
    pub fn from_channel(channel: Channel, api_token: Option<String>) -> Result<Self, Error> {
        let token = api_token
            .map(|token| {
                MetadataValue::try_from(token.as_str()).map_err(|_| Error::InvalidSetting {
                    name: "DAPR_API_TOKEN",
                    value: "<redacted>".into(),
                    reason: "a token must be visible ASCII".into(),
                })
            })
            .transpose()?;
        Ok(Client {
            grpc: DaprClient::new(channel.clone()),
            steer: SteeringClient::new(channel),
            token,
            endpoint: String::new(),
        })
    }

    /// The `http://host:port` this client dialled (empty for [`Client::from_channel`]).
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Schedules `job`; with `overwrite` false an existing job of that name is an error
    /// ([`Error::is_already_exists`]), with true it is replaced.
    ///
    /// # Errors
    /// [`Error::Status`] with the sidecar's status: AlreadyExists, InvalidArgument (no name, no
    /// schedule or due time), Internal "job failed validation: …" (bad cron, due time, ttl,
    /// repeats), Unauthenticated (token).
    pub async fn schedule_job(&self, job: Job, overwrite: bool) -> Result<(), Error> {
        let request = ScheduleJobRequest { job: Some(job.into()), overwrite };
        let alpha1 = request.clone();
        let stable = |mut grpc: Grpc| async move { grpc.schedule_job(self.request(request)).await };
        #[allow(deprecated)] // Sidecars before Dapr 1.18 only know the Alpha1 name.
        let alpha1 = |mut grpc: Grpc| async move { grpc.schedule_job_alpha1(self.request(alpha1)).await };
        self.stable_or_alpha1("schedule job", stable, alpha1).await.map(drop)
    }

    /// The job named `name`, as stored (strings as written, the default failure policy filled
    /// in).
    ///
    /// # Errors
    /// [`Error::Status`]; an unknown name is Internal naming NotFound ([`Error::is_not_found`]).
    /// [`Error::InvalidResponse`] when the answer holds no job.
    pub async fn get_job(&self, name: &str) -> Result<Job, Error> {
        const OP: &str = "get job";
        let request = GetJobRequest { name: name.to_owned() };
        let alpha1 = request.clone();
        let stable = |mut grpc: Grpc| async move { grpc.get_job(self.request(request)).await };
        #[allow(deprecated)] // Sidecars before Dapr 1.18 only know the Alpha1 name.
        let alpha1 = |mut grpc: Grpc| async move { grpc.get_job_alpha1(self.request(alpha1)).await };
        let job = self.stable_or_alpha1(OP, stable, alpha1).await?.into_inner().job;
        let job = job.ok_or_else(|| Error::InvalidResponse {
            operation: OP,
            reason: "the response holds no job".into(),
        })?;
        Ok(job.into())
    }

    /// Deletes the job named `name`; deleting an unknown name succeeds, as in Dapr.
    ///
    /// # Errors
    /// [`Error::Status`] with the sidecar's status.
    pub async fn delete_job(&self, name: &str) -> Result<(), Error> {
        let request = DeleteJobRequest { name: name.to_owned() };
        let alpha1 = request.clone();
        let stable = |mut grpc: Grpc| async move { grpc.delete_job(self.request(request)).await };
        #[allow(deprecated)] // Sidecars before Dapr 1.18 only know the Alpha1 name.
        let alpha1 = |mut grpc: Grpc| async move { grpc.delete_job_alpha1(self.request(alpha1)).await };
        self.stable_or_alpha1("delete job", stable, alpha1).await.map(drop)
    }

    /// Every job of this app, ascending by name.
    ///
    /// # Errors
    /// [`Error::Status`] with the sidecar's status.
    pub async fn list_jobs(&self) -> Result<Vec<Job>, Error> {
        let stable = |mut grpc: Grpc| async move {
            Ok(grpc.list_jobs(self.request(ListJobsRequest {})).await?.into_inner().jobs)
        };
        #[allow(deprecated)] // Sidecars before Dapr 1.17 only know the Alpha1 name.
        let alpha1 = |mut grpc: Grpc| async move {
            Ok(grpc.list_jobs_alpha1(self.request(ListJobsRequestAlpha1 {})).await?.into_inner().jobs)
        };
        let jobs = self.stable_or_alpha1("list jobs", stable, alpha1).await?;
        Ok(jobs.into_iter().map(Job::from).collect())
    }

    /// Deletes every job of this app whose name starts with `prefix`.
    ///
    /// An empty prefix is refused: on the wire it means "every job", which
    /// [`Client::delete_all_jobs`] asks for explicitly.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty prefix; [`Error::Status`] with the sidecar's
    /// status.
    pub async fn delete_jobs_by_prefix(&self, prefix: &str) -> Result<(), Error> {
        if prefix.is_empty() {
            return Err(Error::InvalidArgument(
                "an empty prefix would delete every job of the app; call delete_all_jobs for that".into(),
            ));
        }
        self.delete_by_prefix(Some(prefix.to_owned())).await
    }

    /// Deletes every job of this app.
    ///
    /// # Errors
    /// [`Error::Status`] with the sidecar's status.
    pub async fn delete_all_jobs(&self) -> Result<(), Error> {
        self.delete_by_prefix(None).await
    }

    async fn delete_by_prefix(&self, name_prefix: Option<String>) -> Result<(), Error> {
        let request = DeleteJobsByPrefixRequest { name_prefix: name_prefix.clone() };
        let stable =
            |mut grpc: Grpc| async move { grpc.delete_jobs_by_prefix(self.request(request)).await.map(drop) };
        let alpha1 = DeleteJobsByPrefixRequestAlpha1 { name_prefix };
        #[allow(deprecated)] // Sidecars before Dapr 1.17 only know the Alpha1 name.
        let alpha1 = |mut grpc: Grpc| async move {
            grpc.delete_jobs_by_prefix_alpha1(self.request(alpha1)).await.map(drop)
        };
        self.stable_or_alpha1("delete jobs by prefix", stable, alpha1).await
    }

    /// Calls a jobs RPC by its stable name and, when the sidecar does not serve that (older
    /// Dapr), by its Alpha1 name.
    ///
    /// # Errors
    /// [`Error::Status`] with the status of the call that answered.
    async fn stable_or_alpha1<T, S, SF, L, LF>(
        &self,
        operation: &'static str,
        stable: S,
        alpha1: L,
    ) -> Result<T, Error>
    where
        S: FnOnce(Grpc) -> SF,
        SF: Future<Output = Result<T, Status>>,
        L: FnOnce(Grpc) -> LF,
        LF: Future<Output = Result<T, Status>>,
    {
        let answer = match stable(self.grpc.clone()).await {
            Err(status) if is_method_not_found(&status) => {
                fallback(operation, &status);
                alpha1(self.grpc.clone()).await
            }
            answer => answer,
        };
        answer.map_err(|status| Error::Status { operation, status })
    }

    /// `message` with the API token attached.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request.metadata_mut().insert(API_TOKEN_HEADER, token.clone());
        }
        request
    }
}

/// The sidecar does not know the stable method: UNIMPLEMENTED, or daprd ≤ 1.17 proxying the
/// unknown method as service invocation.
fn is_method_not_found(status: &Status) -> bool {
    status.code() == Code::Unimplemented
        || (status.code() == Code::Unknown && status.message().contains("failed to proxy request"))
}

fn fallback(operation: &str, status: &Status) {
    tracing::debug!(operation, code = ?status.code(), "stable jobs rpc not served; retrying with Alpha1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_plain_http_uris() {
        for (given, uri) in [
            ("127.0.0.1:50001", "http://127.0.0.1:50001"),
            ("localhost:4000", "http://localhost:4000"),
            ("http://dapr:50001", "http://dapr:50001"),
            ("HTTP://dapr:50001/", "http://dapr:50001"),
            ("dapr", "http://dapr:80"),
            ("http://dapr", "http://dapr:80"),
            ("[::1]:50001", "http://[::1]:50001"),
            ("[::1]", "http://[::1]:80"),
            ("dapr:50001?tls=false", "http://dapr:50001"),
        ] {
            assert_eq!(endpoint_uri(given).unwrap(), uri, "{given}");
        }
    }

    #[test]
    fn tls_endpoints_are_refused_clearly() {
        for given in ["https://dapr:443", "dapr:443?tls=true", "HTTPS://x"] {
            let err = endpoint_uri(given).unwrap_err();
            assert!(matches!(err, Error::TlsNotSupported(_)), "{given}: {err}");
            assert!(err.to_string().contains("TLS, which is not supported yet"), "{err}");
        }
    }

    #[test]
    fn malformed_endpoints_are_errors() {
        for given in ["", "unix:///tmp/dapr.sock", "dapr:0", "dapr:99999", "dapr:port", "h:1/path", "h:1?x=y"]
        {
            assert!(matches!(endpoint_uri(given), Err(Error::InvalidEndpoint { .. })), "{given}");
        }
    }

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn env_defaults_to_local_port_50001() {
        let config = ClientConfig::from_lookup(lookup(&[])).unwrap();
        assert_eq!(config, ClientConfig::new("127.0.0.1:50001"));
        // Empty values count as unset.
        let config =
            ClientConfig::from_lookup(lookup(&[("DAPR_API_TOKEN", ""), ("DAPR_GRPC_PORT", " ")])).unwrap();
        assert_eq!(config, ClientConfig::new("127.0.0.1:50001"));
    }

    #[test]
    fn env_endpoint_wins_over_host_and_port_and_sets_token_and_timeout() {
        /// Variables; the endpoint, token and connect timeout they give.
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, Option<&'a str>, Duration);
        let cases: [Case; 2] = [
            (
                &[
                    ("DAPR_GRPC_ENDPOINT", "http://dapr:7000"),
                    ("DAPR_GRPC_PORT", "1"),
                    ("DAPR_API_TOKEN", "t"),
                ],
                "http://dapr:7000",
                Some("t"),
                DEFAULT_CONNECT_TIMEOUT,
            ),
            (
                &[
                    ("DAPR_RUNTIME_HOST", "::1"),
                    ("DAPR_GRPC_PORT", "50011"),
                    ("DAPR_CLIENT_TIMEOUT_SECONDS", "9"),
                ],
                "[::1]:50011",
                None,
                Duration::from_secs(9),
            ),
        ];
        for (vars, endpoint, token, timeout) in cases {
            let config = ClientConfig::from_lookup(lookup(vars)).unwrap();
            assert_eq!(config.endpoint, endpoint, "{vars:?}");
            assert_eq!(config.api_token.as_deref(), token, "{vars:?}");
            assert_eq!(config.connect_timeout, timeout, "{vars:?}");
        }
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        for vars in
            [[("DAPR_GRPC_PORT", "abc")], [("DAPR_GRPC_PORT", "0")], [("DAPR_CLIENT_TIMEOUT_SECONDS", "-1")]]
        {
            let err = ClientConfig::from_lookup(lookup(&vars)).unwrap_err();
            assert!(err.to_string().contains(vars[0].0), "{err}");
        }
    }

    #[test]
    fn config_debug_hides_the_token() {
        let config = ClientConfig::new("x:1").with_api_token(Some("s3cret".into()));
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn method_not_found_matches_unimplemented_and_daprd_proxy_errors() {
        assert!(is_method_not_found(&Status::unimplemented("")));
        assert!(is_method_not_found(&Status::unknown(
            "failed to proxy request: required metadata dapr-callee-app-id or dapr-app-id not found"
        )));
        assert!(!is_method_not_found(&Status::unknown("boom")));
        assert!(!is_method_not_found(&Status::internal("failed to proxy request")));
    }
}
