//! `[rate_limits.NAME]` and `[rate_limit_store]`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::model::{
    RateLimitStore, RatePolicy, RedisCluster, RedisStore, StoreKind, DEFAULT_IPV6_PREFIX,
};
use crate::reader::Field;
use crate::reader::{Diag, Section};
use crate::sections::upstreams::valid_name;

pub(crate) fn policies(section: Option<Section>, d: &mut Diag) -> BTreeMap<String, RatePolicy> {
    let mut out = BTreeMap::new();
    let Some(mut s) = section else { return out };
    for (name, field) in s.entries() {
        if !valid_name(name) || name == "off" {
            d.error(
                &field.key_span,
                &field.path,
                "policy names use letters, digits, `-` and `_`, and `off` is reserved",
            );
            continue;
        }
        let Some(mut p) = field.section(d) else {
            continue;
        };
        let per_ip = p.get("per_ip").map(|f| f.rate(d));
        let per_user = p.get_located("per_user", d).map(|f| f.rate(d));
        let ipv6_prefix = p
            .get("ipv6_prefix")
            .map_or(Some(i64::from(DEFAULT_IPV6_PREFIX)), |f| f.int(d, 48, 128));
        let span = p.span.clone();
        p.finish(d);
        if per_ip.is_none() && per_user.is_none() {
            d.error(
                &span,
                &field.path,
                "a policy needs `per_ip`, `per_user` or both",
            );
            continue;
        }
        let (Some(per_ip), Some(per_user), Some(ipv6_prefix)) = (
            per_ip.map_or(Some(None), |r| r.map(Some)),
            per_user.map_or(Some(None), |r| r.map(Some)),
            ipv6_prefix,
        ) else {
            continue;
        };
        out.insert(
            name.to_string(),
            RatePolicy {
                name: name.to_string(),
                per_ip,
                per_user,
                ipv6_prefix: ipv6_prefix as u8,
            },
        );
    }
    s.finish(d);
    out
}

pub(crate) fn store(section: Option<Section>, d: &mut Diag) -> Option<RateLimitStore> {
    let default_keys = 1_000_000;
    let Some(mut s) = section else {
        return Some(RateLimitStore {
            kind: StoreKind::Memory,
            max_keys: default_keys,
        });
    };
    let kind = s.get("kind").map_or(Some("memory".to_string()), |f| {
        let k = f.string(d)?;
        if !["memory", "redis", "redis-cluster"].contains(&k.as_str()) {
            f.error(
                d,
                format!("`{k}` is not one of \"memory\", \"redis\", \"redis-cluster\""),
            );
            return None;
        }
        Some(k)
    });
    let url_field = s.get_located("url", d);
    let url = url_field.as_ref().map(|f| redis_url(f, d));
    let nodes_field = s.get_located("nodes", d);
    let nodes = nodes_field.as_ref().map(|f| {
        let nodes = f.list(d, |f, d| {
            let u = redis_url(f, d)?;
            if !u.starts_with("redis://") {
                f.error(d, "cluster nodes are redis:// URLs");
                return None;
            }
            Some(u)
        })?;
        if nodes.is_empty() {
            f.error(d, "must name at least one seed node");
            return None;
        }
        Some(nodes)
    });
    let timeout = s
        .get_located("timeout", d)
        .map_or(Some(Duration::from_millis(50)), |f| f.positive_duration(d));
    let prefix = s
        .get_located("key_prefix", d)
        .map_or(Some("portcullis".to_string()), |f| {
            let p = f.non_empty_string(d)?;
            // Keys carry `{...}` hash tags (one cluster slot per atomic check).
            if p.contains(['{', '}']) {
                f.error(
                    d,
                    "must not contain `{` or `}` (keys carry their own hash tags)",
                );
                return None;
            }
            Some(p)
        });
    let max_keys = s
        .get("max_keys")
        .map_or(Some(default_keys as i64), |f| f.int(d, 1_000, 100_000_000));
    let span = s.span.clone();
    s.finish(d);
    let has_nodes = nodes.is_some();
    let kind = match kind?.as_str() {
        "redis" => match url {
            Some(url) => StoreKind::Redis(RedisStore {
                url: url?,
                timeout: timeout?,
                key_prefix: prefix?,
            }),
            None => {
                d.error(
                    &span,
                    "rate_limit_store.url",
                    "kind = \"redis\" needs `url`",
                );
                return None;
            }
        },
        "redis-cluster" => {
            if url.is_some() {
                d.error(
                    &span,
                    "rate_limit_store.url",
                    "kind = \"redis-cluster\" takes `nodes`, not `url`",
                );
            }
            match nodes {
                Some(nodes) => StoreKind::RedisCluster(RedisCluster {
                    nodes: nodes?,
                    timeout: timeout?,
                    key_prefix: prefix?,
                }),
                None => {
                    d.error(
                        &span,
                        "rate_limit_store.nodes",
                        "kind = \"redis-cluster\" needs `nodes` (its seed nodes)",
                    );
                    return None;
                }
            }
        }
        _ => {
            if url.is_some() {
                d.error(
                    &span,
                    "rate_limit_store.url",
                    "`url` is only used with kind = \"redis\"",
                );
            }
            StoreKind::Memory
        }
    };
    if has_nodes && !matches!(kind, StoreKind::RedisCluster(_)) {
        d.error(
            &span,
            "rate_limit_store.nodes",
            "`nodes` is only used with kind = \"redis-cluster\"",
        );
    }
    Some(RateLimitStore {
        kind,
        max_keys: max_keys? as usize,
    })
}

fn redis_url(f: &Field, d: &mut Diag) -> Option<String> {
    let u = f.non_empty_string(d)?;
    if !(u.starts_with("redis://") || u.starts_with("rediss://") || u.starts_with("redis+unix://"))
    {
        f.error(d, "must be a redis://, rediss:// or redis+unix:// URL");
        return None;
    }
    Some(u)
}
