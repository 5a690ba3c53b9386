//! `[acme]`: certificates ordered and renewed by the gateway itself (RFC 8555).

use std::path::PathBuf;
use std::time::Duration;

/// A validated `[acme]` section. Present exactly when the file has one; then `server.tls_cert`
/// and `server.tls_key` are absent and `server.tls_listen` is not empty.
#[derive(Debug, Clone, PartialEq)]
pub struct Acme {
    /// The ACME server's directory, an `https://` URL.
    pub directory: String,
    /// Account contacts (`mailto:` URLs); may be empty.
    pub contact: Vec<String>,
    /// The names of the one certificate, lower-cased, without duplicates, in file order.
    pub domains: Vec<String>,
    /// Where the account key and the certificate with its key live (resolved against the
    /// configuration file's directory).
    pub state_dir: PathBuf,
    pub challenge: AcmeChallenge,
    /// Renew when the certificate expires sooner than this.
    pub renew_before: Duration,
    /// An extra root certificate (PEM) trusted for the ACME server's own HTTPS.
    pub directory_ca: Option<PathBuf>,
}

/// How the CA checks that the gateway controls the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// RFC 8555 section 8.3: a token served at `/.well-known/acme-challenge/` on the plain
    /// listeners (port 80 for a public CA).
    Http01,
    /// RFC 8737: a self-signed certificate presented in a TLS handshake that negotiates the
    /// `acme-tls/1` protocol on the TLS listeners (port 443 for a public CA).
    TlsAlpn01,
}

impl AcmeChallenge {
    /// The value as written in the file (and as ACME names the challenge type).
    pub fn name(self) -> &'static str {
        match self {
            AcmeChallenge::Http01 => "http-01",
            AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
        }
    }
}

/// The default `renew_before`: a third of a 90-day certificate's life, as the public CAs
/// advise.
pub const DEFAULT_RENEW_BEFORE: Duration = Duration::from_secs(30 * 86_400);
