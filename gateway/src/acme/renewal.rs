//! The background task: keeps a valid certificate served.
//!
//! Each round (every second with a shared store, else when something is due, at least once a
//! minute):
//!
//! 1. With a shared store, pick up the certificate another replica ordered (a newer one than
//!    ours is installed and written to `state_dir`), or share ours when the store has none.
//! 2. When the CA offers renewal information (RFC 9773), ask for the certificate's window
//!    (as often as the CA's `Retry-After` says, between 1 hour and 1 day).
//! 3. When the certificate is due (none yet; the ARI window's chosen instant; or
//!    `renew_before` ahead of its end, whichever comes first), order: with a shared store only
//!    the replica holding the lease does, the others wait for its result.
//!
//! A failed order is retried with backoff: an unreachable CA from 2 s doubling to 5 min, a
//! refusal (failed validation, rate limit) from 1 min doubling to 1 h, so a misconfigured
//! name never hammers the CA. The served certificate stays until a new one is installed.
//! A certificate whose whole life is shorter than `renew_before` is renewed at two thirds of
//! its life instead, so a renewal can never be due again the moment it lands (no loop).

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{Account, CertificateIdentifier, NewAccount};
use portcullis_ratelimit::shared::SharedStore;

use super::order::{self, OrderError, ORDER_DEADLINE};
use super::state_dir::{ACCOUNT_FILE, CERTIFICATE_FILE};
use super::{now, rfc3339, Acme, Served};
use crate::metrics::Metrics;

/// How often a replica with a shared store looks for a certificate another one ordered.
pub const PICK_UP_INTERVAL: Duration = Duration::from_secs(1);
/// The ordering lease outlives the longest order by a minute.
const LEASE_TERM: Duration = Duration::from_secs(ORDER_DEADLINE.as_secs() + 60);
/// Backoff after an unreachable CA, and after a refusal: (first, longest) in seconds.
const UNREACHABLE_BACKOFF: (i64, i64) = (2, 300);
const REFUSED_BACKOFF: (i64, i64) = (60, 3600);
/// Bounds on how often renewal information is asked for (seconds).
const ARI_MIN_INTERVAL: i64 = 3600;
const ARI_MAX_INTERVAL: i64 = 86_400;

#[derive(Default)]
struct Task {
    account: Option<Account>,
    /// The stored account was refused by the CA: create a new one.
    new_account: bool,
    /// Retry no earlier than this (unix s), and the last delay.
    retry_at: i64,
    delay: i64,
    ari: Ari,
    /// The shared store failed on the last round (logged once).
    store_failing: bool,
    warned_short_life: bool,
}

#[derive(Default)]
struct Ari {
    /// `Some(false)` once the CA said it offers none.
    supported: Option<bool>,
    next_check: i64,
    /// The chosen instant in the CA's window, for the certificate with this serial.
    renew_at: Option<(String, i64)>,
}

/// The renewal loop, for the life of the process on the admin runtime: `store` gives the
/// shared store of the configuration in force (replicas order through it), if any.
pub async fn run(acme: Arc<Acme>, metrics: &Metrics, store: impl Fn() -> Option<Arc<SharedStore>>) {
    for result in ["success", "error"] {
        metrics.acme_orders.with_label_values(&[result]);
    }
    if let Some(served) = acme.served() {
        metrics
            .acme_expiry
            .with_label_values::<&str>(&[])
            .set(served.info.not_after);
    }
    let mut task = Task::default();
    loop {
        let store = store();
        acme.set_store(store.clone());
        if let Some(store) = &store {
            pick_up(metrics, &acme, store, &mut task).await;
        }
        refresh_ari(&acme, store.as_deref(), &mut task).await;
        let due = due(&acme, &mut task);
        acme.update(|p| p.next_renewal = Some(due.max(task.retry_at)));
        let now = now();
        if now >= due && now >= task.retry_at {
            attempt(metrics, &acme, store.as_deref(), &mut task).await;
            continue;
        }
        let wait = if store.is_some() {
            PICK_UP_INTERVAL
        } else {
            let next = due.max(task.retry_at).min(task.ari.next_check.max(now + 1));
            Duration::from_secs(u64::try_from((next - now).clamp(1, 60)).unwrap_or(60))
        };
        tokio::time::sleep(wait).await;
    }
}

