//! Who is asking, read once at the start of the request phase: the request id, the client IP
//! (the trusted-proxy rule), whether it came over HTTPS, and the request's one authority
//! reading (`:authority` over h2, `Host` over HTTP/1, normalised), which routing, the
//! upstream's `Host` and `X-Forwarded-Host` and the cache key all use.

use http::header::HOST;
use pingora::proxy::Session;
use portcullis_routing::request_id;

use crate::ctx::RequestCtx;
use portcullis_routing::forwarding::X_REQUEST_ID;

/// Request id, client IP (trusted-proxy rule), scheme and host.
pub fn identify(session: &Session, ctx: &mut RequestCtx) {
    let req = session.req_header();
    ctx.client.request_id = match req.headers.get(X_REQUEST_ID) {
        Some(id) if request_id::is_sane(id.as_bytes()) => {
            String::from_utf8_lossy(id.as_bytes()).into_owned()
        }
        _ => request_id::generate(),
    };
    let peer = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |a| {
            a.ip()
        });
    ctx.client.peer = portcullis_routing::client_ip::canonical(peer);
    let trusted = &ctx.snapshot.trusted;
    ctx.client.peer_trusted = trusted.contains(peer);
    ctx.client.ip = trusted.client_ip(
        peer,
        req.headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes()),
    );
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    ctx.client.https = tls
        || (ctx.client.peer_trusted
            && req
                .headers
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https")));
    ctx.client.authority = raw_authority(req).map(|a| normalize_authority(a, ctx.client.https));
    ctx.client.host = ctx.client.authority.as_deref().map(host_without_port);
}

/// The request's authority as sent: `:authority` over h2 (RFC 9113 section 8.3.1; pingora
/// refuses a stream whose `Host` differs from it before any phase runs), `Host` over HTTP/1
/// (RFC 9112 section 3.2; an absolute-form target's authority equals it, the intake sees to
/// that).
fn raw_authority(req: &pingora::http::RequestHeader) -> Option<&str> {
    let host = || req.headers.get(HOST).and_then(|h| h.to_str().ok());
    let target = || req.uri.authority().map(|a| a.as_str());
    if req.version == http::Version::HTTP_2 {
        target().or_else(host)
    } else {
        host().or_else(target)
    }
}

/// An authority in its one spelling (RFC 3986 section 6.2.3): lower case, no empty port, and
/// no port when it is the scheme's default (80, or 443 over HTTPS), so `Example.com:443` and
/// `example.com` over HTTPS are one site to routing, the cache key and the upstream alike.
pub fn normalize_authority(raw: &str, https: bool) -> String {
    let raw = raw.trim();
    let (host, port) = match raw.rsplit_once(':') {
        // `[v6]` alone has colons but no port.
        Some((host, port))
            if port.bytes().all(|b| b.is_ascii_digit())
                && (!host.contains(':') || host.ends_with(']')) =>
        {
            (host, Some(port))
        }
        _ => (raw, None),
    };
    let mut out = host.to_ascii_lowercase();
    let default = if https { 443 } else { 80 };
    match port.map(|p| (p, p.parse::<u16>())) {
        None | Some(("", _)) => {}
        Some((_, Ok(n))) if n == default => {}
        Some((text, Ok(_))) => {
            // The number without its leading zeros, as `u16`'s `Display` writes it.
            let digits = text.trim_start_matches('0');
            out.push(':');
            out.push_str(if digits.is_empty() { "0" } else { digits });
        }
        Some((text, Err(_))) => {
            out.push(':');
            out.push_str(text);
        }
    }
    out
}

/// `Host` lower-cased without its port (`[v6]:port` keeps the brackets' content).
pub fn host_without_port(host: &str) -> String {
    let host = host.trim();
    let bare = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(h, _)| h)
    };
    bare.to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::{host_without_port, normalize_authority};

    #[test]
    fn authorities_have_one_spelling() {
        for (raw, https, want) in [
            ("Music.Example.com", false, "music.example.com"),
            ("music.example.com:80", false, "music.example.com"),
            ("music.example.com:443", true, "music.example.com"),
            ("music.example.com:443", false, "music.example.com:443"),
            ("music.example.com:8080", true, "music.example.com:8080"),
            ("music.example.com:0080", false, "music.example.com"),
            ("music.example.com:", false, "music.example.com"),
            ("[::1]", false, "[::1]"),
            ("[::1]:80", false, "[::1]"),
            ("[::1]:8443", true, "[::1]:8443"),
            ("127.0.0.1:8080", false, "127.0.0.1:8080"),
        ] {
            assert_eq!(normalize_authority(raw, https), want, "{raw} {https}");
        }
    }

    #[test]
    fn hosts_lose_their_port_and_case() {
        assert_eq!(
            host_without_port("Music.Example.com:8080"),
            "music.example.com"
        );
        assert_eq!(host_without_port("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_without_port("[::1]:8080"), "::1");
    }
}
