//! `kairos-test-app PROTOCOL [CERT KEY]`: the receiving app of the app-protocol process tests
//! (see `kairos_testing::app`), on the port in `APP_PORT` (0 picks one).

use anyhow::Context;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let protocol = args.first().context("usage: kairos-test-app PROTOCOL [CERT KEY]")?;
    let tls = match (args.get(1), args.get(2)) {
        (Some(cert), Some(key)) => Some((std::fs::read(cert)?, std::fs::read(key)?)),
        _ => None,
    };
    let port: u16 = std::env::var("APP_PORT").unwrap_or_else(|_| "0".into()).parse().context("APP_PORT")?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    kairos_testing::app::serve(protocol, listener, tls).await
}
