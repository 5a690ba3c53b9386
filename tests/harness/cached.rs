//! A gateway with an edge-cached route in front of a scriptable origin, for the cache tests
//! (gateway_cache.rs, gateway_cache_failure.rs).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;

pub const SECRET: &str = "e2e-secret-e2e-secret-e2e-secret-0123456789";

pub fn bearer(sub: &str) -> String {
    format!("Bearer {}", super::hs256_token(sub, SECRET))
}

/// A gateway with `[cache]` (`cache_section`), one upstream `app` at `origin`, the cached
/// route `music` (`/api/music`, `route_cache`, plus `route_extra` lines) and the uncached
/// route `site` (`/`). `extra` goes before the routes (jwt, rate limits, breaker tables).
pub fn start(
    name: &str,
    origin: u16,
    cache_section: &str,
    route_cache: &str,
    route_extra: &str,
    extra: &str,
) -> Gateway {
    let (port, admin) = (free_port(), free_port());
    let config = (server_section(port, admin, "") + ADMIN_TOKEN_LINE)
        + &format!("[cache]\n{cache_section}\n\n")
        + &format!(
            "[upstreams.app]\npeers = [\"127.0.0.1:{origin}\"]\nconnect_timeout = \"500ms\"\nread_timeout = \"2s\"\n\n"
        )
        + extra
        + &format!(
            "\n[[routes]]\nname = \"music\"\npath_prefix = \"/api/music\"\nupstream = \"app\"\ncache = {{ {route_cache} }}\n{route_extra}\n\n"
        )
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n";
    Gateway::start(name, port, admin, &config, &[("E2E_JWT_SECRET", SECRET)])
}

pub fn cache_status(r: &Response) -> String {
    r.header("cache-status").unwrap_or_default().to_string()
}

pub fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// An origin answering `{path}#{n}` (n counts its answers) with these headers.
pub fn counting(headers: &'static [(&'static str, &'static str)]) -> Origin {
    let n = Arc::new(AtomicUsize::new(0));
    Origin::start(move |req| {
        let i = n.fetch_add(1, Ordering::SeqCst) + 1;
        OriginResponse::ok(format!("{}#{i}", req.target), headers)
    })
}
