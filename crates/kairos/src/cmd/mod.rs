//! One module per subcommand, and what they share.

pub mod app_health;
pub mod jobs;
pub mod preview;
pub mod run;
pub mod scheduler;
pub mod sidecar;

use std::path::PathBuf;

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
