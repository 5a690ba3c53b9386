//! `[acme]`: the gateway orders its own certificate (RFC 8555), serves it on the TLS
//! listeners, and renews it in the background (RFC 9773 renewal information when the CA
//! offers it, else `renew_before`).
//!
//! - [`state_dir`]: the account and the certificate on disk, written atomically.
//! - [`challenge`]: pending HTTP-01 tokens and TLS-ALPN-01 certificates.
//! - [`order`]: one order, from new order to the downloaded chain.
//! - [`renewal`]: the background task: when to order, retries with backoff, the lease that
//!   lets one replica order for all, and picking up what another replica ordered.
//!
//! The served certificate is one `ArcSwapOption`: the TLS certificate callback loads it for
//! every handshake, so a renewal reaches new handshakes at once and connections already open
//! keep theirs. Until the first certificate exists, TLS handshakes (other than TLS-ALPN-01
//! validation) fail and the plain listeners serve as usual.

pub mod challenge;
mod client;
mod order;
pub mod renewal;
pub mod state_dir;

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use openssl::asn1::Asn1Time;
use openssl::nid::Nid;
use openssl::x509::X509Ref;

use crate::tls::{AlpnChallenges, TlsMaterial};
use challenge::Challenges;
use state_dir::{StateDir, StateDirError, CERTIFICATE_FILE};

/// The served certificate and what the status page and the schedule need to know of it.
pub struct Served {
    pub material: Arc<TlsMaterial>,
    pub info: CertInfo,
    /// The PEM bundle it was read from (key, then chain): what is stored and shared.
    pub bundle: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertInfo {
    pub names: Vec<String>,
    pub issuer: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
}

/// What the status page shows besides the certificate.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// When the next order is due (unix seconds); `None` before the schedule ran.
    pub next_renewal: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at: Option<i64>,
    /// When the last order succeeded (unix seconds).
    pub last_issued_at: Option<i64>,
}

