//! The listener certificate. It is loaded with each configuration snapshot (or issued by
//! `[acme]`) and handed to OpenSSL during every handshake through pingora's certificate
//! callback, so a SIGHUP or a renewal swaps certificates without dropping a connection.
//!
//! With `[acme] challenge = "tls-alpn-01"`, a handshake that offers only the `acme-tls/1`
//! protocol (RFC 8737 section 3) is the CA's validation: it gets the challenge certificate for
//! its server name, never the served one, and completes no handshake when none is pending.

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
        Self::from_pem(&cert_pem, &cert_name, &key_pem, &key_name)
    }

    /// A chain (leaf first) and its private key, from PEM text; the names are for errors.
    pub fn from_pem(
        cert_pem: &[u8],
        cert_name: &str,
        key_pem: &[u8],
        key_name: &str,
    ) -> Result<Self, TlsError> {
        let (cert_name, key_name) = (cert_name.to_string(), key_name.to_string());
        let mut certs = X509::stack_from_pem(cert_pem)
            .map_err(|_| TlsError::NoCertificate(cert_name.clone()))?;
        if certs.is_empty() {
            return Err(TlsError::NoCertificate(cert_name));
        }
        let leaf = certs.remove(0);
        let key =
            PKey::private_key_from_pem(key_pem).map_err(|_| TlsError::BadKey(key_name.clone()))?;
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

/// The certificates of pending TLS-ALPN-01 challenges, by the server name the CA asks for.
#[async_trait]
pub trait AlpnChallenges: Send + Sync {
    async fn certificate(&self, server_name: &str) -> Option<Arc<TlsMaterial>>;
}

/// Hands the current certificate to each handshake. `current` reads it from the running
/// snapshot (a reload swaps it) or from `[acme]`; this module knows nothing of snapshots.
pub struct CertificateResolver {
    pub current: Box<dyn Fn() -> Option<Arc<TlsMaterial>> + Send + Sync>,
    /// With `[acme] challenge = "tls-alpn-01"`: the challenge certificates.
    pub challenges: Option<Arc<dyn AlpnChallenges>>,
}

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737 section 6.2).
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// Marks a handshake whose ClientHello offered `acme-tls/1` (set by the ClientHello callback,
/// read by the certificate callback: in TLS 1.2 OpenSSL selects ALPN only after asking for
/// the certificate).
fn acme_flag() -> Option<openssl::ex_data::Index<openssl::ssl::Ssl, bool>> {
    static INDEX: std::sync::OnceLock<Option<openssl::ex_data::Index<openssl::ssl::Ssl, bool>>> =
        std::sync::OnceLock::new();
    *INDEX.get_or_init(|| openssl::ssl::Ssl::new_ex_index().ok())
}

/// The raw ALPN extension of the ClientHello being processed (only inside the ClientHello
/// callback).
fn client_hello_alpn(ssl: &openssl::ssl::SslRef) -> Option<&[u8]> {
    use foreign_types::ForeignTypeRef;
    const ALPN_EXTENSION: u32 = 16; // RFC 7301 section 3.1
    let mut data: *const u8 = std::ptr::null();
    let mut len: usize = 0;
    // SAFETY: called only from the ClientHello callback, where OpenSSL allows
    // SSL_client_hello_get0_ext; on success `data` points at `len` bytes owned by the SSL
    // object, which outlives the returned borrow of `ssl`.
    let found = unsafe {
        openssl_sys::SSL_client_hello_get0_ext(ssl.as_ptr(), ALPN_EXTENSION, &mut data, &mut len)
    };
    if found != 1 || data.is_null() {
        return None;
    }
    // SAFETY: see above; `data` is non-null and valid for `len` bytes.
    Some(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Whether a wire-format ALPN list (RFC 7301 section 3.1) names `proto`.
fn offers(list: &[u8], proto: &[u8]) -> bool {
    let mut rest = list;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len);
        if tail.len() < len {
            return false;
        }
        if &tail[..len] == proto {
            return true;
        }
        rest = &tail[len..];
    }
    false
}

/// Prepares a TLS listener for TLS-ALPN-01: the ClientHello callback notes `acme-tls/1`
/// handshakes, and ALPN selects `acme-tls/1` for them, else h2, else HTTP/1.1 (as
/// `enable_h2` does).
pub fn accept_acme_tls_1(builder: &mut openssl::ssl::SslAcceptorBuilder) {
    use openssl::ssl::{AlpnError, ClientHelloResponse};
    builder.set_client_hello_callback(|ssl, _alert| {
        // The ClientHello's ALPN extension: a two-byte list length, then the list.
        let offered = client_hello_alpn(ssl)
            .is_some_and(|ext| ext.len() > 2 && offers(&ext[2..], ACME_TLS_1));
        if let (true, Some(index)) = (offered, acme_flag()) {
            ssl.set_ex_data(index, true);
        }
        Ok(ClientHelloResponse::SUCCESS)
    });
    builder.set_alpn_select_callback(|_, client| {
        const PREFERENCE: &[u8] = b"\x0aacme-tls/1\x02h2\x08http/1.1";
        openssl::ssl::select_next_proto(PREFERENCE, client).ok_or(AlpnError::NOACK)
    });
}

#[async_trait]
impl TlsAccept for CertificateResolver {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let challenge = acme_flag().and_then(|i| ssl.ex_data(i)).copied() == Some(true);
        let tls = match (&self.challenges, challenge) {
            (Some(challenges), true) => {
                let name = ssl
                    .servername(openssl::ssl::NameType::HOST_NAME)
                    .map(str::to_ascii_lowercase);
                match name {
                    Some(name) => challenges.certificate(&name).await,
                    None => None,
                }
            }
            (None, true) => None,
            (_, false) => (self.current)(),
        };
        let Some(tls) = tls else {
            log::debug!("TLS handshake refused: no certificate (yet) for it");
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
