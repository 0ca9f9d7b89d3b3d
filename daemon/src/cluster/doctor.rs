//! `forklet doctor`: asks a workspace's API server for `/version` the way
//! its runners reach it, with the kubeconfig they receive: the same
//! address on the runner's network (the container's address on the
//! cluster's network, forklet's relay, or the server as written), the same
//! CA and name to verify, the same credentials. Each step says what it
//! found, so a failure names what to fix.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use forklet_state::api::{CheckName, CheckView};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_yaml::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::route::{Route, Server};
use super::{Access, Reach};

const TIMEOUT: Duration = Duration::from_secs(10);
/// `/version` is a few hundred bytes; anything past this is not read.
const MAX_ANSWER: u64 = 64 << 10;

/// The checks, in order; the first that fails ends them.
pub async fn check(reach: &Reach) -> Vec<CheckView> {
    let mut checks = Vec::new();
    let access = match reach {
        Ok(access) => access,
        Err(reason) => {
            checks.push(failed(CheckName::Route, reason.clone()));
            return checks;
        }
    };
    checks.push(passed(
        CheckName::Route,
        format!("{}: {}", access.via(), access.endpoint),
    ));
    let _ = run(access, &mut checks).await;
    checks
}

fn passed(name: CheckName, detail: String) -> CheckView {
    CheckView {
        name,
        ok: true,
        detail,
    }
}

fn failed(name: CheckName, detail: String) -> CheckView {
    CheckView {
        name,
        ok: false,
        detail,
    }
}

/// Pushes each check's result; `Err(())` after the first that failed.
async fn run(access: &Access, checks: &mut Vec<CheckView>) -> Result<(), ()> {
    let config: Value = serde_yaml::from_str(&access.kubeconfig)
        .map_err(|e| checks.push(failed(CheckName::Kubeconfig, e.to_string())))?;
    let cluster = &config["clusters"][0]["cluster"];
    let user = &config["users"][0]["user"];
    let server = Server::parse(&access.endpoint)
        .map_err(|e| checks.push(failed(CheckName::Kubeconfig, e)))?;
    let verify_as = cluster["tls-server-name"]
        .as_str()
        .unwrap_or(&server.host)
        .to_owned();

    let target = match connect_to(access, &server).await {
        Ok(target) => target,
        Err(e) => {
            checks.push(failed(CheckName::Connect, e));
            return Err(());
        }
    };
    let tcp = match tokio::time::timeout(TIMEOUT, connect(access, target)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            checks.push(failed(CheckName::Connect, format!("{target}: {e}")));
            return Err(());
        }
        Err(_) => {
            checks.push(failed(
                CheckName::Connect,
                format!("{target}: no answer within {TIMEOUT:?}"),
            ));
            return Err(());
        }
    };
    checks.push(passed(CheckName::Connect, target.to_string()));

    // The machine's CAs are files: read off the async runtime.
    let (cluster_entry, user_entry) = (cluster.clone(), user.clone());
    let made = tokio::task::spawn_blocking(move || tls_config(&cluster_entry, &user_entry)).await;
    let (tls, trusted) = match made.unwrap_or_else(|e| Err(format!("TLS set-up failed: {e}"))) {
        Ok(config) => config,
        Err(e) => {
            checks.push(failed(CheckName::Tls, e));
            return Err(());
        }
    };
    let name = ServerName::try_from(verify_as.clone())
        .map_err(|e| checks.push(failed(CheckName::Tls, format!("{verify_as:?}: {e}"))))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let mut stream = match tokio::time::timeout(TIMEOUT, connector.connect(name, tcp)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            checks.push(failed(CheckName::Tls, format!("as {verify_as}: {e}")));
            return Err(());
        }
        Err(_) => {
            checks.push(failed(
                CheckName::Tls,
                format!("no handshake within {TIMEOUT:?}"),
            ));
            return Err(());
        }
    };
    checks.push(passed(
        CheckName::Tls,
        match trusted {
            Some(trusted) => format!("certificate verified for {verify_as} by {trusted}"),
            None => "NOT verified: the kubeconfig sets insecure-skip-tls-verify".to_owned(),
        },
    ));

    let (header, credentials) = authorization(user);
    let request = format!(
        "GET /version HTTP/1.1\r\nHost: {verify_as}\r\nAccept: application/json\r\nUser-Agent: forklet-doctor\r\n{header}Connection: close\r\n\r\n"
    );
    let mut answer = Vec::new();
    let exchange = async {
        stream.write_all(request.as_bytes()).await?;
        (&mut stream)
            .take(MAX_ANSWER)
            .read_to_end(&mut answer)
            .await
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(Ok(_)) => {}
        // A server that closes without close_notify still said what it had.
        Ok(Err(e)) if !answer.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) => {
            checks.push(failed(CheckName::Version, format!("GET /version: {e}")));
            return Err(());
        }
        Err(_) => {
            checks.push(failed(
                CheckName::Version,
                format!("no answer within {TIMEOUT:?}"),
            ));
            return Err(());
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    match status {
        Some(200) => {
            let version = body
                .find('{')
                .and_then(|start| {
                    serde_json::from_str::<serde_json::Value>(&body[start..body.rfind('}')? + 1])
                        .ok()
                })
                .and_then(|v| v["gitVersion"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "no gitVersion".to_owned());
            checks.push(passed(
                CheckName::Version,
                format!("GET /version: 200, {version} ({credentials})"),
            ));
            Ok(())
        }
        Some(code @ (401 | 403)) => {
            checks.push(failed(
                CheckName::Version,
                format!("GET /version: {code}: the server refused the credentials ({credentials})"),
            ));
            Err(())
        }
        Some(code) => {
            checks.push(failed(CheckName::Version, format!("GET /version: {code}")));
            Err(())
        }
        None => {
            checks.push(failed(
                CheckName::Version,
                "GET /version: not an HTTP answer".to_owned(),
            ));
            Err(())
        }
    }
}

/// A connection to `target`; to a relay, from loopback, the one source on
/// this machine that a relay lets in besides runners.
async fn connect(access: &Access, target: SocketAddr) -> std::io::Result<TcpStream> {
    if let Route::Relay { .. } = access.route {
        let (socket, from) = match target {
            SocketAddr::V4(_) => (
                tokio::net::TcpSocket::new_v4()?,
                IpAddr::from([127, 0, 0, 1]),
            ),
            SocketAddr::V6(_) => (
                tokio::net::TcpSocket::new_v6()?,
                IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1u16]),
            ),
        };
        socket.bind(SocketAddr::new(from, 0))?;
        return socket.connect(target).await;
    }
    TcpStream::connect(target).await
}

