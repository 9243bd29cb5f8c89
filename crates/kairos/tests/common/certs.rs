//! Certificates for the TLS process tests, made per test with the `openssl` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// `openssl req` with a new P-256 key written to `key`, then `rest`.
fn req_with_new_key(dir: &Path, key: &str, rest: &[&str]) {
    let mut args =
        vec!["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key];
    args.extend(rest);
    openssl(dir, &args);
}

/// A CA (`ca.pem`, `ca.key`) in `dir`.
pub fn make_ca(dir: &Path) {
    req_with_new_key(
        dir,
        "ca.key",
        &["-x509", "-out", "ca.pem", "-days", "30", "-subj", "/CN=kairos test CA"],
    );
}

/// `NAME.pem`/`NAME.key` signed by the CA, with `serial`; `days` -1 makes it expired.
pub fn make_leaf(dir: &Path, name: &str, serial: &str, days: &str) {
    let ext = dir.join(format!("{name}.ext"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    req_with_new_key(
        dir,
        &format!("{name}.key"),
        &["-out", &format!("{name}.csr"), "-subj", &format!("/CN={name}")],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            serial,
            "-days",
            days,
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ],
    );
}

pub fn path(dir: &Path, file: &str) -> String {
    dir.join(file).display().to_string()
}

/// A temp dir with a CA and its `leaves` (name, serial, days: as [`make_leaf`]).
pub fn pki(leaves: &[(&str, &str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    for (name, serial, days) in leaves {
        make_leaf(dir.path(), name, serial, days);
    }
    dir
}

/// A TLS connection to `address` as `server_name`, trusting only the PEM CA `ca`, presenting
/// `client` (certificate and key files) when given, offering `alpn`; the handshake's error if
/// it fails.
pub async fn tls_connect(
    address: &str,
    server_name: &str,
    ca: &Path,
    client: Option<(PathBuf, PathBuf)>,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
    let mut config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await
}
