//! TLS for clients (`[server.tls]`): the rustls server configuration, built
//! once at start-up so that a bad certificate or key stops the gateway with a
//! clear message instead of failing every handshake.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use futures_rustls::pki_types::pem::PemObject;
use futures_rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::{self, crypto::ring};
use futures_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// The acceptor for the TLS listener.
pub fn acceptor(config: &TlsConfig) -> Result<TlsAcceptor> {
    let cert_pem = std::fs::read(&config.cert)
        .with_context(|| format!("cannot read server.tls.cert {}", config.cert.display()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("server.tls.cert {}: {e:?}", config.cert.display()))?;
    if certs.is_empty() {
        bail!(
            "server.tls.cert {}: no PEM certificate in it",
            config.cert.display()
        );
    }
    let key_pem = std::fs::read(&config.key)
        .with_context(|| format!("cannot read server.tls.key {}", config.key.display()))?;
    // The error never quotes the key file's content.
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        anyhow!(
            "server.tls.key {}: no usable PEM private key ({e:?})",
            config.key.display()
        )
    })?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("server.tls.cert and server.tls.key do not make a usable pair")?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}
