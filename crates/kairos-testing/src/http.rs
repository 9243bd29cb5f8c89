//! The HTTP side of the process tests: an app served on port 0 and the answer a scripted app
//! gives a job by its name.

use axum::http::StatusCode;

/// Serves `router` on a loopback port chosen by the system (port 0); returns the port.
///
/// # Panics
/// When no port can be bound (it is for tests).
pub async fn serve(router: axum::Router) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the test app");
    let port = listener.local_addr().expect("the test app's address").port();
    tokio::spawn(async move { axum::serve(listener, router).await.expect("serve the test app") });
    port
}

/// Serves an app whose `POST /job/{name}` is `handler` over `state` (see [`serve`]); returns the
/// port and the state.
///
/// # Panics
/// When no port can be bound (it is for tests).
pub async fn serve_jobs<H, T, S>(handler: H, state: S) -> (u16, S)
where
    H: axum::handler::Handler<T, S>,
    T: 'static,
    S: Clone + Send + Sync + 'static,
{
    let router =
        axum::Router::new().route("/job/{name}", axum::routing::post(handler)).with_state(state.clone());
    (serve(router).await, state)
}

/// The status of `response` and its body as JSON (a JSON string of the text when it is not).
///
/// # Panics
/// When the body cannot be read (it is for tests).
pub async fn status_and_json(response: reqwest::Response) -> (u16, serde_json::Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("read the response body");
    (status, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
}

/// The answer of a scripted app to job `name`: 500 for names starting with `fail`, 404 for
/// `gone`, 200 for every other.
pub fn status_by_name(name: &str) -> StatusCode {
    if name.starts_with("fail") {
        StatusCode::INTERNAL_SERVER_ERROR
    } else if name.starts_with("gone") {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::OK
    }
}

/// What an app served by [`serve_job_counter`] received: deliveries counted by job name.
#[derive(Debug, Clone, Default)]
pub struct JobCounter {
    received: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
}

impl JobCounter {
    /// Deliveries of job `name` so far.
    pub fn count(&self, name: &str) -> usize {
        self.received
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

/// Serves an HTTP app on a port-0 loopback port whose `POST /job/{name}` counts the delivery and
/// answers as [`status_by_name`]; returns the port and the counts.
///
/// # Panics
/// When no port can be bound (it is for tests).
pub async fn serve_job_counter() -> (u16, JobCounter) {
    use axum::extract::{Path, State};
    async fn on_job(State(app): State<JobCounter>, Path(name): Path<String>) -> StatusCode {
        let status = status_by_name(&name);
        *app.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(name).or_default() += 1;
        status
    }
    serve_jobs(on_job, JobCounter::default()).await
}
