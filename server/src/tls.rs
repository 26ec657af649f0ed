//! TLS for the listeners: the certificate chain and key from PEM files,
//! served to every TLS listener through one resolver and read again on
//! SIGHUP, so a renewed certificate reaches new connections without a
//! restart (connections already open keep theirs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The chain in `cert` and the key in `key`, checked to belong together.
fn certified(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate in {}", cert.display());
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading a private key from {}", key.display()))?;
    CertifiedKey::from_der(chain, private, &provider())
        .with_context(|| format!("{} and {}", cert.display(), key.display()))
}

/// The certificate files and what was last read from them.
#[derive(Debug)]
pub struct CertFiles {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertFiles {
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertFiles>> {
        let current = RwLock::new(Arc::new(certified(cert, key)?));
        Ok(Arc::new(CertFiles {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current,
        }))
    }

    /// Reads the files again; on an error the certificate served stays.
    pub fn reload(&self) -> Result<()> {
        let fresh = certified(&self.cert, &self.key)?;
        *self.current.write().expect("certificate lock") = Arc::new(fresh);
        Ok(())
    }

    /// A server configuration serving these certificates, offering `alpn`.
    pub fn config(self: &Arc<Self>, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(config))
    }
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}
