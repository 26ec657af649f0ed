//! TLS for the tests: a certificate authority of the test's own (rcgen),
//! server certificates it signs, and a server started with them.

use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

use crate::api::SmsInbox;
use crate::{Database, Server, ServerBuilder};

/// A certificate authority of the test's own.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

pub fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A server certificate for 127.0.0.1 and localhost signed by `ca`: the
/// chain's PEM and the key's.
pub fn server_cert(ca: &Ca) -> (String, String) {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let params = CertificateParams::new(names).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A server with TLS on, its certificate signed by `ca`, one-time codes
/// going to `sms`.
pub async fn tls_server(ca: &Ca, files: &Path, sms: &SmsInbox) -> Server {
    tls_builder(ca, files, sms).start().await.unwrap()
}

pub fn tls_builder(ca: &Ca, files: &Path, sms: &SmsInbox) -> ServerBuilder {
    let (cert, key) = server_cert(ca);
    Server::with_sms(&Database::Sqlite, sms)
        .env("SWITCHBOARD_TLS_CERT_FILE", write(files, "cert.pem", &cert))
        .env("SWITCHBOARD_TLS_KEY_FILE", write(files, "key.pem", &key))
        .env("SWITCHBOARD_MQTTS_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_MQTT_WSS_ADDR", "127.0.0.1:0")
        .env("SWITCHBOARD_HTTPS_ADDR", "127.0.0.1:0")
}

/// Debian's pebble, a test ACME server, on loopback: its own HTTPS with
/// a certificate from `ca`, checking TLS-ALPN-01 challenges on a given
/// port. Stopped when dropped.
pub struct Pebble {
    child: std::process::Child,
    /// The ACME directory's URL.
    pub directory: String,
    management: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Pebble {
    /// Starts pebble checking challenges on `tls_port`, issuing
    /// certificates valid `validity_s` seconds, once it says its directory
    /// is up.
    pub async fn start(ca: &Ca, tls_port: u16, validity_s: u64) -> anyhow::Result<Pebble> {
        use std::io::BufRead;
        let dir = tempfile::tempdir()?;
        let (cert, key) = server_cert(ca);
        let free = || -> anyhow::Result<u16> {
            Ok(std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port())
        };
        let (listen, management) = (free()?, free()?);
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{listen}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": write(dir.path(), "cert.pem", &cert),
            "privateKey": write(dir.path(), "key.pem", &key),
            "httpPort": 5002,
            "tlsPort": tls_port,
            // Short-lived, so a renewal comes within a test.
            "certificateValidityPeriod": validity_s,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
        }});
        let config = write(dir.path(), "pebble.json", &config.to_string());
        let mut child = std::process::Command::new("pebble")
            .args(["-config", &config])
            // No waits before checks, and no nonces refused at random.
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!("pebble (Debian package pebble; scripts/test installs it): {e}")
            })?;
        let out = child.stdout.take().expect("piped");
        let up = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(out).lines().map_while(|l| l.ok());
            let found = lines.by_ref().any(|l| l.contains("Listening on"));
            // Keep reading, so pebble never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            found
        });
        let up = tokio::time::timeout(std::time::Duration::from_secs(30), up).await;
        if !matches!(up, Ok(Ok(true))) {
            let _ = child.kill();
            anyhow::bail!("pebble did not say it listens");
        }
        Ok(Pebble {
            child,
            directory: format!("https://127.0.0.1:{listen}/dir"),
            management: ([127, 0, 0, 1], management).into(),
            _dir: dir,
        })
    }

    /// The root certificate pebble issues under (a new one each start),
    /// PEM, read from its management interface over HTTPS trusting `ca`.
    pub async fn root(&self, ca: &Ca) -> anyhow::Result<String> {
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.pem.as_bytes())?)
            .build()?;
        let url = format!("https://{}/roots/0", self.management);
        Ok(client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS client trusting the roots in `ca_pem` alone.
pub fn client_config(ca_pem: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificate a new TLS connection to `addr` (as `name`) is
/// served, as DER, trusting the roots in `ca_pem`.
pub async fn served_certificate(addr: std::net::SocketAddr, name: &str, ca_pem: &str) -> Vec<u8> {
    handshake(addr, name, ca_pem, &[]).await.unwrap()
}

/// A TLS handshake with `addr` (as `name`, offering `alpn`), trusting the
/// roots in `ca_pem`: the certificate served, as DER, or why it failed.
pub async fn handshake(
    addr: std::net::SocketAddr,
    name: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> anyhow::Result<Vec<u8>> {
    use rustls::pki_types::ServerName;
    let mut config = Arc::unwrap_or_clone(client_config(ca_pem)?);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(name.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let stream = tls.connect(name, tcp).await?;
    let served = stream.get_ref().1.peer_certificates().unwrap_or_default();
    Ok(served.first().map(|c| c.to_vec()).unwrap_or_default())
}

/// The certificate `addr` serves once a handshake succeeds and `ready`
/// takes it, tried every 200 ms for at most a minute (an ACME server
/// issues and renews on its own schedule).
pub async fn served_once(
    addr: std::net::SocketAddr,
    name: &str,
    ca_pem: &str,
    ready: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    for _ in 0..300 {
        if let Ok(served) = handshake(addr, name, ca_pem, &[]).await {
            if ready(&served) {
                return served;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("{addr} served no certificate as wanted within a minute");
}

/// `builder` with the plain listeners off: the server listens over TLS
/// only.
pub fn tls_only(builder: ServerBuilder) -> ServerBuilder {
    builder
        .env("SWITCHBOARD_HTTP_ADDR", "")
        .env("SWITCHBOARD_MQTT_ADDR", "")
        .env("SWITCHBOARD_MQTT_WS_ADDR", "")
}

/// mosquitto_sub over TLS to `server` (as `host`) trusting `cafile`, as
/// `user`: the first message on the user's own presence (served at
/// once), or its error output.
pub fn mosquitto_sub(
    server: &Server,
    host: &str,
    cafile: &str,
    user: &crate::api::SignedIn,
) -> Result<String, String> {
    let port = server.mqtts.expect("a server with TLS").port().to_string();
    let topic = format!("users/{}/presence", user.id);
    let out = std::process::Command::new("mosquitto_sub")
        .args(["-h", host, "-p", &port, "--cafile", cafile, "-V", "311"])
        .args([
            "-i",
            &user.id,
            "-u",
            &user.id,
            "-P",
            &user.access,
            "-t",
            &topic,
        ])
        .args(["-C", "1", "-W", "10"])
        .output()
        .expect("mosquitto_sub (Debian package mosquitto-clients; scripts/test installs it)");
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
        false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}
