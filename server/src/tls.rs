//! TLS for the listeners, from one resolver every TLS listener shares:
//! either the certificate chain and key from PEM files, read again on
//! SIGHUP, or a certificate an ACME server issues (TLS-ALPN-01 on the
//! HTTPS listener), cached in the data directory and renewed once two
//! thirds of its life have passed. Either way a new certificate reaches
//! new connections without a restart (open ones keep theirs).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_acme::caches::DirCache;
use rustls_acme::{AcmeConfig, AcmeState, EventOk, ResolvesServerCertAcme};

use crate::config::{Acme, Certificates};

/// What serves the TLS listeners' certificate.
#[derive(Clone)]
pub enum Served {
    Files(Arc<CertFiles>),
    Acme(Arc<ResolvesServerCertAcme>),
}

/// What gets, caches and renews an ACME certificate, to run once the
/// HTTPS listener (where the server proves its domain) is bound.
pub struct AcmeTask(AcmeState<std::io::Error>);

impl Served {
    /// Reads the certificate files, or sets up getting (and keeping) a
    /// certificate from the ACME server, cached under `data_dir`.
    pub fn start(
        certificates: &Certificates,
        data_dir: &Path,
    ) -> Result<(Served, Option<AcmeTask>)> {
        match certificates {
            Certificates::Files { cert, key } => {
                Ok((Served::Files(CertFiles::load(cert, key)?), None))
            }
            Certificates::Acme(acme) => {
                let state = acme_state(acme, &data_dir.join("acme"))?;
                Ok((Served::Acme(state.resolver()), Some(AcmeTask(state))))
            }
        }
    }

    /// A server configuration serving the certificate, offering `alpn`.
    /// Only the HTTPS listener takes ACME challenges (`challenges`): a
    /// listener offering the challenge's protocol alone would refuse every
    /// client that offers others (a browser's `http/1.1` on wss).
    pub fn config(&self, alpn: &[&[u8]], challenges: bool) -> Result<Arc<ServerConfig>> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth();
        let mut protocols: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let mut config = match self {
            Served::Files(files) => builder.with_cert_resolver(files.clone()),
            Served::Acme(acme) => {
                if challenges {
                    protocols.push(ACME_TLS_ALPN.to_vec());
                }
                builder.with_cert_resolver(acme.clone())
            }
        };
        config.alpn_protocols = protocols;
        Ok(Arc::new(config))
    }
}

/// The ALPN protocol of a TLS-ALPN-01 challenge (RFC 8737).
const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The ACME client's state: its account and certificate cached in
/// `cache`, readable by this user only (it holds private keys).
fn acme_state(acme: &Acme, cache: &Path) -> Result<AcmeState<std::io::Error>> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(cache)
        .with_context(|| format!("creating {}", cache.display()))?;
    std::fs::set_permissions(cache, std::fs::Permissions::from_mode(0o700))?;
    let mut config = AcmeConfig::new_with_provider(&acme.domains, provider())
        .contact(acme.email.iter().map(|e| format!("mailto:{e}")))
        .directory(&acme.directory_url);
    if let Some(ca_file) = &acme.ca_file {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca_file)
            .with_context(|| format!("reading {}", ca_file.display()))?
        {
            roots.add(cert.with_context(|| format!("reading {}", ca_file.display()))?)?;
        }
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config = config.client_tls_config(Arc::new(client));
    }
    Ok(config.cache(DirCache::new(cache.to_path_buf())).state())
}

impl AcmeTask {
    /// Gets the certificate (or takes the cached one), then renews it as
    /// it ages, until the process ends.
    pub fn spawn(self) {
        let mut state = self.0;
        tokio::spawn(async move {
            use futures_util::StreamExt as _;
            while let Some(event) = state.next().await {
                match event {
                    Ok(done @ (EventOk::DeployedNewCert | EventOk::DeployedCachedCert)) => {
                        tracing::info!(?done, "a certificate from the ACME server is served")
                    }
                    Ok(done) => tracing::debug!(?done, "ACME"),
                    Err(e) => tracing::warn!("ACME: {e}"),
                }
            }
        });
    }
}

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
}

impl ResolvesServerCert for CertFiles {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}
