//! `[jwt]`.

use std::path::Path;
use std::time::Duration;

use crate::model::{Jwt, JwtAlgorithm, KeyFamily, TokenSource};
use crate::reader::OptionalKey;
use crate::reader::{Diag, Field, Section};
use crate::sections::server::file_path;
use crate::sections::sources::sources;
use crate::sections::upstreams::header_name;

pub(crate) fn jwt(mut s: Section, base: &Path, d: &mut Diag) -> Option<Jwt> {
    let algorithms = s
        .get("algorithms")
        .map_or(Some(vec![JwtAlgorithm::HS256]), |f| algorithms(&f, d));
    let secret_field = s.get("secret");
    let secret = secret_field.as_ref().map(|f| f.non_empty_string(d));
    let public_key_file = s
        .get_located("public_key_file", d)
        .map(|f| file_path(&f, base, d));
    let jwks_url = s.get("jwks_url").map(|f| {
        let url = f.non_empty_string(d)?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            f.error(d, "must be an http:// or https:// URL");
            return None;
        }
        Some(url)
    });
    let jwks_refresh = s
        .get("jwks_refresh")
        .map_or(Some(Duration::from_secs(600)), |f| f.positive_duration(d));
    let jwks_cooldown = s
        .get("jwks_cooldown")
        .map_or(Some(Duration::from_secs(30)), |f| f.duration(d));
    let jwks_timeout = s
        .get("jwks_timeout")
        .map_or(Some(Duration::from_secs(5)), |f| f.positive_duration(d));
    let issuer = s.get("issuer").map(|f| f.non_empty_string(d));
    let audience = s.get("audience").map_or(Some(vec![]), |f| {
        if f.node_is_string() {
            f.non_empty_string(d).map(|a| vec![a])
        } else {
            f.list(d, |f, d| f.non_empty_string(d))
        }
    });
    let leeway = s
        .get("leeway")
        .map_or(Some(Duration::from_secs(30)), |f| f.duration(d));
    let cache_capacity = s
        .get("cache_capacity")
        .map_or(Some(10_000), |f| f.int(d, 0, 100_000_000))
        .map(|n| n as usize);
    let cache_ttl = s
        .get("cache_ttl")
        .map_or(Some(Duration::from_secs(300)), |f| f.duration(d));
    let neg_ttl = s
        .get("negative_cache_ttl")
        .map_or(Some(Duration::from_secs(10)), |f| f.duration(d));
    let neg_cap = s
        .get("negative_cache_capacity")
        .map_or(Some(1_000), |f| f.int(d, 0, 10_000_000))
        .map(|n| n as usize);
    let user_claim = s
        .get("user_claim")
        .map_or(Some("sub".to_string()), |f| f.non_empty_string(d));
    let forward = s
        .get("forward_claims")
        .map_or(Some(vec![]), |f| forward_claims(&f, d));
    let sources = s
        .get("sources")
        .map_or(Some(vec![TokenSource::Header]), |f| {
            sources(&f, d, |_, _, _| true)
        });
    let forward_credentials = s
        .get("forward_credentials")
        .map_or(Some(true), |f| f.bool(d));
    let max_lifetime = s.get("max_token_lifetime").map(|f| f.positive_duration(d));
    let max_revocations = s
        .get("max_revocations")
        .map_or(Some(10_000), |f| f.int(d, 1, 1_000_000))
        .map(|n| n as usize);
    let span = s.span.clone();
    s.finish(d);

    let algorithms = algorithms?;
    let secret = secret.optional()?.map(String::into_bytes);
    let public_key_file = public_key_file.optional()?;
    let jwks_url = jwks_url.optional()?;
    let families: Vec<KeyFamily> = algorithms.iter().map(|a| a.family()).collect();
    if families.contains(&KeyFamily::Hmac) {
        match &secret {
            None => d.error(&span, "jwt.secret", "HS* algorithms need `secret`"),
            Some(secret) => {
                // RFC 7518 section 3.2: the key must be at least as long as the hash output.
                for alg in algorithms.iter().filter(|a| a.family() == KeyFamily::Hmac) {
                    let need = match alg {
                        JwtAlgorithm::HS384 => 48,
                        JwtAlgorithm::HS512 => 64,
                        _ => 32,
                    };
                    if secret.len() < need {
                        let at = secret_field
                            .as_ref()
                            .map_or(span.clone(), |f| f.span.clone());
                        d.error(&at, "jwt.secret", format!(
                            "{} needs a secret of at least {need} bytes (RFC 7518 section 3.2); this one has {}",
                            alg.name(), secret.len()));
                        break;
                    }
                }
            }
        }
    } else if secret.is_some() {
        d.error(
            &span,
            "jwt.secret",
            "`secret` is set but no HS* algorithm is allowed",
        );
    }
    let asymmetric = families.iter().any(|f| *f != KeyFamily::Hmac);
    if asymmetric && public_key_file.is_none() && jwks_url.is_none() {
        d.error(
            &span,
            "jwt.algorithms",
            "RS*/PS*/ES*/EdDSA need `public_key_file` or `jwks_url`",
        );
    }
    if !asymmetric && (public_key_file.is_some() || jwks_url.is_some()) {
        d.error(
            &span,
            "jwt.public_key_file",
            "a public key or JWKS is set but only HS* algorithms are allowed",
        );
    }
    Some(Jwt {
        algorithms,
        secret,
        public_key_file,
        jwks_url,
        jwks_refresh: jwks_refresh?,
        jwks_cooldown: jwks_cooldown?,
        jwks_timeout: jwks_timeout?,
        issuer: issuer.optional()?,
        audience: audience?,
        leeway: leeway?,
        cache_capacity: cache_capacity?,
        cache_ttl: cache_ttl?,
        negative_cache_ttl: neg_ttl?,
        negative_cache_capacity: neg_cap?,
        user_claim: user_claim?,
        forward_claims: forward?,
        sources: sources?,
        forward_credentials: forward_credentials?,
        max_token_lifetime: max_lifetime.optional()?,
        max_revocations: max_revocations?,
    })
}

fn algorithms(field: &Field, d: &mut Diag) -> Option<Vec<JwtAlgorithm>> {
    let list = field.list(d, |f, d| {
        let name = f.non_empty_string(d)?;
        if name.trim().eq_ignore_ascii_case("none") {
            f.error(
                d,
                "\"none\" is never accepted: unsigned tokens prove nothing",
            );
            return None;
        }
        JwtAlgorithm::from_name(&name)
            .ok_or_else(|| {
                let known: Vec<&str> = JwtAlgorithm::ALL.iter().map(|a| a.name()).collect();
                f.error(
                    d,
                    format!("unknown algorithm `{name}` (one of {})", known.join(", ")),
                )
            })
            .ok()
    })?;
    if list.is_empty() {
        field.error(d, "must allow at least one algorithm");
        return None;
    }
    Some(list)
}

fn forward_claims(field: &Field, d: &mut Diag) -> Option<Vec<(String, http::HeaderName)>> {
    let mut s = field.section(d)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (claim, value) in s.entries() {
        let header = value
            .non_empty_string(d)
            .and_then(|h| header_name(&value, &h, d));
        match header {
            Some(h) => out.push((claim.to_string(), h)),
            None => ok = false,
        }
    }
    s.finish(d);
    ok.then_some(out)
}
