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
