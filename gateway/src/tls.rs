//! The listener certificate. It is loaded with each configuration snapshot and handed to
//! OpenSSL during every handshake through pingora's certificate callback, so a SIGHUP
//! swaps certificates without dropping a connection.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use pingora::listeners::TlsAccept;
use pingora::protocols::tls::TlsRef;
use pingora::tls::ext::{ssl_add_chain_cert, ssl_use_certificate, ssl_use_private_key};
use pingora::tls::pkey::{PKey, Private};
use pingora::tls::x509::X509;
use portcullis_config::TlsFiles;

pub struct TlsMaterial {
    pub leaf: X509,
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("{0} is not a PEM private key")]
    BadKey(String),
    #[error("the private key in {key} does not match the certificate in {cert}")]
    Mismatch { cert: String, key: String },
}

impl TlsMaterial {
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let cert_name = files.cert.display().to_string();
        let key_name = files.key.display().to_string();
        let cert_pem =
            std::fs::read(&files.cert).map_err(|e| TlsError::Read(cert_name.clone(), e))?;
        let key_pem = std::fs::read(&files.key).map_err(|e| TlsError::Read(key_name.clone(), e))?;
        let mut certs = X509::stack_from_pem(&cert_pem)
            .map_err(|_| TlsError::NoCertificate(cert_name.clone()))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(cert_name));
        }
        let leaf = certs.remove(0);
        let key =
            PKey::private_key_from_pem(&key_pem).map_err(|_| TlsError::BadKey(key_name.clone()))?;
        let matches = leaf
            .public_key()
            .map(|public| public.public_eq(&key))
            .unwrap_or(false);
        if !matches {
            return Err(TlsError::Mismatch {
                cert: cert_name,
                key: key_name,
            });
        }
        Ok(TlsMaterial {
            leaf,
            chain: certs,
            key,
        })
    }

    /// Seconds until the certificate expires (negative when it already has).
    pub fn expires_in_secs(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let Ok(now_asn1) = openssl::asn1::Asn1Time::from_unix(now) else {
            return i64::MAX;
        };
        match now_asn1.diff(self.leaf.not_after()) {
            Ok(diff) => i64::from(diff.days) * 86_400 + i64::from(diff.secs),
            Err(_) => i64::MAX,
        }
    }
}

/// Hands the current certificate to each handshake. `current` reads it from the running
/// snapshot (a reload swaps it); this module knows nothing of snapshots.
pub struct CertificateResolver {
    pub current: Box<dyn Fn() -> Option<Arc<TlsMaterial>> + Send + Sync>,
}

#[async_trait]
impl TlsAccept for CertificateResolver {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let Some(tls) = (self.current)() else {
            log::error!("TLS handshake on a listener without a certificate");
            return;
        };
        if let Err(e) =
            ssl_use_certificate(ssl, &tls.leaf).and_then(|_| ssl_use_private_key(ssl, &tls.key))
        {
            log::error!("cannot use the certificate: {e}");
            return;
        }
        for c in &tls.chain {
            if let Err(e) = ssl_add_chain_cert(ssl, c) {
                log::error!("cannot add a chain certificate: {e}");
            }
        }
    }
}
