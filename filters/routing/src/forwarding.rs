//! What a proxy does to the headers it passes on: hop-by-hop headers (RFC 9110 section
//! 7.6.1) describe one connection, so a proxy must not forward them (the `Connection` header
//! may name more); and the names of the headers the gateway itself sets on every upstream
//! request.

use http::header::{
    HeaderMap, HeaderName, CONNECTION, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

pub const KEEP_ALIVE: &str = "keep-alive";
pub const PROXY_CONNECTION: &str = "proxy-connection";

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";
pub const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
pub const X_FORWARDED_HOST: &str = "x-forwarded-host";
pub const X_REAL_IP: &str = "x-real-ip";
/// The request's id: read from a trusted client, sent upstream and answered to the client.
pub const X_REQUEST_ID: &str = "x-request-id";

/// Every header the gateway sets on each upstream request; client copies in any spelling are
/// removed (`ClientHeaders`).
pub const GATEWAY_HEADERS: &[&str] = &[
    X_FORWARDED_FOR,
    X_FORWARDED_PROTO,
    X_FORWARDED_HOST,
    X_REAL_IP,
    X_REQUEST_ID,
];

/// Every hop-by-hop header present in `headers`, including those the `Connection` header
/// lists. `Transfer-Encoding` is left to the HTTP layer, which re-frames the body itself; for
/// protocol upgrades (WebSocket) `Connection` and `Upgrade` must pass, so `upgrade` keeps them.
pub fn hop_by_hop(headers: &HeaderMap, upgrade: bool) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = Vec::new();
    let mut push = |name: HeaderName| {
        if !out.contains(&name) {
            out.push(name);
        }
    };
    // One pass over the names present (a handful), rather than one lookup per candidate:
    // this runs twice for every proxied request.
    for name in headers.keys() {
        if name == CONNECTION {
            for value in headers.get_all(CONNECTION) {
                let Ok(text) = value.to_str() else { continue };
                for token in text.split(',').map(str::trim) {
                    if token.is_empty() || (upgrade && token.eq_ignore_ascii_case("upgrade")) {
                        continue;
                    }
                    if let Ok(listed) = HeaderName::from_bytes(token.as_bytes()) {
                        if listed != TRANSFER_ENCODING {
                            push(listed);
                        }
                    }
                }
            }
            if !upgrade {
                push(CONNECTION);
            }
        } else if (name == UPGRADE && !upgrade)
            || name == PROXY_AUTHENTICATE
            || name == PROXY_AUTHORIZATION
            || name == TE
            || name == TRAILER
            || name.as_str() == KEEP_ALIVE
            || name.as_str() == PROXY_CONNECTION
        {
            push(name.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_and_fixed_hop_by_hop_headers_are_found() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "close, X-Secret-Hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(TE, "trailers".parse().unwrap());
        h.insert("x-normal", "1".parse().unwrap());
        let names: Vec<String> = hop_by_hop(&h, false)
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert!(names.contains(&"x-secret-hop".to_string()));
        assert!(names.contains(&"keep-alive".to_string()));
        assert!(names.contains(&"te".to_string()));
        assert!(names.contains(&"connection".to_string()));
        assert!(!names.contains(&"x-normal".to_string()));
    }

    #[test]
    fn upgrades_keep_connection_and_upgrade() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "Upgrade".parse().unwrap());
        h.insert(UPGRADE, "websocket".parse().unwrap());
        assert!(hop_by_hop(&h, true).is_empty());
        assert_eq!(hop_by_hop(&h, false).len(), 2);
    }

    /// The straightforward definition: every candidate looked up by name.
    fn by_lookup(headers: &HeaderMap, upgrade: bool) -> Vec<HeaderName> {
        let mut out: Vec<HeaderName> = Vec::new();
        for value in headers.get_all(CONNECTION) {
            for token in value.to_str().unwrap_or("").split(',') {
                let token = token.trim().to_ascii_lowercase();
                if token.is_empty() || (upgrade && token == "upgrade") {
                    continue;
                }
                if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
                    if name != TRANSFER_ENCODING && !out.contains(&name) {
                        out.push(name);
                    }
                }
            }
        }
        let mut fixed = vec![
            HeaderName::from_static(KEEP_ALIVE),
            HeaderName::from_static(PROXY_CONNECTION),
            PROXY_AUTHENTICATE,
            PROXY_AUTHORIZATION,
            TE,
            TRAILER,
        ];
        if !upgrade {
            fixed.extend([CONNECTION, UPGRADE]);
        }
        for name in fixed {
            if headers.contains_key(&name) && !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]

        /// The one-pass scan finds exactly the headers the lookup definition finds.
        #[test]
        fn one_pass_scan_matches_the_definition(
            names in proptest::collection::vec(
                proptest::sample::select(vec![
                    "connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                    "proxy-authorization", "te", "trailer", "upgrade", "transfer-encoding",
                    "x-hop", "x-normal", "host", "accept",
                ]),
                0..8,
            ),
            listed in proptest::collection::vec(
                proptest::sample::select(vec![
                    "close", "Upgrade", "X-Hop", "keep-alive", "transfer-encoding", "", " te ",
                    "bad header", "HOST",
                ]),
                0..5,
            ),
            upgrade: bool,
        ) {
            let mut h = HeaderMap::new();
            for name in &names {
                let value = if *name == "connection" { listed.join(",") } else { "1".to_string() };
                h.append(HeaderName::from_static(name), value.parse().unwrap());
            }
            let mut fast = hop_by_hop(&h, upgrade);
            let mut slow = by_lookup(&h, upgrade);
            fast.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            slow.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            proptest::prop_assert_eq!(fast, slow);
        }
    }
}
