//! `--ca-cert`: trusting a private CA (or a self-signed certificate) besides the public roots, for
//! testing a `wss://`/`https://` deployment before it has a public certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::error::SimError;

/// The same trust for the WebSocket (rustls) and the dynamic-URL request (reqwest).
#[derive(Clone)]
pub(crate) struct Trust {
    pub(crate) ws: Arc<rustls::ClientConfig>,
    pub(crate) http: Vec<reqwest::Certificate>,
}

pub(crate) fn trusting(path: &Path) -> Result<Trust, SimError> {
    let bad = |reason: String| SimError::Config(format!("--ca-cert {}: {reason}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in the file".into()));
    }
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let mut http = Vec::with_capacity(certs.len());
    for cert in certs {
        http.push(reqwest::Certificate::from_der(&cert).map_err(|e| bad(e.to_string()))?);
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ws = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Trust { ws: Arc::new(ws), http })
}
