//! `[server]` and `[admin]`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::model::{Admin, Server, TlsFiles, UnderscoreHeaders};
use crate::reader::{Diag, Field, OptionalKey, Section};

/// `acme`: whether the file has an `[acme]` section, which provides the TLS listeners'
/// certificate instead of `tls_cert`/`tls_key`.
pub(crate) fn server(
    section: Option<Section>,
    base: &Path,
    acme: bool,
    d: &mut Diag,
) -> Option<Server> {
    let Some(mut s) = section else {
        d.error(
            &None,
            "server",
            "required section [server] is missing (it needs at least `listen`)",
        );
        return None;
    };
    let listen = s
        .get("listen")
        .map(|f| f.list(d, |f, d| f.socket_addr(d)))
        .unwrap_or(Some(vec![]));
    let tls_listen = s
        .get("tls_listen")
        .map(|f| f.list(d, |f, d| f.socket_addr(d)))
        .unwrap_or(Some(vec![]));
    let cert = s
        .get("tls_cert")
        .and_then(|f| file_path(&f, base, d).map(|p| (p, f.location(d))));
    let key = s
        .get("tls_key")
        .and_then(|f| file_path(&f, base, d).map(|p| (p, f.location(d))));
    let https_redirect = s
        .get_located("https_redirect", d)
        .map_or(Some(false), |f| f.bool(d));
    let https_port = s
        .get("https_port")
        .map_or(Some(443), |f| f.int(d, 1, 65535))
        .map(|p| p as u16);
    let hosts = s
        .get("hosts")
        .map_or(Some(vec![]), |f| f.list(d, host_name));
    let trusted = s
        .get("trusted_proxies")
        .map_or(Some(vec![]), |f| f.list(d, ip_net));
    let grace = s
        .get("grace_period")
        .map_or(Some(Duration::from_secs(10)), |f| f.duration(d));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = s
        .get("threads")
        .map_or(Some(cores as i64), |f| f.int(d, 1, 1024))
        .map(|n| n as usize);
    let max_header_bytes = s
        .get("max_request_header_bytes")
        .map_or(Some(16 * 1024), |f| f.int(d, 1024, 1024 * 1024))
        .map(|n| n as usize);
    let max_headers = s
        .get("max_request_headers")
        .map_or(Some(100), |f| f.int(d, 8, 256))
        .map(|n| n as usize);
    let header_timeout = s
        .get_located("request_header_timeout", d)
        .map_or(Some(Duration::from_secs(10)), |f| f.positive_duration(d));
    let case_sensitive = s
        .get("case_sensitive_routing")
        .map_or(Some(false), |f| f.bool(d));
    let underscore_headers =
        s.get("underscore_headers")
            .map_or(Some(UnderscoreHeaders::Drop), |f| {
                match f.string(d)?.as_str() {
                    "drop" => Some(UnderscoreHeaders::Drop),
                    "reject" => Some(UnderscoreHeaders::Reject),
                    "allow" => Some(UnderscoreHeaders::Allow),
                    other => {
                        f.error(
                            d,
                            format!("`{other}` is not one of \"drop\", \"reject\", \"allow\""),
                        );
                        None
                    }
                }
            });
    let bounds = crate::sections::bounds::server_bounds(&mut s, d);
    let span = s.span.clone();
    s.finish(d);

    let (listen, tls_listen) = (listen?, tls_listen?);
    if listen.is_empty() && tls_listen.is_empty() {
        d.error(
            &span,
            "server.listen",
            "at least one listener is required (`listen` or `tls_listen`)",
        );
    }
    if acme {
        if let Some((_, at)) = cert.as_ref().or(key.as_ref()) {
            d.errors.push(crate::ConfigError {
                at: at.clone(),
                message: "[acme] provides the TLS certificate: remove `tls_cert` and `tls_key`, or the [acme] section".into(),
            });
            return None;
        }
    }
    let tls = match (tls_listen.is_empty(), cert, key) {
        (true, None, None) => None,
        (false, None, None) if acme => None,
        (false, Some((cert, cert_at)), Some((key, key_at))) => Some(TlsFiles {
            cert,
            key,
            cert_at,
            key_at,
        }),
        (false, _, _) => {
            d.error(
                &span,
                "server.tls_cert",
                "`tls_listen` needs both `tls_cert` and `tls_key`",
            );
            None
        }
        (true, _, _) => {
            d.error(
                &span,
                "server.tls_listen",
                "`tls_cert`/`tls_key` are set but there is no `tls_listen`",
            );
            None
        }
    };
    let https_redirect = https_redirect?;
    if https_redirect && tls_listen.is_empty() {
        // Behind a TLS-terminating proxy the redirect still makes sense; only warn in docs.
    }
    Some(Server {
        listen,
        tls_listen,
        tls,
        https_redirect,
        https_port: https_port?,
        hosts: hosts?,
        trusted_proxies: trusted?,
        grace_period: grace?,
        threads: threads?,
        max_request_header_bytes: max_header_bytes?,
        max_request_headers: max_headers?,
        request_header_timeout: header_timeout?,
        case_sensitive_routing: case_sensitive?,
        underscore_headers: underscore_headers?,
        bounds: bounds?,
    })
}

