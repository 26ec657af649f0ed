//! TLS for the tests: a certificate authority of the test's own (rcgen),
//! server certificates it signs, and a server started with them.

use std::path::Path;

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