/// Where the runner's connection lands, reached from this machine: the
/// cluster container's address on its network, the relay, or the server.
async fn connect_to(access: &Access, server: &Server) -> Result<SocketAddr, String> {
    match &access.route {
        Route::Network {
            address: Some(ip),
            port,
            ..
        } => Ok(SocketAddr::new(*ip, *port)),
        Route::Network { container, .. } => Err(format!(
            "container {container} has no address on its network"
        )),
        Route::Relay { .. } => access
            .relay
            .ok_or_else(|| "the relay is not running".to_owned()),
        Route::DesktopHost { port } => Ok(SocketAddr::from(([127, 0, 0, 1], *port))),
        Route::Direct => {
            let host = (server.host.as_str(), server.port);
            tokio::time::timeout(TIMEOUT, tokio::net::lookup_host(host))
                .await
                .map_err(|_| format!("{}: no address within {TIMEOUT:?}", server.host))?
                .map_err(|e| format!("{}: {e}", server.host))?
                .next()
                .ok_or_else(|| format!("{} has no address", server.host))
        }
    }
}

/// The TLS client the kubeconfig describes, and what its trust comes from
/// (`None`: nothing, the kubeconfig skips verification).
fn tls_config(
    cluster: &Value,
    user: &Value,
) -> Result<(rustls::ClientConfig, Option<String>), String> {
    let mut roots = rustls::RootCertStore::empty();
    let trusted = match cluster["certificate-authority-data"].as_str() {
        Some(data) => {
            let pem = decode(data, "certificate-authority-data")?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("certificate-authority-data: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("certificate-authority-data: {e}"))?;
            }
            "the kubeconfig's CA"
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            "this machine's CAs"
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    // What the module's client does, the check does: a kubeconfig that
    // turns verification off gets an answer, and the report says so.
    let skip = cluster["insecure-skip-tls-verify"].as_bool() == Some(true);
    let (builder, trusted) = match skip {
        true => (
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NotVerified(provider))),
            None,
        ),
        false => (builder.with_root_certificates(roots), Some(trusted)),
    };
    let config = match (
        user["client-certificate-data"].as_str(),
        user["client-key-data"].as_str(),
    ) {
        (Some(cert), Some(key)) => {
            let cert = decode(cert, "client-certificate-data")?;
            let key = decode(key, "client-key-data")?;
            let chain = CertificateDer::pem_slice_iter(&cert)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("client-certificate-data: {e}"))?;
            let key =
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| format!("client-key-data: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok((config, trusted.map(str::to_owned)))
}

/// Accepts any certificate, as a kubeconfig with `insecure-skip-tls-verify`
/// asks; the handshake's signatures are still checked.
#[derive(Debug)]
struct NotVerified(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NotVerified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The `Authorization` header line, and what the credentials are, in words.
fn authorization(user: &Value) -> (String, &'static str) {
    if let Some(token) = user["token"].as_str() {
        return (format!("Authorization: Bearer {token}\r\n"), "bearer token");
    }
    if let (Some(name), Some(password)) = (user["username"].as_str(), user["password"].as_str()) {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{name}:{password}"));
        return (format!("Authorization: Basic {basic}\r\n"), "basic auth");
    }
    if user["client-certificate-data"].is_string() {
        return (String::new(), "client certificate");
    }
    if user.get("exec").is_some() || user.get("auth-provider").is_some() {
        return (
            String::new(),
            "credentials from a plugin, which forklet does not run: not checked",
        );
    }
    (String::new(), "no credentials")
}

fn decode(data: &str, what: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| format!("{what}: not base64: {e}"))
}
