//! Built-in TLS (TLS_CERT/TLS_KEY): the certificate is loaded at start, and again whenever either
//! file changes, so a renewed certificate is served to new connections without dropping calls.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// How often the files are checked for a new certificate.
const RELOAD_EVERY: Duration = Duration::from_secs(2);

pub struct Tls {
    files: TlsFiles,
    acceptor: RwLock<TlsAcceptor>,
}

impl Tls {
    pub fn load(files: &TlsFiles) -> anyhow::Result<Arc<Self>> {
        let acceptor = RwLock::new(acceptor(files)?);
        Ok(Arc::new(Self { files: files.clone(), acceptor }))
    }

    /// The current certificate's acceptor (a reload swaps it for the connections after).
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.acceptor.read().ok().map(|a| a.clone())
    }

    /// Reloads when either file's modification time changes; a bad new pair is logged and the
    /// old certificate kept.
    pub async fn watch(self: Arc<Self>) {
        let stamp = |files: &TlsFiles| (modified(&files.cert), modified(&files.key));
        let mut seen = stamp(&self.files);
        loop {
            tokio::time::sleep(RELOAD_EVERY).await;
            let now = stamp(&self.files);
            if now == seen {
                continue;
            }
            match acceptor(&self.files) {
                Ok(a) => {
                    if let Ok(mut slot) = self.acceptor.write() {
                        *slot = a;
                    }
                    seen = now;
                    tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
                }
                // Half-written files (the cert renewed before the key): try again next round.
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "TLS certificate not reloaded; keeping the old one")
                }
            }
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .with_context(|| format!("cannot read TLS_CERT {}", files.cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("TLS_CERT {} is not a PEM certificate chain", files.cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("TLS_CERT {} holds no certificate", files.cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("TLS_KEY {} is not a PEM private key", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS_CERT and TLS_KEY do not make a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