pub(crate) fn admin(section: Option<Section>, d: &mut Diag) -> Option<Admin> {
    let default: SocketAddr = ([127, 0, 0, 1], 9901).into();
    let Some(mut s) = section else {
        return Some(Admin {
            listen: default,
            token: None,
            hosts: Vec::new(),
        });
    };
    let listen = s.get("listen").map_or(Some(default), |f| f.socket_addr(d));
    let token = s.get("token").map(|f| {
        let token = f.non_empty_string(d)?;
        // A bearer credential that guards state changes: short ones are guessable.
        if token.len() < MIN_ADMIN_TOKEN {
            f.error(
                d,
                format!("must be at least {MIN_ADMIN_TOKEN} characters (use a random secret, e.g. `openssl rand -hex 32`)"),
            );
            return None;
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            f.error(d, "must be printable ASCII without spaces");
            return None;
        }
        Some(token)
    });
    // Names only: a port is matched against the listener's own (see the admin listener).
    let hosts = s
        .get("hosts")
        .map_or(Some(vec![]), |f| f.list(d, host_name));
    s.finish(d);
    Some(Admin {
        listen: listen?,
        token: token.optional()?,
        hosts: hosts?,
    })
}

/// Shortest `[admin] token` accepted.
const MIN_ADMIN_TOKEN: usize = 16;

/// A path relative to the configuration file's directory, which must exist.
pub(crate) fn file_path(field: &Field, base: &Path, d: &mut Diag) -> Option<PathBuf> {
    let text = field.non_empty_string(d)?;
    let path = base.join(&text);
    if !path.is_file() {
        field.error(
            d,
            format!("file `{}` does not exist or is not a file", path.display()),
        );
        return None;
    }
    Some(path)
}

/// A DNS host name (no port, no scheme), lower-cased.
pub(crate) fn host_name(field: &Field, d: &mut Diag) -> Option<String> {
    let text = field.non_empty_string(d)?.to_ascii_lowercase();
    let valid = text.len() <= 253
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !valid && text.parse::<std::net::IpAddr>().is_err() {
        field.error(
            d,
            format!("`{text}` is not a host name (no scheme, port or path)"),
        );
        return None;
    }
    Some(text)
}

/// A CIDR block or a single address.
fn ip_net(field: &Field, d: &mut Diag) -> Option<IpNet> {
    let text = field.non_empty_string(d)?;
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| {
            field.error(
                d,
                format!("`{text}` is not an IP address or CIDR block (e.g. \"10.0.0.0/8\")"),
            )
        })
        .ok()
}
