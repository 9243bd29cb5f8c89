//! A receiving app for the app-protocol process tests, run as its own process
//! (`kairos-test-app`): it takes job triggers over one of daprd's app protocols and prints one
//! JSON line per job on stdout, `{"job":"NAME"}`, after a ready line in the format of kairos's
//! own (role `app`, its address as `http`), so [`crate::process::Kairos`] can run it.
//!
//! * `http`, `https`, `h2c`: `POST /job/{name}` answered 200 (HTTP/1.1, HTTP/1.1 over TLS,
//!   HTTP/2 without TLS only, so an HTTP/1.1 client is refused).
//! * `grpc`, `grpcs`: `AppCallback/OnJobEvent` answered OK (gRPC over TLS for `grpcs`).
//!
//! The TLS protocols serve the PEM certificate and key they are given.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::Path;
use axum::routing::post;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use kairos_proto::runtime::app_callback_server::{AppCallback, AppCallbackServer};
use kairos_proto::runtime::{JobEventRequest, JobEventResponse};
use kairos_proto::tls::{ServerTls, TlsIdentity, tls_incoming};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// Prints the received job's line.
fn received(name: &str) {
    println!("{}", serde_json::json!({ "job": name }));
}

struct Callback;

#[tonic::async_trait]
impl AppCallback for Callback {
    async fn on_job_event(
        &self,
        request: tonic::Request<JobEventRequest>,
    ) -> Result<tonic::Response<JobEventResponse>, tonic::Status> {
        received(&request.get_ref().name);
        Ok(tonic::Response::new(JobEventResponse {}))
    }
}

/// Serves `protocol` on `listener` until the process ends; `tls` is the PEM certificate and
/// key of `https` and `grpcs`.
///
/// # Errors
/// When the protocol is unknown, TLS is missing or bad, or the server fails.
pub async fn serve(
    protocol: &str,
    listener: TcpListener,
    tls: Option<(Vec<u8>, Vec<u8>)>,
) -> anyhow::Result<()> {
    let ready = serde_json::json!({
        "kairos": "ready", "role": "app", "pid": std::process::id(), "grpc": null,
        "http": listener.local_addr()?.to_string(), "metrics": null, "tls": tls.is_some(),
    });
    println!("{ready}");
    let identity = |alpn: &'static [u8]| -> anyhow::Result<Arc<ServerTls>> {
        let (cert, key) = tls.clone().context("a TLS protocol needs --cert and --key")?;
        Ok(TlsIdentity::new(cert, key).reloading_server_config(alpn)?)
    };
    match protocol {
        "http" | "https" | "h2c" => {
            let router = axum::Router::new().route(
                "/job/{name}",
                post(|Path(name): Path<String>| async move {
                    received(&name);
                }),
            );
            if protocol == "http" {
                return Ok(axum::serve(listener, router).await?);
            }
            let acceptor = (protocol == "https")
                .then(|| identity(b"http/1.1"))
                .transpose()?
                .map(|t| TlsAcceptor::from(t.current()));
            loop {
                let (tcp, _): (_, SocketAddr) = listener.accept().await?;
                let (router, acceptor) = (router.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let service = TowerToHyperService::new(router);
                    let served = match acceptor {
                        Some(acceptor) => match acceptor.accept(tcp).await {
                            Ok(tls) => {
                                auto::Builder::new(TokioExecutor::new())
                                    .http1_only()
                                    .serve_connection(TokioIo::new(tls), service)
                                    .await
                            }
                            Err(err) => {
                                eprintln!("TLS handshake failed: {err}");
                                return;
                            }
                        },
                        None => {
                            auto::Builder::new(TokioExecutor::new())
                                .http2_only()
                                .serve_connection(TokioIo::new(tcp), service)
                                .await
                        }
                    };
                    if let Err(err) = served {
                        eprintln!("connection failed: {err}");
                    }
                });
            }
        }
        "grpc" | "grpcs" => {
            let service = AppCallbackServer::new(Callback);
            let server = tonic::transport::Server::builder().add_service(service);
            if protocol == "grpc" {
                server.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)).await?;
            } else {
                server.serve_with_incoming(tls_incoming(listener, identity(b"h2")?)).await?;
            }
            Ok(())
        }
        other => bail!("unknown protocol {other:?}: expected http, https, h2c, grpc or grpcs"),
    }
}
