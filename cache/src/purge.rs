//! `POST /cache/purge` on the admin listener: `{"path": "/x"}` removes every stored answer
//! for that normalised path (every host, query and variant), `{"prefix": "/x/"}` every answer
//! whose path starts with it. Answered `200 {"purged": N}`.
//!
//! Self-contained (a body in, a status and a JSON body out), so the admin listener can put it
//! behind its write-endpoint credential.

use serde::Deserialize;

use super::Store;

/// The largest purge request body accepted.
pub const MAX_BODY: usize = 4096;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    path: Option<String>,
    prefix: Option<String>,
}

/// Runs a purge request; returns the HTTP status and the JSON answer (for the admin
/// listener to encode like its every answer).
pub fn run(store: &Store, body: &[u8]) -> (u16, serde_json::Value) {
    let bad = |message: &str| {
        let body = serde_json::json!({ "error": "bad_request", "message": message });
        (400, body)
    };
    let request: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return bad(&format!(
                "expected {{\"path\": \"/x\"}} or {{\"prefix\": \"/x/\"}}: {e}"
            ))
        }
    };
    let purged = match (request.path, request.prefix) {
        (Some(path), None) => {
            let Ok(path) = portcullis_routing::normalize(&path) else {
                return bad("`path` is not a valid request path");
            };
            store.purge_path(path.as_str())
        }
        (None, Some(prefix)) if prefix.starts_with('/') => store.purge_prefix(&prefix),
        (None, Some(_)) => return bad("`prefix` must start with `/`"),
        _ => return bad("give exactly one of `path` and `prefix`"),
    };
    log::info!("cache purge removed {purged} objects");
    (200, serde_json::json!({ "purged": purged }))
}