/// When the served certificate should be replaced (unix s); now when there is none.
fn due(acme: &Acme, task: &mut Task) -> i64 {
    let Some(served) = acme.served() else {
        return 0;
    };
    let info = &served.info;
    let life = (info.not_after - info.not_before).max(1);
    let renew_before = i64::try_from(acme.settings.renew_before.as_secs()).unwrap_or(i64::MAX);
    let by_config = if renew_before < life {
        info.not_after - renew_before
    } else {
        if !task.warned_short_life {
            log::warn!(
                "[acme] renew_before ({}s) is longer than the certificate's whole life ({life}s): renewing at two thirds of its life instead",
                renew_before
            );
            task.warned_short_life = true;
        }
        info.not_before + life * 2 / 3
    };
    match &task.ari.renew_at {
        Some((serial, at)) if *serial == info.serial => by_config.min(*at),
        _ => by_config,
    }
}

/// One ordering attempt (or, with a shared store, waiting for the replica that orders).
async fn attempt(metrics: &Metrics, acme: &Acme, store: Option<&SharedStore>, task: &mut Task) {
    let mut leased = false;
    if let Some(store) = store {
        match store.acme_lease(&acme.id, &acme.holder, LEASE_TERM).await {
            Ok(true) => leased = true,
            Ok(false) => {
                // Another replica orders; its certificate is picked up from the store.
                task.retry_at = now() + 1;
                return;
            }
            Err(e) if acme.served().is_none() => {
                log::warn!(
                    "[acme] the shared store is unreachable ({e}); ordering without the lease, since no certificate is served yet"
                );
            }
            Err(e) => {
                failed(
                    metrics,
                    acme,
                    task,
                    &format!("the shared store is unreachable: {e}"),
                    UNREACHABLE_BACKOFF,
                );
                return;
            }
        }
        // The previous lease holder may have just finished.
        if pick_up(metrics, acme, store, task).await && due(acme, task) > now() {
            let _ = store.acme_release(&acme.id, &acme.holder).await;
            return;
        }
    }
    let replaces = match (acme.served(), task.ari.supported) {
        (Some(served), Some(true)) => identifier(&served),
        _ => None,
    };
    log::info!(
        "[acme] ordering a certificate for {} from {} ({})",
        acme.settings.domains.join(", "),
        acme.settings.directory,
        acme.settings.challenge.name()
    );
    let result = match account(acme, store, task).await {
        Ok(account) => order::order(acme, &account, store, replaces).await,
        Err(e) => Err(e),
    };
    if leased {
        if let Some(store) = store {
            let _ = store.acme_release(&acme.id, &acme.holder).await;
        }
    }
    let bundle = match result {
        Ok(bundle) => bundle,
        Err(OrderError::UnknownAccount(e)) => {
            log::warn!("[acme] {e}; creating a new account");
            task.account = None;
            task.new_account = true;
            failed(
                metrics,
                acme,
                task,
                &format!("the ACME account is unknown to the server: {e}"),
                UNREACHABLE_BACKOFF,
            );
            return;
        }
        Err(e) => {
            let backoff = match e {
                OrderError::Refused(_) => REFUSED_BACKOFF,
                _ => UNREACHABLE_BACKOFF,
            };
            failed(metrics, acme, task, &e.to_string(), backoff);
            return;
        }
    };
    let served = match acme.accept(&bundle) {
        Ok(served) => served,
        Err(e) => {
            failed(
                metrics,
                acme,
                task,
                &format!("the issued certificate is unusable: {e}"),
                REFUSED_BACKOFF,
            );
            return;
        }
    };
    if let Err(e) = acme.state_dir.write(CERTIFICATE_FILE, &bundle) {
        // Served anyway; the next restart orders again.
        log::error!("[acme] cannot store the certificate: {e}");
    }
    if let Some(store) = store {
        if let Err(e) = store
            .acme_put(&format!("certificate:{}", acme.id), &bundle, None)
            .await
        {
            log::warn!("[acme] cannot share the certificate through the store: {e}");
        }
    }
    metrics.acme_orders.with_label_values(&["success"]).inc();
    acme.install(served, metrics);
    task.retry_at = 0;
    task.delay = 0;
    task.ari.renew_at = None;
    task.ari.next_check = 0;
    acme.update(|p| {
        p.last_issued_at = Some(now());
        p.last_error = None;
        p.last_error_at = None;
    });
}

