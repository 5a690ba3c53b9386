//! Client headers that must not reach the upstream: copies of what the gateway vouches for,
//! in every spelling the backend might read as the same name.
//!
//! CGI, WSGI, Rack and PHP hand headers to the application as `HTTP_X_USER_ID`, mapping `-`
//! and `_` to the same character, so a client's `X_User_Id: mallory` lands on top of the
//! gateway's verified `x-user-id: alice`. The gateway therefore reads `_` as `-` when it
//! removes client copies of the headers it sets, and decides for every other name holding
//! `_` by `server.underscore_headers` (nginx drops them by default, `underscores_in_headers`).
//!
//! Beyond the headers the gateway sets itself, three groups are removed:
//! - from every client, headers that make a backend read another path or method than the one
//!   the gateway routed and authorised (`X-Original-URL` and `X-Rewrite-URL` in IIS and
//!   Symfony, the method-override headers of Express's `method-override` and Rails);
//! - from peers that are not trusted proxies, claims about the client's address or the
//!   original request that backends are known to believe (`Forwarded`, RFC 7239, every
//!   `X-Forwarded-*`, `True-Client-IP`, `CF-Connecting-IP`, ...), and the host overrides
//!   that frameworks read like `X-Forwarded-Host` to build absolute links (`X-Host`,
//!   `X-HTTP-Host-Override`, `X-Original-Host`: the "web cache poisoning" headers, which put
//!   an attacker's name into password-reset links and cached pages). A trusted proxy's copies
//!   pass: it set them.

use http::header::{HeaderMap, HeaderName};
use portcullis_config::UnderscoreHeaders;

/// Removed from every client: they re-route or re-method the request behind the gateway.
const NEVER_FROM_CLIENTS: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Removed unless the peer is a trusted proxy (with every name starting `x-forwarded-`).
const ONLY_FROM_PROXIES: &[&str] = &[
    "forwarded",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-originating-ip",
    "x-host",
    "x-http-host-override",
    "x-original-host",
];

const FORWARDED_FAMILY: &str = "x-forwarded-";

/// The rules for one configuration snapshot.
#[derive(Debug, Clone)]
pub struct ClientHeaders {
    /// Lower-case names, with `-` separators, of headers the gateway sets on some upstream
    /// requests (forwarded claims, injected upstream headers): client copies go in every
    /// spelling, exact ones included.
    vouched: Vec<String>,
    /// Names the gateway sets on every upstream request, replacing the client's exact copy
    /// itself (it reads a trusted proxy's `X-Forwarded-For` first): only their twins go here.
    replaced: Vec<String>,
    underscore: UnderscoreHeaders,
}

impl ClientHeaders {
    /// `vouched` and `replaced` as described on the fields, in any case and spelling.
    pub fn new<'a>(
        vouched: impl IntoIterator<Item = &'a str>,
        replaced: impl IntoIterator<Item = &'a str>,
        underscore: UnderscoreHeaders,
    ) -> Self {
        ClientHeaders {
            vouched: canonical_names(vouched),
            replaced: canonical_names(replaced),
            underscore,
        }
    }

    /// With `underscore_headers = "reject"`: the first client header name holding `_`
    /// (the request is refused with 400).
    pub fn refused<'h>(&self, headers: &'h HeaderMap) -> Option<&'h HeaderName> {
        if self.underscore != UnderscoreHeaders::Reject {
            return None;
        }
        headers.keys().find(|n| n.as_str().contains('_'))
    }

    /// The client header names to remove before forwarding. Exact copies of the `replaced`
    /// headers are not listed: the code that sets each one replaces it.
    pub fn to_remove(&self, headers: &HeaderMap, peer_trusted: bool) -> Vec<HeaderName> {
        let mut out = Vec::new();
        for name in headers.keys() {
            let text = name.as_str();
            let underscored = text.contains('_');
            let remove = in_list(text, NEVER_FROM_CLIENTS)
                || self.vouched.iter().any(|o| same_name(text, o))
                || (!peer_trusted
                    && (in_list(text, ONLY_FROM_PROXIES) || starts_like(text, FORWARDED_FAMILY)))
                || (underscored
                    && (self.underscore != UnderscoreHeaders::Allow
                        || self.replaced.iter().any(|o| same_name(text, o))));
            if remove && !out.contains(name) {
                out.push(name.clone());
            }
        }
        out
    }
}

fn canonical_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut out: Vec<String> = names
        .into_iter()
        .map(|n| n.to_ascii_lowercase().replace('_', "-"))
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn in_list(name: &str, list: &[&str]) -> bool {
    list.iter().any(|n| same_name(name, n))
}

