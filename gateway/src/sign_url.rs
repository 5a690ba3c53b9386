//! `portcullis sign-url`: mints a signed media URL with a route's first key, exactly as the
//! gateway will verify it (the same normalised path, the same `portcullis-signed-url` code).
//! The application can mint its own instead (docs/reference.md gives the algorithm).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_routing::normalize;
use portcullis_signed_url::SignedUrls;

/// What `sign-url` was asked for.
pub struct Request<'a> {
    pub config: &'a Path,
    pub route: &'a str,
    pub ttl: &'a str,
    pub user: Option<&'a str>,
    pub path: &'a str,
}

/// Prints `PATH?exp=...&sig=...` (or `PATH&...` when PATH has a query) and exits 0; a
/// configuration problem exits 2, a bad request 1, each with one line naming the cause.
pub fn run(request: &Request<'_>) -> ExitCode {
    match sign(request) {
        Ok(url) => {
            println!("{url}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("portcullis sign-url: {message}");
            ExitCode::from(code)
        }
    }
}

fn sign(request: &Request<'_>) -> Result<String, (u8, String)> {
    let config = portcullis_config::load(request.config).map_err(|e| (2, e.to_string()))?;
    let route = config
        .routes
        .iter()
        .find(|r| r.name == request.route)
        .ok_or_else(|| (2, format!("no route is named `{}`", request.route)))?;
    let policy = route.signed_urls.as_ref().ok_or_else(|| {
        (
            2,
            format!("route `{}` has no `signed_urls` keys", route.name),
        )
    })?;
    let signer = SignedUrls::new(&policy.keys, policy.max_ttl).map_err(|e| (2, e.to_string()))?;
    let ttl =
        portcullis_config::parse_duration(request.ttl).map_err(|e| (1, format!("--ttl: {e}")))?;
    if ttl.is_zero() || ttl > policy.max_ttl {
        return Err((
            1,
            format!(
                "--ttl must be positive and at most the route's max_ttl ({}s)",
                policy.max_ttl.as_secs()
            ),
        ));
    }
    let (path, query) = match request.path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (request.path, None),
    };
    let normal = normalize(path).map_err(|e| (1, format!("{}: {e}", request.path)))?;
    if normal.as_str() != path {
        return Err((
            1,
            format!(
                "{path} is not in normal form: sign {} (the path the gateway will see)",
                normal.as_str()
            ),
        ));
    }
    let taken = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split('=').next())
        .find(|name| matches!(*name, "exp" | "sig" | "user"));
    if let Some(name) = taken {
        return Err((
            1,
            format!(
                "the query already has `{name}`, which the signature's parameters would clash with"
            ),
        ));
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let signed = signer
        .sign(normal.as_str(), now + ttl.as_secs(), request.user)
        .map_err(|e| (1, e.to_string()))?;
    Ok(match query {
        Some(q) if !q.is_empty() => format!("{}&{signed}", request.path),
        Some(_) => format!("{}{signed}", request.path),
        None => format!("{}?{signed}", request.path),
    })
}
