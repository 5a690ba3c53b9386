//! `[cache]` and a route's `cache = { ... }`.

use std::time::Duration;

use http::HeaderName;

use crate::model::{CacheSettings, RouteCache, MAX_OBJECT_SIZE};
use crate::reader::{Diag, Field, Section};

/// The smallest `memory`: below this the store cannot hold a catalogue answer and its index.
const MIN_MEMORY: usize = 1024 * 1024;

const DEFAULT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_MAX_OBJECT_SIZE: usize = 8 * 1024 * 1024;
/// The longest freshness a route may grant answers that name none (an operator's guess about
/// someone else's content should not outlive a day).
const LONGEST_TTL: Duration = Duration::from_secs(86_400);
/// Request headers that may not split the key: each holds a credential or a per-user value,
/// so a key split on them is one cache entry per user (the credential rule decides instead).
const NOT_VARY: &[&str] = &["authorization", "cookie", "proxy-authorization"];

pub(crate) fn settings(section: Option<Section>, d: &mut Diag) -> Option<CacheSettings> {
    let defaults = CacheSettings::default();
    let Some(mut s) = section else {
        return Some(defaults);
    };
    let memory = s.get("memory").map_or(Some(defaults.memory), |f| {
        let bytes = f.size(d)?;
        if bytes < MIN_MEMORY {
            f.error(d, "must be at least \"1MiB\"");
            return None;
        }
        Some(bytes)
    });
    let lock_timeout = s
        .get("lock_timeout")
        .map_or(Some(defaults.lock_timeout), |f| f.positive_duration(d));
    s.finish(d);
    Some(CacheSettings {
        memory: memory?,
        lock_timeout: lock_timeout?,
    })
}

pub(crate) fn route_cache(field: &Field, d: &mut Diag) -> Option<RouteCache> {
    let mut s = field.section(d)?;
    let ttl = s.get("ttl").map_or(Some(DEFAULT_TTL), |f| {
        let ttl = f.duration(d)?;
        if ttl > LONGEST_TTL {
            f.error(d, "must be at most \"1d\"");
            return None;
        }
        Some(ttl)
    });
    let max_object_size = s
        .get("max_object_size")
        .map_or(Some(DEFAULT_MAX_OBJECT_SIZE), |f| {
            let size = f.size(d)?;
            if size == 0 || size > MAX_OBJECT_SIZE {
                f.error(
                    d,
                    "must be between \"1B\" and \"63MiB\" (larger objects stream through uncached)",
                );
                return None;
            }
            Some(size)
        });
    let swr = s
        .get("stale_while_revalidate")
        .map_or(Some(Duration::ZERO), |f| f.duration(d));
    let sie = s
        .get("stale_if_error")
        .map_or(Some(Duration::ZERO), |f| f.duration(d));
    let vary = s.get("vary").map_or(Some(vec![]), |f| vary(&f, d));
    s.finish(d);
    Some(RouteCache {
        ttl: ttl?,
        max_object_size: max_object_size?,
        stale_while_revalidate: swr?,
        stale_if_error: sie?,
        vary: vary?,
    })
}

fn vary(field: &Field, d: &mut Diag) -> Option<Vec<HeaderName>> {
    let names = field.list(d, |f, d| {
        let text = f.non_empty_string(d)?.to_ascii_lowercase();
        let name = HeaderName::from_bytes(text.as_bytes())
            .map_err(|_| f.error(d, format!("`{text}` is not a header name")))
            .ok()?;
        if NOT_VARY.contains(&name.as_str()) {
            f.error(
                d,
                format!(
                    "`{name}` holds credentials: the cache never splits on it (responses to \
                     credentialed requests are shared only when the upstream marks them public)"
                ),
            );
            return None;
        }
        Some(name)
    })?;
    let mut seen = Vec::with_capacity(names.len());
    for name in names {
        if seen.contains(&name) {
            field.error(d, format!("`{name}` is listed twice"));
            return None;
        }
        seen.push(name);
    }
    Some(seen)
}
