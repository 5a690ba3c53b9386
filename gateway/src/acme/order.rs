//! One order (RFC 8555 section 7.4): new order, one challenge per name, finalize with a CSR
//! for a fresh ECDSA P-256 key, download the chain. Bounded by [`ORDER_DEADLINE`].

use std::time::Duration;

use instant_acme::{
    Account, AuthorizationStatus, CertificateIdentifier, ChallengeType, Identifier, NewOrder,
    OrderStatus, RetryPolicy,
};
use portcullis_config::AcmeChallenge;
use portcullis_ratelimit::shared::SharedStore;

use super::challenge::{to_hex, CHALLENGE_TTL};
use super::Acme;

/// The first line of a stored bundle names the directory that issued it (PEM readers skip
/// text before the first `-----BEGIN`), so a certificate from another CA, such as staging
/// before production, is not served after `directory` changes.
pub const DIRECTORY_LINE: &str = "directory: ";

/// The longest one order may take, validation included.
pub const ORDER_DEADLINE: Duration = Duration::from_secs(180);

/// Why an order failed, which decides how soon it is tried again.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The ACME server could not be reached or answered garbage: retried soon.
    #[error("the ACME server is unreachable: {0}")]
    Unreachable(String),
    /// The ACME server refused (validation failed, rate limited, bad request): retried slowly.
    #[error("the ACME server refused: {0}")]
    Refused(String),
    /// The account is unknown to the server (a test CA restarted, an account deactivated).
    #[error("the ACME account is not known to the server: {0}")]
    UnknownAccount(String),
    #[error("{0}")]
    Local(String),
}

impl From<instant_acme::Error> for OrderError {
    fn from(e: instant_acme::Error) -> Self {
        match e {
            instant_acme::Error::Api(problem) => {
                let text = problem.to_string();
                if problem
                    .r#type
                    .as_deref()
                    .is_some_and(|t| t.ends_with(":accountDoesNotExist"))
                {
                    OrderError::UnknownAccount(text)
                } else {
                    OrderError::Refused(text)
                }
            }
            instant_acme::Error::Timeout(_) => {
                OrderError::Refused("the order did not become ready in time".into())
            }
            other => OrderError::Unreachable(other.to_string()),
        }
    }
}

/// Orders one certificate for every name; returns the PEM bundle (key, then chain).
pub async fn order(
    acme: &Acme,
    account: &Account,
    store: Option<&SharedStore>,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<String, OrderError> {
    let run = run(acme, account, store, replaces);
    let result = match tokio::time::timeout(ORDER_DEADLINE, run).await {
        Ok(result) => result,
        Err(_) => Err(OrderError::Refused(format!(
            "the order took longer than {ORDER_DEADLINE:?}"
        ))),
    };
    acme.challenges.clear();
    result
}

async fn run(
    acme: &Acme,
    account: &Account,
    store: Option<&SharedStore>,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<String, OrderError> {
    let settings = &acme.settings;
    let identifiers: Vec<Identifier> = settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(replaces) = replaces {
        new_order = new_order.replaces(replaces);
    }
    let mut order = account.new_order(&new_order).await?;
    let kind = match settings.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => {
                return Err(OrderError::Refused(format!(
                    "an authorization is {other:?}"
                )))
            }
        }
        let name = authz.identifier().to_string();
        let mut challenge = authz.challenge(kind.clone()).ok_or_else(|| {
            OrderError::Refused(format!(
                "the server offers no {} challenge for {name}",
                settings.challenge.name()
            ))
        })?;
        let key_authorization = challenge.key_authorization();
        match settings.challenge {
            AcmeChallenge::Http01 => {
                let token = challenge.token.clone();
                acme.challenges.add_http(&token, key_authorization.as_str());
                if let Some(store) = store {
                    publish(store, &format!("http:{token}"), key_authorization.as_str()).await?;
                }
            }
            AcmeChallenge::TlsAlpn01 => {
                let digest = key_authorization.digest();
                acme.challenges
                    .add_alpn(&name, digest.as_ref())
                    .map_err(OrderError::Local)?;
                if let Some(store) = store {
                    publish(store, &format!("alpn:{name}"), &to_hex(digest.as_ref())).await?;
                }
            }
        }
        challenge.set_ready().await?;
    }
    let patience = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90));
    match order.poll_ready(&patience).await? {
        OrderStatus::Ready => {}
        status => {
            return Err(OrderError::Refused(format!(
                "the order is {status:?} after validation{}",
                failed_challenges(&mut order).await
            )))
        }
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| OrderError::Local(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(settings.domains.clone())
        .map_err(|e| OrderError::Local(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let csr = params
        .serialize_request(&key)
        .map_err(|e| OrderError::Local(e.to_string()))?;
    order.finalize_csr(csr.der()).await?;
    let chain = order.poll_certificate(&patience).await?;
    Ok(format!(
        "{DIRECTORY_LINE}{}\n{}{}",
        settings.directory,
        key.serialize_pem(),
        chain
    ))
}

async fn publish(store: &SharedStore, name: &str, value: &str) -> Result<(), OrderError> {
    store
        .acme_put(name, value, Some(CHALLENGE_TTL))
        .await
        .map_err(|e| OrderError::Local(format!("cannot share the challenge: {e}")))
}

/// The CA's own words on why validation failed, for the log and the status page.
async fn failed_challenges(order: &mut instant_acme::Order) -> String {
    let mut out = String::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authz)) = authorizations.next().await {
        if let Ok(state) = authz.refresh().await {
            for c in &state.challenges {
                if let Some(problem) = &c.error {
                    out.push_str(&format!(": {problem}"));
                }
            }
        }
    }
    out
}