pub struct Acme {
    pub settings: portcullis_config::Acme,
    pub state_dir: StateDir,
    served: ArcSwapOption<Served>,
    pub challenges: Challenges,
    progress: Mutex<Progress>,
    /// The shared store's name for this certificate (its directory and names).
    pub id: String,
    /// This replica's name in the ordering lease.
    pub holder: String,
    /// Set once the runtime knows the shared store, for the TLS-ALPN-01 lookups.
    store: ArcSwapOption<portcullis_ratelimit::shared::SharedStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum AcmeError {
    #[error("[acme] state_dir {0}")]
    StateDir(#[from] StateDirError),
}

impl Acme {
    /// Opens `state_dir` (refusing loose permissions) and loads the stored certificate when it
    /// is valid for the configured names, so it is served from the first handshake.
    pub fn open(settings: &portcullis_config::Acme) -> Result<Acme, AcmeError> {
        let state_dir = StateDir::open(&settings.state_dir)?;
        let mut names = settings.domains.clone();
        names.sort();
        let id = to_id(&format!("{}\n{}", settings.directory, names.join(",")));
        let acme = Acme {
            settings: settings.clone(),
            state_dir,
            served: ArcSwapOption::empty(),
            challenges: Challenges::default(),
            progress: Mutex::new(Progress::default()),
            id,
            holder: format!(
                "{}-{}-{:08x}",
                hostname(),
                std::process::id(),
                rand::random::<u32>()
            ),
            store: ArcSwapOption::empty(),
        };
        if let Some(bundle) = acme.state_dir.read(CERTIFICATE_FILE)? {
            match acme.accept(&bundle) {
                Ok(served) => {
                    log::info!(
                        "[acme] serving the stored certificate for {} (expires {})",
                        served.info.names.join(", "),
                        rfc3339(served.info.not_after)
                    );
                    acme.served.store(Some(Arc::new(served)));
                }
                Err(e) => log::warn!(
                    "[acme] the stored certificate is not used ({e}); a new one is ordered"
                ),
            }
        }
        Ok(acme)
    }

    /// The certificate new handshakes get.
    pub fn certificate(&self) -> Option<Arc<TlsMaterial>> {
        self.served.load().as_ref().map(|s| s.material.clone())
    }

    pub fn served(&self) -> Option<Arc<Served>> {
        self.served.load_full()
    }

    pub fn progress(&self) -> Progress {
        self.progress
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut Progress)) {
        f(&mut self.progress.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn set_store(&self, store: Option<Arc<portcullis_ratelimit::shared::SharedStore>>) {
        let same = match (self.store.load().as_ref(), &store) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same {
            self.store.store(store);
        }
    }

    pub fn store(&self) -> Option<Arc<portcullis_ratelimit::shared::SharedStore>> {
        self.store.load_full()
    }

    /// Parses a bundle and checks it is a certificate this configuration may serve: its key
    /// matches, it names every configured domain, and it has not expired.
    pub fn accept(&self, bundle: &str) -> Result<Served, String> {
        let material = TlsMaterial::from_pem(
            bundle.as_bytes(),
            CERTIFICATE_FILE,
            bundle.as_bytes(),
            CERTIFICATE_FILE,
        )
        .map_err(|e| e.to_string())?;
        let issued_by = bundle
            .lines()
            .next()
            .and_then(|l| l.strip_prefix(order::DIRECTORY_LINE));
        if let Some(other) = issued_by.filter(|d| *d != self.settings.directory) {
            return Err(format!("it was issued through another directory ({other})"));
        }
        let info = CertInfo::of(&material.leaf)?;
        if let Some(missing) = self
            .settings
            .domains
            .iter()
            .find(|d| !info.names.contains(d))
        {
            return Err(format!("it does not name {missing}"));
        }
        if info.not_after <= now() {
            return Err(format!("it expired at {}", rfc3339(info.not_after)));
        }
        Ok(Served {
            material: Arc::new(material),
            info,
            bundle: bundle.to_string(),
        })
    }

    /// Serves `served` to new handshakes from now on.
    fn install(&self, served: Served, metrics: &crate::metrics::Metrics) {
        metrics
            .acme_expiry
            .with_label_values::<&str>(&[])
            .set(served.info.not_after);
        log::info!(
            "[acme] now serving the certificate {} for {} (issuer {}, expires {})",
            served.info.serial,
            served.info.names.join(", "),
            served.info.issuer,
            rfc3339(served.info.not_after)
        );
        self.served.store(Some(Arc::new(served)));
    }
}

#[async_trait]
impl AlpnChallenges for Acme {
    async fn certificate(&self, server_name: &str) -> Option<Arc<TlsMaterial>> {
        let store = self.store();
        self.challenges.alpn(server_name, store.as_deref()).await
    }
}

impl CertInfo {
    pub fn of(leaf: &X509Ref) -> Result<CertInfo, String> {
        let names = leaf
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                    .collect()
            })
            .unwrap_or_default();
        let issuer = [Nid::COMMONNAME, Nid::ORGANIZATIONNAME]
            .iter()
            .find_map(|nid| {
                leaf.issuer_name()
                    .entries_by_nid(*nid)
                    .next()
                    .and_then(|e| e.data().to_string().ok())
            })
            .unwrap_or_default();
        let serial = leaf
            .serial_number()
            .to_bn()
            .and_then(|bn| bn.to_hex_str().map(|s| s.to_string()))
            .map_err(|e| e.to_string())?;
        Ok(CertInfo {
            names,
            issuer,
            not_before: unix(leaf.not_before())?,
            not_after: unix(leaf.not_after())?,
            serial,
        })
    }
}

fn unix(t: &openssl::asn1::Asn1TimeRef) -> Result<i64, String> {
    let epoch = Asn1Time::from_unix(0).map_err(|e| e.to_string())?;
    let diff = epoch.diff(t).map_err(|e| e.to_string())?;
    Ok(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

pub fn now() -> i64 {
    i64::try_from(crate::clock::unix_secs()).unwrap_or(i64::MAX)
}

/// RFC 3339 in UTC for unix seconds.
pub fn rfc3339(secs: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).unwrap_or(0));
    crate::access_log::timestamp(t)
}

fn to_id(text: &str) -> String {
    challenge::to_hex(&openssl::sha::sha256(text.as_bytes())[..8])
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "replica".into())
}

/// `/readyz`'s body: ready, and with `[acme]` whether a certificate is loaded (the answer stays
/// 200 either way: the plain listeners serve, and a load balancer that took the replica out
/// would keep the CA's HTTP-01 validation from reaching it).
pub fn readiness(acme: Option<&Acme>) -> &'static str {
    match acme {
        None => "ready\n",
        Some(acme) if acme.served().is_some() => "ready\ncertificate: loaded\n",
        Some(_) => "ready\ncertificate: none yet (TLS listeners complete no handshake until the ACME order succeeds)\n",
    }
}
