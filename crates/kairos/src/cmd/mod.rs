//! One module per subcommand, and what they share.

pub mod app_health;
pub mod jobs;
pub mod preview;
pub mod run;
pub mod scheduler;
pub mod sidecar;

use std::path::PathBuf;

use kairos_proto::tls::{TlsFiles, TlsIdentity};

/// Log levels, as daprd names them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Fatal,
}

/// Sets up logging to stderr at `level` (overridden by `RUST_LOG` when set).
pub fn init_logging(level: LogLevel) {
    init_logging_as(level, false);
}

/// [`init_logging`], as one JSON object per line when `json` (`--log-as-json`), with the
/// current span's fields (e.g. a trigger's job, attempt and outcome) in each line.
pub fn init_logging_as(level: LogLevel, json: bool) {
    let directive = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::Fatal => "error",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{directive},h2=warn,hyper=warn,tower=warn"))
    });
    if json {
        let _ = tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Logging of the services (`kairos scheduler`, `kairos sidecar`), as daprd's flags set it.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log verbosity.
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,
    /// Log one JSON object per line.
    #[arg(long)]
    pub log_as_json: bool,
}

impl LogArgs {
    /// Sets up logging as these flags say ([`init_logging_as`]).
    pub fn init(&self) {
        init_logging_as(self.log_level, self.log_as_json);
    }
}

/// The certificate a service serves its APIs with (`kairos scheduler`, `kairos sidecar`).
#[derive(Debug, Clone, clap::Args)]
pub struct ServeTlsArgs {
    /// Serve this process's APIs (the scheduler's gRPC; the sidecar's HTTP and gRPC) over TLS
    /// with this PEM certificate chain (needs --tls-key-file).
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The PEM private key of --tls-cert-file.
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
}

impl ServeTlsArgs {
    /// The identity of these files, requiring client certificates signed by `client_ca` when
    /// given; `None` without a certificate.
    ///
    /// # Errors
    /// When a file cannot be read or does not hold what it should.
    pub fn identity(&self, client_ca: Option<PathBuf>) -> anyhow::Result<Option<TlsIdentity>> {
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else { return Ok(None) };
        let files = TlsFiles { cert: cert.clone(), key: key.clone(), client_ca };
        Ok(Some(TlsIdentity::read(files)?))
    }
}

/// Where a scheduler keeps its jobs (`kairos scheduler`, and `kairos run`'s embedded one).
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Where the job store lives (durable, redb; created if missing); default ~/.kairos/data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Page cache of the local store (e.g. 128Mi): it fills up to the smaller of this and the
    /// store file, and counts in the scheduler's memory; the OS page cache serves the rest.
    #[arg(long, default_value = "128Mi", value_parser = kairos_sidecar::config::parse_byte_size)]
    pub store_cache_size: usize,
    /// Trigger records kept per job (its history: `kairos jobs history`), 0 to 1000; each takes
    /// at most 96 bytes in the store.
    #[arg(long, default_value = "50", value_parser = parse_history_limit)]
    pub history_limit: kairos_core::HistoryLimit,
}

fn parse_history_limit(text: &str) -> Result<kairos_core::HistoryLimit, String> {
    let n: u64 = text.parse().map_err(|e| format!("{text:?} is not a count: {e}"))?;
    kairos_core::HistoryLimit::new(n).map_err(|e| e.to_string())
}

impl StoreArgs {
    /// `--data-dir`, else [`default_data_dir`].
    ///
    /// # Errors
    /// As [`default_data_dir`].
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        self.data_dir.clone().map_or_else(default_data_dir, Ok)
    }
}

/// What the sidecar's flags say about the app (`kairos sidecar`, `kairos run`).
#[derive(Debug, Clone, clap::Args)]
pub struct AppArgs {
    /// The app's id: the owner of its jobs.
    #[arg(long)]
    pub app_id: String,
    /// The port the app listens on; without it no jobs are delivered (they wait in the scheduler).
    #[arg(long)]
    pub app_port: Option<u16>,
    /// How to call the app: http (POST /job/{name}), https (the same over TLS), h2c (the same
    /// over HTTP/2 without TLS), grpc (OnJobEvent) or grpcs (the same over TLS).
    #[arg(long, default_value = "http")]
    pub app_protocol: String,
    /// With https or grpcs: verify the app's certificate against this PEM CA (re-read when it
    /// changes); without it the app's certificate is not checked, as in daprd.
    #[arg(long)]
    pub app_tls_ca_file: Option<PathBuf>,
    /// Host or IP address of the app.
    #[arg(long, default_value = "127.0.0.1")]
    pub app_channel_address: String,
    /// Largest request or app-channel message, e.g. 4Mi.
    #[arg(long, default_value = "4Mi", value_parser = kairos_sidecar::config::parse_byte_size)]
    pub max_body_size: usize,
    /// Most deliveries to the app at once; -1 is unlimited.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub app_max_concurrency: i64,
    #[command(flatten)]
    pub app_health: app_health::AppHealthArgs,
}

/// An address for a log line, `none` when absent.
pub fn or_none(address: Option<std::net::SocketAddr>) -> String {
    address.map_or_else(|| "none".to_owned(), |a| a.to_string())
}

/// `~/.kairos/data`, where `kairos run` and `kairos scheduler` keep jobs unless told otherwise.
///
/// # Errors
/// When `HOME` is unset or empty: there is no sensible default then (a data dir relative to
/// wherever the command happens to run would scatter jobs), so the user must pass `--data-dir`.
pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    match std::env::var_os("HOME").filter(|home| !home.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".kairos").join("data")),
        None => anyhow::bail!(
            "HOME is not set, so there is no default data dir (~/.kairos/data); pass --data-dir"
        ),
    }
}

/// Completes on SIGINT or SIGTERM (handlers installed on first poll; prefer
/// [`shutdown_signal_now`]).
#[allow(dead_code)]
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Reads an API token from `file` (surrounding whitespace trimmed) or else from the environment
/// variable `env`; `None` when neither gives a non-empty token.
///
/// # Errors
/// When `file` is given but cannot be read or is empty.
pub fn api_token(file: Option<&std::path::Path>, env: &str) -> anyhow::Result<Option<String>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read the API token file {}: {e}", file.display()))?;
        let token = text.trim();
        anyhow::ensure!(!token.is_empty(), "the API token file {} is empty", file.display());
        return Ok(Some(token.to_owned()));
    }
    Ok(std::env::var(env).ok().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()))
}

/// The environment variable holding the scheduler API token (both ends).
pub const SCHEDULER_TOKEN_ENV: &str = "KAIROS_SCHEDULER_API_TOKEN";

/// Like [`shutdown_signal`], but the SIGINT/SIGTERM handlers are installed now, before the
/// future is first polled: a signal that arrives right after "listening" is logged is caught
/// (and handled gracefully) rather than killing the process.
///
/// # Errors
/// When the signal handlers cannot be installed.
pub fn shutdown_signal_now() -> anyhow::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}
