//! Route selection: the longest matching `path_prefix` on whole segments wins; within that
//! prefix, a route whose method filter admits the request. When the longest prefix matches
//! but no route there admits the method, the answer is 405 rather than a fall-through to a
//! shorter prefix, so a method filter can never route a request to a different upstream
//! with a weaker policy.

use std::sync::Arc;

use http::Method;
use portcullis_config::Route;

/// The outcome of routing one request.
#[derive(Debug)]
pub enum RouteMatch<'r> {
    /// The route, and its position in the slice the router was built from (so a caller can
    /// keep per-route state in a parallel table, resolved once per configuration).
    Found(&'r Arc<Route>, usize),
    /// The path matched, the method did not; `allow` lists the methods that would.
    MethodNotAllowed {
        allow: Vec<Method>,
    },
    NotFound,
}

/// Routes, pre-sorted for matching. Built once per configuration snapshot.
#[derive(Debug)]
pub struct Router {
    /// Sorted by prefix length, longest first; host-specific routes before host-less ones.
    entries: Vec<Entry>,
    case_sensitive: bool,
}

#[derive(Debug)]
struct Entry {
    /// Lower-cased unless matching is case-sensitive.
    prefix: String,
    route: Arc<Route>,
    /// Position in the routes the router was built from.
    index: usize,
}

impl Router {
    pub fn new(routes: &[Route], case_sensitive: bool) -> Self {
        let mut entries: Vec<Entry> = routes
            .iter()
            .enumerate()
            .map(|(index, r)| Entry {
                index,
                prefix: if case_sensitive {
                    r.path_prefix.clone()
                } else {
                    r.path_prefix.to_ascii_lowercase()
                },
                route: Arc::new(r.clone()),
            })
            .collect();
        entries.sort_by(|a, b| {
            b.prefix.len().cmp(&a.prefix.len()).then_with(|| {
                b.route
                    .hosts
                    .is_empty()
                    .cmp(&a.route.hosts.is_empty())
                    .reverse()
            })
        });
        Router {
            entries,
            case_sensitive,
        }
    }

    /// `path` is a normalised path; `host` is the lower-cased Host without port.
    pub fn find(&self, host: Option<&str>, method: &Method, path: &str) -> RouteMatch<'_> {
        let lowered;
        let path = if self.case_sensitive {
            path
        } else {
            lowered = path.to_ascii_lowercase();
            &lowered
        };
        let mut best_len = None;
        let mut allow: Vec<Method> = Vec::new();
        for entry in &self.entries {
            if let Some(len) = best_len {
                if entry.prefix.len() < len {
                    break;
                }
            }
            if !segment_prefix(path, &entry.prefix) || !host_matches(&entry.route.hosts, host) {
                continue;
            }
            best_len = Some(entry.prefix.len());
            match &entry.route.methods {
                None => return RouteMatch::Found(&entry.route, entry.index),
                Some(methods) if methods.contains(method) => {
                    return RouteMatch::Found(&entry.route, entry.index)
                }
                // HEAD is GET without a body (RFC 9110 section 9.3.2).
                Some(methods) if *method == Method::HEAD && methods.contains(&Method::GET) => {
                    return RouteMatch::Found(&entry.route, entry.index)
                }
                Some(methods) => allow.extend(methods.iter().cloned()),
            }
        }
        match best_len {
            Some(_) => {
                allow.dedup();
                RouteMatch::MethodNotAllowed { allow }
            }
            None => RouteMatch::NotFound,
        }
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.entries.iter().map(|e| &e.route)
    }
}