fn failed(
    metrics: &Metrics,
    acme: &Acme,
    task: &mut Task,
    error: &str,
    (first, longest): (i64, i64),
) {
    task.delay = if task.delay < first {
        first
    } else {
        (task.delay * 2).min(longest)
    };
    task.retry_at = now() + task.delay;
    metrics.acme_orders.with_label_values(&["error"]).inc();
    log::error!(
        "[acme] ordering failed, retrying at {}: {error}",
        rfc3339(task.retry_at)
    );
    let error = error.to_string();
    acme.update(|p| {
        p.last_error = Some(error);
        p.last_error_at = Some(now());
    });
}

/// The ACME account: this run's, else the stored one (the shared store's, else
/// `state_dir`'s) when it belongs to the configured directory, else a new one, stored.
async fn account(
    acme: &Acme,
    store: Option<&SharedStore>,
    task: &mut Task,
) -> Result<Account, OrderError> {
    if let Some(account) = &task.account {
        return Ok(account.clone());
    }
    let shared_name = format!("account:{}", super::to_id(&acme.settings.directory));
    let mut stored = None;
    if !task.new_account {
        if let Some(store) = store {
            stored = store.acme_get(&shared_name).await.ok().flatten();
        }
        if stored.is_none() {
            stored = acme
                .state_dir
                .read(ACCOUNT_FILE)
                .map_err(|e| OrderError::Local(e.to_string()))?;
        }
        stored = stored.filter(|json| same_directory(json, &acme.settings.directory));
    }
    let builder = super::client::account_builder(&acme.settings).map_err(OrderError::Local)?;
    let account = match stored {
        Some(json) => {
            let credentials = serde_json::from_str(&json)
                .map_err(|e| OrderError::Local(format!("{ACCOUNT_FILE}: {e}")))?;
            let account = builder.from_credentials(credentials).await?;
            if let Some(store) = store {
                let _ = store.acme_put(&shared_name, &json, None).await;
            }
            account
        }
        None => {
            let contact: Vec<&str> = acme.settings.contact.iter().map(String::as_str).collect();
            let (account, credentials) = builder
                .create(
                    &NewAccount {
                        contact: &contact,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    acme.settings.directory.clone(),
                    None,
                )
                .await?;
            let json = serde_json::to_string(&credentials)
                .map_err(|e| OrderError::Local(e.to_string()))?;
            acme.state_dir
                .write(ACCOUNT_FILE, &json)
                .map_err(|e| OrderError::Local(e.to_string()))?;
            if let Some(store) = store {
                let _ = store.acme_put(&shared_name, &json, None).await;
            }
            log::info!("[acme] created the ACME account {}", account.id());
            account
        }
    };
    task.new_account = false;
    task.account = Some(account.clone());
    Ok(account)
}

fn same_directory(credentials: &str, directory: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(credentials)
        .ok()
        .and_then(|v| {
            v.get("directory")
                .and_then(|d| d.as_str())
                .map(|d| d == directory)
        })
        .unwrap_or(false)
}

/// Installs the store's certificate when it is newer than ours; shares ours when the store
/// has none. Whether a certificate was installed.
async fn pick_up(metrics: &Metrics, acme: &Acme, store: &SharedStore, task: &mut Task) -> bool {
    let name = format!("certificate:{}", acme.id);
    let found = match store.acme_get(&name).await {
        Ok(found) => {
            if task.store_failing {
                log::info!("[acme] the shared store answers again");
                task.store_failing = false;
            }
            found
        }
        Err(e) => {
            if !task.store_failing {
                log::warn!(
                    "[acme] the shared store is unreachable ({e}); serving what this replica has"
                );
                task.store_failing = true;
            }
            return false;
        }
    };
    let served = acme.served();
    match found {
        Some(bundle) if served.as_ref().is_some_and(|s| s.bundle == bundle) => false,
        Some(bundle) => match acme.accept(&bundle) {
            Ok(new) if served.as_ref().is_none_or(|s| newer(&new, s)) => {
                if let Err(e) = acme.state_dir.write(CERTIFICATE_FILE, &bundle) {
                    log::error!("[acme] cannot store the certificate: {e}");
                }
                acme.install(new, metrics);
                true
            }
            Ok(_) => false,
            Err(e) => {
                log::debug!("[acme] the shared store's certificate is not used: {e}");
                false
            }
        },
        None => {
            if let Some(served) = served {
                let _ = store.acme_put(&name, &served.bundle, None).await;
            }
            false
        }
    }
}

fn newer(a: &Served, b: &Served) -> bool {
    (a.info.not_before, a.info.not_after) > (b.info.not_before, b.info.not_after)
}

/// Asks the CA for the served certificate's renewal window (RFC 9773) when it is time to.
async fn refresh_ari(acme: &Acme, store: Option<&SharedStore>, task: &mut Task) {
    let now = now();
    if task.ari.supported == Some(false) || now < task.ari.next_check {
        return;
    }
    let Some(served) = acme.served() else {
        return;
    };
    let Some(id) = identifier(&served) else {
        task.ari.supported = Some(false);
        return;
    };
    // Only with an account already made: no account is created just to ask.
    let has_account = task.account.is_some()
        || acme.state_dir.read(ACCOUNT_FILE).ok().flatten().is_some()
        || store.is_some();
    if !has_account {
        task.ari.next_check = now + ARI_MIN_INTERVAL;
        return;
    }
    let account = match account(acme, store, task).await {
        Ok(account) => account,
        Err(_) => {
            task.ari.next_check = now + 60;
            return;
        }
    };
    match account.renewal_info(&id).await {
        Ok((info, retry_after)) => {
            let start = info.suggested_window.start.unix_timestamp();
            let end = info.suggested_window.end.unix_timestamp().max(start);
            let at = start + (rand::random::<f64>() * (end - start) as f64) as i64;
            task.ari.supported = Some(true);
            task.ari.renew_at = Some((served.info.serial.clone(), at));
            let wait = i64::try_from(retry_after.as_secs()).unwrap_or(ARI_MAX_INTERVAL);
            task.ari.next_check = now + wait.clamp(ARI_MIN_INTERVAL, ARI_MAX_INTERVAL);
        }
        Err(instant_acme::Error::Unsupported(_)) => task.ari.supported = Some(false),
        Err(e) => {
            log::debug!("[acme] renewal information unavailable: {e}");
            task.ari.next_check = now + ARI_MIN_INTERVAL;
        }
    }
}

/// RFC 9773 section 4.1: the certificate's Authority Key Identifier and serial number.
fn identifier(served: &Served) -> Option<CertificateIdentifier<'static>> {
    let leaf = &served.material.leaf;
    let aki = leaf.authority_key_id()?.as_slice().to_vec();
    let mut serial = leaf.serial_number().to_bn().ok()?.to_vec();
    // DER INTEGER content: a leading zero keeps a high first bit from reading as negative.
    if serial.first().is_none_or(|b| b & 0x80 != 0) {
        serial.insert(0, 0);
    }
    Some(
        CertificateIdentifier::new(
            rustls::pki_types::Der::from_slice(&aki),
            rustls::pki_types::Der::from_slice(&serial),
        )
        .into_owned(),
    )
}
