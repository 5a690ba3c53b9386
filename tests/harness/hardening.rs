//! The hardening tests' fixture: a gateway with a protected route, an optional one and a
//! public catch-all, claims forwarded and an API key injected upstream; and the check that an
//! answer is the gateway's own generated one.

use super::*;

pub const HARDENING_SECRET: &str = "hardening-e2e-secret-0123456789abcdef";

pub fn hardening_token(sub: &str) -> String {
    hs256_token(sub, HARDENING_SECRET)
}

/// A gateway with a protected `/api/images`, an optional `/api/music`, a public catch-all,
/// claims forwarded as `x-user-id` and an API key injected upstream.
pub fn protected_gateway(name: &str, server_extra: &str, extra: &str) -> (Backend, Gateway) {
    let app = Backend::start("app");
    let (port, admin) = (free_port(), free_port());
    let config = server_section(port, admin, server_extra)
        + &format!(
            "[upstreams.app]\npeers = [\"127.0.0.1:{}\"]\nrequest_headers = {{ \"x-api-key\" = \"gateway-key\" }}\n\n",
            app.port
        )
        + &format!("[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"{HARDENING_SECRET}\"\nforward_claims = {{ sub = \"x-user-id\" }}\n\n")
        + extra
        + "[[routes]]\nname = \"images\"\npath_prefix = \"/api/images\"\nupstream = \"app\"\nauth = \"required\"\n\n"
        + "[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\nauth = \"optional\"\n\n"
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\nauth = \"none\"\n";
    let gw = Gateway::start(name, port, admin, &config, &[]);
    (app, gw)
}

/// The contract's generated answer: JSON error body, security headers, a request id, and
/// nothing of pingora's own.
pub fn assert_generated(resp: &Response, status: u16, code: &str, what: &str) {
    assert_eq!(
        (resp.status, resp.error_code().as_str()),
        (status, code),
        "{what}"
    );
    assert_eq!(
        resp.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert!(resp.header("content-security-policy").is_some(), "{what}");
    assert!(
        resp.header("x-request-id").is_some_and(|id| !id.is_empty()),
        "{what}"
    );
    assert_eq!(resp.header("server"), None, "{what}");
}