/// `/api/music` matches `/api/music` and `/api/music/...`, never `/api/musicx`.
fn segment_prefix(path: &str, prefix: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

fn host_matches(hosts: &[String], host: Option<&str>) -> bool {
    hosts.is_empty() || host.is_some_and(|h| hosts.iter().any(|allowed| allowed == h))
}

/// Rewrites the matched prefix: `/api/generate/x` with prefix `/api/generate` and replacement
/// `/v1/music` becomes `/v1/music/x`.
pub fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let rest = if prefix == "/" {
        path
    } else {
        path.get(prefix.len()..).unwrap_or("")
    };
    let replacement = replacement.strip_suffix('/').unwrap_or(replacement);
    let mut out = String::with_capacity(replacement.len() + rest.len() + 1);
    out.push_str(replacement);
    if !rest.is_empty() && !rest.starts_with('/') {
        out.push('/');
    }
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_config::AuthMode;

    fn route(name: &str, prefix: &str, methods: Option<Vec<Method>>, hosts: &[&str]) -> Route {
        Route {
            name: name.into(),
            path_prefix: prefix.into(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            methods,
            upstream: "u".into(),
            replace_prefix: None,
            auth: AuthMode::None,
            rate_limit: None,
            retry_non_idempotent: false,
            auth_sources: vec![],
            signed_urls: None,
            cache: None,
            bounds: Default::default(),
        }
    }

    fn name(m: RouteMatch) -> String {
        match m {
            RouteMatch::Found(r, _) => r.name.clone(),
            RouteMatch::MethodNotAllowed { allow } => format!("405 {allow:?}"),
            RouteMatch::NotFound => "404".into(),
        }
    }

    fn router() -> Router {
        Router::new(
            &[
                route("api", "/api", None, &[]),
                route("music", "/api/music", None, &[]),
                route("upload", "/upload", Some(vec![Method::POST]), &[]),
                route("get-x", "/x", Some(vec![Method::GET]), &[]),
                route("post-x", "/x", Some(vec![Method::POST]), &[]),
                route("admin-host", "/api", None, &["admin.example.com"]),
            ],
            false,
        )
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let r = router();
        assert_eq!(name(r.find(None, &Method::GET, "/api/music/1")), "music");
        assert_eq!(name(r.find(None, &Method::GET, "/api/music")), "music");
        assert_eq!(name(r.find(None, &Method::GET, "/api/musicx")), "api");
        assert_eq!(name(r.find(None, &Method::GET, "/nope")), "404");
    }

    #[test]
    fn matching_ignores_case_by_default() {
        let r = router();
        assert_eq!(name(r.find(None, &Method::GET, "/API/MUSIC/1")), "music");
        let strict = Router::new(&[route("music", "/api/music", None, &[])], true);
        assert_eq!(name(strict.find(None, &Method::GET, "/API/MUSIC")), "404");
    }

    #[test]
    fn method_filters_select_or_refuse() {
        let r = router();
        assert_eq!(name(r.find(None, &Method::POST, "/upload")), "upload");
        assert_eq!(name(r.find(None, &Method::GET, "/upload")), "405 [POST]");
        assert_eq!(name(r.find(None, &Method::GET, "/x")), "get-x");
        assert_eq!(name(r.find(None, &Method::HEAD, "/x")), "get-x");
        assert_eq!(name(r.find(None, &Method::POST, "/x/1")), "post-x");
        assert_eq!(name(r.find(None, &Method::DELETE, "/x")), "405 [GET, POST]");
    }

    #[test]
    fn host_specific_routes_come_first() {
        let r = router();
        assert_eq!(
            name(r.find(Some("admin.example.com"), &Method::GET, "/api/1")),
            "admin-host"
        );
        assert_eq!(
            name(r.find(Some("music.example.com"), &Method::GET, "/api/1")),
            "api"
        );
    }

    #[test]
    fn prefixes_are_replaced_on_segment_boundaries() {
        assert_eq!(
            replace_prefix("/api/generate/track", "/api/generate", "/v1/music"),
            "/v1/music/track"
        );
        assert_eq!(
            replace_prefix("/api/generate", "/api/generate", "/v1/music"),
            "/v1/music"
        );
        assert_eq!(
            replace_prefix("/api/generate/", "/api/generate", "/v1/music/"),
            "/v1/music/"
        );
        assert_eq!(replace_prefix("/old/x", "/old", "/"), "/x");
        assert_eq!(replace_prefix("/old", "/old", "/"), "/");
        assert_eq!(replace_prefix("/x/y", "/", "/base"), "/base/x/y");
    }

    /// The reading Tomcat, Jetty and Spring give a path: each segment's `;` parameters (raw or
    /// `%3B`) cut off, written independently of the normaliser.
    fn without_parameters(raw: &str) -> String {
        raw.split('/')
            .map(|seg| {
                let lower = seg.to_ascii_lowercase();
                let cut = [seg.find(';'), lower.find("%3b")]
                    .into_iter()
                    .flatten()
                    .min();
                &seg[..cut.unwrap_or(seg.len())]
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5_000))]

        /// For any path, the route chosen is the one its parameter-free reading chooses, or
        /// the request is refused: no spelling reaches a route through another.
        #[test]
        fn the_route_is_the_one_of_the_path_without_parameters(
            segments in proptest::collection::vec(
                "(api|API|music|Music|upload|x|\\.|\\.\\.|%2e%2e|%6Dusic|[a-z]{1,3})((;|%3[bB])[a-z=.;/]{0,3})?",
                1..6,
            ),
        ) {
            let raw = format!("/{}", segments.join("/"));
            let r = router();
            let chosen = crate::normalize(&raw).map(|p| name(r.find(None, &Method::GET, p.as_str())));
            let plain = crate::normalize(&without_parameters(&raw))
                .map(|p| name(r.find(None, &Method::GET, p.as_str())));
            match (&chosen, &plain) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b, "{}", raw),
                (Err(_), _) => {}
                (Ok(a), Err(e)) => proptest::prop_assert!(false, "{raw}: routed to {a}, plain reading refused ({e})"),
            }
        }
    }
}
