//! The kairos web dashboard: what is about to fire, what failed, what is late, and a click to
//! pause, resume, fire or delete a job.
//!
//! Served by the scheduler process itself (`kairos scheduler --dashboard-port`, and `kairos run`
//! by default) over the engine it runs, in-process: no gRPC hop, no database of its own. Pages
//! are HTML built on the server ([`pages`]); one small embedded script refreshes their live
//! parts by fetching fragments every two seconds. Nothing is loaded from outside the binary.
//!
//! Security: with an API token, every route but the login form and the assets wants the token,
//! in an `HttpOnly`, `SameSite=Strict` cookie set by the login form (or an `Authorization:
//! Bearer` header, for scripts). Every action is a POST carrying the page's CSRF token and is
//! refused from another origin; `read_only` refuses them all. Every text from a job is escaped.
//! TLS: [`Dashboard::serve`] takes the scheduler's TLS configuration.
//!
//! Sits on the engine, the store and `kairos-core`; it must never import the scheduler's gRPC
//! services or the sidecar.

pub mod html;
pub mod listing;
pub mod pages;
pub mod stats;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use jiff::tz::TimeZone;
use kairos_core::Clock;
use kairos_engine::Engine;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use stats::MetricsSource;

/// The cookie the login form sets: the token in hex (any byte of a token is then a valid cookie
/// value).
pub const TOKEN_COOKIE: &str = "kairos_token";

/// What the dashboard serves and how.
#[derive(Clone)]
pub struct DashboardConfig {
    pub engine: Engine,
    pub clock: Arc<dyn Clock>,
    /// Zone of cron schedules without a `TZ=` prefix (the engine's).
    pub default_tz: TimeZone,
    /// The scheduler's API token; `None`: no login.
    pub api_token: Option<String>,
    /// Refuse every action (pause, resume, trigger, delete).
    pub read_only: bool,
    /// The process's metrics as Prometheus text, for the overview's rates; `None`: no rates.
    pub metrics: Option<MetricsSource>,
}

impl std::fmt::Debug for DashboardConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashboardConfig")
            .field("api_token", &self.api_token.as_ref().map(|_| "<set>"))
            .field("read_only", &self.read_only)
            .field("metrics", &self.metrics.is_some())
            .finish_non_exhaustive()
    }
}

/// The dashboard's shared state.
#[derive(Debug)]
pub struct Dashboard {
    config: DashboardConfig,
    /// Forms carry it; a POST without it is refused. Random per process: a page from before a
    /// restart asks for a reload.
    csrf: String,
    /// Whether it is served over TLS (the cookie is then `Secure`).
    tls: bool,
    census: Arc<stats::Census>,
    samples: Arc<stats::Samples>,
    stop: CancellationToken,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// 128 bits from the operating system's random source, as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 16];
    // As the standard library's hash maps do, treat a failing OS random source as fatal: no
    // token could be trusted.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    html::hex(&bytes)
}

/// Whether `a` equals `b`, in a time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

impl Dashboard {
    /// A dashboard over `config.engine`. Must be called within a tokio runtime (it starts the
    /// metrics sampler, which stops when the dashboard is dropped).
    pub fn new(config: DashboardConfig, tls: bool) -> Arc<Dashboard> {
        let census = stats::Census::new(config.engine.store().clone(), config.clock.clone());
        let samples = Arc::new(stats::Samples::default());
        let stop = CancellationToken::new();
        if let Some(source) = &config.metrics {
            tokio::spawn(stats::sample_forever(
                source.clone(),
                samples.clone(),
                config.clock.clone(),
                stop.clone(),
            ));
        }
        Arc::new(Dashboard { config, csrf: random_token(), tls, census, samples, stop })
    }

    /// Every route of the dashboard.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(pages::overview))
            .route("/jobs", get(pages::jobs))
            .route("/job/{key}", get(pages::job))
            .route("/job/{key}/confirm/{action}", get(pages::confirm))
            .route("/job/{key}/{action}", post(pages::act))
            .route("/login", get(pages::login_form).post(pages::login))
            .route("/logout", post(pages::logout))
            .route("/assets/style.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
            .route("/assets/app.js", get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }))
            .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
            .layer(axum::middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }

    /// Serves the dashboard on `listener` (over TLS with `tls`) until `shutdown` completes.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<kairos_proto::tls::ServerTls>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self.router();
        match tls {
            None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await,
            Some(tls) => {
                let listener = kairos_proto::tls::TlsListener::new(listener, tls)?;
                axum::serve(listener, app).with_graceful_shutdown(shutdown).await
            }
        }
    }

    /// The CSRF token of this process's forms.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }

    fn frame<'a>(&'a self, title: &'a str, nav: &'a str) -> html::Frame<'a> {
        html::Frame {
            title,
            nav,
            logout: self.config.api_token.is_some(),
            read_only: self.config.read_only,
            csrf: &self.csrf,
        }
    }

    /// Whether the request carries the API token (always, without one).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.config.api_token else { return true };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        bearer.is_some_and(|b| same(b, token))
            || cookie(headers, TOKEN_COOKIE).is_some_and(|c| same(&c, &html::hex(token.as_bytes())))
    }

    /// Whether a POST comes from this dashboard's own pages: its CSRF token, and no sign of
    /// another origin.
    fn same_origin(&self, headers: &HeaderMap, csrf: &str) -> bool {
        let site_ok = headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_none_or(|site| site == "same-origin" || site == "none");
        let origin_ok = match (headers.get(header::ORIGIN), headers.get(header::HOST)) {
            (Some(origin), Some(host)) => {
                let origin = origin.to_str().unwrap_or("");
                let host = host.to_str().unwrap_or("-");
                origin.split_once("://").is_some_and(|(_, h)| h == host)
            }
            (Some(_), None) => false,
            (None, _) => true,
        };
        site_ok && origin_ok && same(csrf, &self.csrf)
    }
}

/// A cookie's value from the request headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

/// Logs in every request but the login form and the assets, and sets the headers that keep
/// the pages from being framed, sniffed, cached or scripted from elsewhere.
async fn guard(State(dash): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let open = path == "/login" || path.starts_with("/assets/");
    let mut response = if open || dash.authorized(request.headers()) {
        next.run(request).await
    } else if request.method() == Method::GET {
        Redirect::to("/login").into_response()
    } else {
        (StatusCode::UNAUTHORIZED, "log in first").into_response()
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

const STYLE: &str = include_str!("../assets/style.css");
const SCRIPT: &str = include_str!("../assets/app.js");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

#[cfg(test)]
mod tests;
