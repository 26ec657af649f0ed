//! What the SDK trusts over TLS, for HTTPS and MQTT alike: the system's
//! roots, or only those of a CA file the app names (a server with a
//! private CA).

use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

use crate::error::SdkError;

/// The client configuration trusting `ca_file`'s roots, or the system's
/// when there is none. A file that cannot be read, or holds no
/// certificate, is refused here, before anything is sent.
pub(crate) fn client_config(ca_file: Option<&str>) -> Result<Arc<ClientConfig>, SdkError> {
    match ca_file {
        None => Ok(system().clone()),
        Some(path) => Ok(with_roots(file_roots(path)?)),
    }
}

/// The roots in a PEM file, and no others.
fn file_roots(path: &str) -> Result<RootCertStore, SdkError> {
    let bad = |why: String| SdkError::InvalidArgument {
        reason: format!("CA file {path:?}: {why}"),
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))? {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in it".into()));
    }
    Ok(roots)
}

/// The system's roots (on Linux, `SSL_CERT_FILE` and `SSL_CERT_DIR` name
/// others, as for OpenSSL), read once per process.
fn system() -> &'static Arc<ClientConfig> {
    static SYSTEM: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let errors: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
        let roots = system_or_bundled(found.certs);
        if !errors.is_empty() {
            // On Android and iOS there is nothing to read: expected there.
            tracing::info!(
                ?errors,
                roots = roots.len(),
                "reading the system's certificates"
            );
        }
        with_roots(roots)
    })
}

/// The system's roots; where it offers none to read (Android and iOS keep
/// theirs out of a library's reach), the Mozilla roots built into the SDK.
fn system_or_bundled(found: Vec<CertificateDer<'static>>) -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found);
    if added == 0 {
        tracing::debug!(ignored, "no system certificates: the bundled roots trusted");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    roots
}

fn with_roots(roots: RootCertStore) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the provider's default versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_roots_stand_in_for_a_system_without_any() {
        let bundled = webpki_roots::TLS_SERVER_ROOTS.len();
        assert_eq!(system_or_bundled(Vec::new()).len(), bundled);
        let unparsable = CertificateDer::from(vec![0u8; 8]);
        assert_eq!(system_or_bundled(vec![unparsable]).len(), bundled);
        let ours = rcgen::generate_simple_self_signed(["sb.test".to_owned()]).unwrap();
        let one = system_or_bundled(vec![ours.cert.der().clone()]);
        assert_eq!(one.len(), 1, "the system's roots alone");
    }

    #[test]
    fn a_ca_file_is_trusted_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        let pems: Vec<String> = (0..2)
            .map(|i| {
                let name = format!("ca{i}.test");
                rcgen::generate_simple_self_signed([name])
                    .unwrap()
                    .cert
                    .pem()
            })
            .collect();
        std::fs::write(&file, pems.concat()).unwrap();
        assert_eq!(file_roots(file.to_str().unwrap()).unwrap().len(), 2);
    }

    #[test]
    fn a_ca_file_that_is_not_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.pem");
        for (file, why) in [
            (&empty, "no certificate in it"),
            (&garbage, ""),
            (&missing, ""),
        ] {
            match client_config(Some(file.to_str().unwrap())) {
                Err(SdkError::InvalidArgument { reason }) => {
                    assert!(reason.starts_with("CA file "), "{reason}");
                    assert!(reason.contains(why), "{reason}");
                }
                other => panic!("{file:?}: {other:?}"),
            }
        }
    }
}