/// `name` (lower-case, as `HeaderName` keeps it) equals `canonical` with `_` read as `-`.
fn same_name(name: &str, canonical: &str) -> bool {
    name.len() == canonical.len()
        && name
            .bytes()
            .zip(canonical.bytes())
            .all(|(a, b)| a == b || (a == b'_' && b == b'-'))
}

fn starts_like(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len() && same_name(&name[..prefix.len()], prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for n in names {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                "v".parse().unwrap(),
            );
        }
        h
    }

    fn removed(rules: &ClientHeaders, names: &[&str], trusted: bool) -> Vec<String> {
        rules
            .to_remove(&headers(names), trusted)
            .iter()
            .map(|n| n.to_string())
            .collect()
    }

    fn rules(mode: UnderscoreHeaders) -> ClientHeaders {
        ClientHeaders::new(
            ["x-user-id", "X-Api-Key"],
            ["X-Forwarded-For", "x-request-id"],
            mode,
        )
    }

    #[test]
    fn twins_of_gateway_headers_go_in_every_mode_and_spelling() {
        for mode in [UnderscoreHeaders::Drop, UnderscoreHeaders::Allow] {
            let r = rules(mode);
            assert_eq!(
                removed(
                    &r,
                    &["X_User_Id", "x-user_id", "x_api_key", "x_request-id"],
                    true
                ),
                vec!["x_user_id", "x-user_id", "x_api_key", "x_request-id"],
                "{mode:?}"
            );
            assert_eq!(
                removed(&r, &["x_forwarded_for"], true),
                vec!["x_forwarded_for"]
            );
        }
    }

    #[test]
    fn exact_copies_go_unless_the_gateway_replaces_them_anyway() {
        let r = rules(UnderscoreHeaders::Allow);
        assert_eq!(
            removed(&r, &["x-user-id", "x-api-key", "x-request-id"], false),
            vec!["x-user-id", "x-api-key"]
        );
        assert!(removed(&r, &["x-forwarded-for"], true).is_empty());
    }

    #[test]
    fn host_overrides_go_from_clients_in_every_spelling_like_x_forwarded_host() {
        let r = rules(UnderscoreHeaders::Allow);
        let names = [
            "x-host",
            "x_host",
            "x-http-host-override",
            "x_original_host",
            "x-forwarded-host",
            "x_forwarded_host",
            "host",
        ];
        assert_eq!(
            removed(&r, &names, false),
            vec![
                "x-host",
                "x_host",
                "x-http-host-override",
                "x_original_host",
                "x-forwarded-host",
                "x_forwarded_host"
            ]
        );
        assert!(
            removed(&r, &["x-host", "x-forwarded-host"], true).is_empty(),
            "a trusted proxy's copies pass"
        );
    }

    #[test]
    fn other_underscored_names_follow_the_setting() {
        let names = ["x_custom", "accept"];
        assert_eq!(
            removed(&rules(UnderscoreHeaders::Drop), &names, true),
            vec!["x_custom"]
        );
        assert!(removed(&rules(UnderscoreHeaders::Allow), &names, true).is_empty());
        let reject = rules(UnderscoreHeaders::Reject);
        assert_eq!(
            reject.refused(&headers(&names)).map(|n| n.as_str()),
            Some("x_custom")
        );
        assert_eq!(
            rules(UnderscoreHeaders::Drop).refused(&headers(&names)),
            None
        );
        assert_eq!(reject.refused(&headers(&["accept"])), None);
    }

    #[test]
    fn path_and_method_overrides_never_pass() {
        let r = rules(UnderscoreHeaders::Allow);
        assert_eq!(
            removed(
                &r,
                &["x-original-url", "X_Rewrite_Url", "x-http-method-override"],
                true
            ),
            vec!["x-original-url", "x_rewrite_url", "x-http-method-override"]
        );
    }

    #[test]
    fn address_claims_pass_only_from_trusted_proxies() {
        let r = rules(UnderscoreHeaders::Allow);
        let names = [
            "forwarded",
            "x-forwarded-port",
            "x-forwarded-prefix",
            "x_forwarded_server",
            "true-client-ip",
            "cf-connecting-ip",
            "x-client-ip",
        ];
        assert_eq!(removed(&r, &names, false).len(), names.len());
        assert!(removed(&r, &names[..2], true).is_empty());
        assert!(removed(&r, &["accept", "x-forwardedx"], false).is_empty());
    }
}
