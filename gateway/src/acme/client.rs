//! The ACME client's HTTPS: rustls with the system's roots, plus `directory_ca` when set
//! (a private CA such as step-ca, or pebble in tests). instant-acme signs and sends the
//! requests through it.

use std::sync::Arc;

use instant_acme::{Account, AccountBuilder, BodyWrapper};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

pub fn account_builder(settings: &portcullis_config::Acme) -> Result<AccountBuilder, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system root that rustls cannot use is skipped, as every client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = &settings.directory_ca {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!("{} holds no PEM certificate", path.display()));
        }
    }
    if roots.is_empty() {
        return Err("no root certificates to check the ACME server with (install ca-certificates, or set [acme] directory_ca)".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .enable_http2()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, BodyWrapper<bytes::Bytes>>(connector);
    Ok(Account::builder_with_http(Box::new(client)))
}
