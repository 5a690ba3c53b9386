//! The browser-session keys: `[jwt] sources` and `forward_credentials`, and a route's
//! `auth_sources` and `signed_urls`. Defaults, valid values, and every refusal with its
//! line and key path.

mod common;

use std::time::Duration;

use portcullis_config::{Config, Secret, SignedUrlPolicy, TokenSource};

const MEDIA_KEY: &str = "media-url-key-media-url-key-0123456789";

/// A small valid file; `jwt` is appended to `[jwt]` (or replaces the whole section when
/// it is `None`), `route` to the first route.
fn file(jwt: Option<&str>, route: &str) -> String {
    let jwt = match jwt {
        Some(extra) => format!(
            "[jwt]\nalgorithms = [\"HS256\"]\n\
             secret = \"jwt-secret-jwt-secret-jwt-secret-0123\"\n{extra}\n"
        ),
        None => String::new(),
    };
    format!(
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n\n[admin]\nlisten = \"127.0.0.1:9901\"\n\n\
         [upstreams.legacy]\npeers = [\"127.0.0.1:3000\"]\n\n{jwt}\n\
         [[routes]]\nname = \"images\"\npath_prefix = \"/api/images\"\n\
         upstream = \"legacy\"\n{route}\n\n\
         [[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"legacy\"\nauth = \"none\"\n"
    )
}

fn env(name: &str) -> Option<String> {
    (name == "MEDIA_URL_KEY").then(|| MEDIA_KEY.to_string())
}

fn load(text: &str) -> Result<Config, Vec<(usize, String, String)>> {
    common::load_with("browser.toml", text, &env)
}

/// `text` is refused with exactly one error, on the line holding `needle`, naming `key`
/// and saying `message`.
#[track_caller]
fn refused(text: &str, needle: &str, key: &str, message: &str) {
    common::assert_refused(load(text), text, needle, key, message);
}

fn cookie(name: &str) -> TokenSource {
    TokenSource::Cookie(name.into())
}

#[test]
fn defaults_are_the_header_and_forwarding() {
    let config = load(&file(Some(""), "")).unwrap();
    let jwt = config.jwt.unwrap();
    assert_eq!(jwt.sources, vec![TokenSource::Header]);
    assert!(jwt.forward_credentials);
    assert_eq!(config.routes[0].auth_sources, vec![TokenSource::Header]);
    assert_eq!(config.routes[0].signed_urls, None);
    let without_jwt = load(&file(None, "auth = \"none\"")).unwrap();
    assert!(without_jwt.routes.iter().all(|r| r.auth_sources.is_empty()));
}

#[test]
fn sources_and_forward_credentials_are_read_in_order() {
    let text = file(
        Some(
            "sources = [\"cookie:__Host-session\", \"header\", \"cookie:b.c\"]\n\
             forward_credentials = false",
        ),
        "",
    );
    let config = load(&text).unwrap();
    let jwt = config.jwt.unwrap();
    let want = vec![cookie("__Host-session"), TokenSource::Header, cookie("b.c")];
    assert_eq!(jwt.sources, want);
    assert!(!jwt.forward_credentials);
    // A route without auth_sources gets [jwt].sources.
    assert_eq!(config.routes[0].auth_sources, want);
    assert_eq!(
        want.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["cookie:__Host-session", "header", "cookie:b.c"]
    );
}

#[test]
fn bad_sources_are_refused_with_their_element() {
    let cases = [
        ("sources = []", "jwt.sources", "at least one source"),
        ("sources = \"header\"", "jwt.sources", "expected an array"),
        (
            "sources = [\"headers\"]",
            "jwt.sources[0]",
            "not \"header\" or \"cookie:NAME\"",
        ),
        ("sources = [\"Header\"]", "jwt.sources[0]", "not \"header\""),
        (
            "sources = [\"cookie:\"]",
            "jwt.sources[0]",
            "is not a cookie name",
        ),
        (
            "sources = [\"cookie:a b\"]",
            "jwt.sources[0]",
            "is not a cookie name",
        ),
        (
            "sources = [\"header\", \"cookie:a;b\"]",
            "jwt.sources[1]",
            "is not a cookie name",
        ),
        (
            "sources = [\"cookie:a=b\"]",
            "jwt.sources[0]",
            "is not a cookie name",
        ),
        (
            "sources = [\"cookie: session\"]",
            "jwt.sources[0]",
            "is not a cookie name",
        ),
        (
            "sources = [\"header\", \"header\"]",
            "jwt.sources[1]",
            "`header` is listed twice",
        ),
        (
            "sources = [\"cookie:s\", \"header\", \"cookie:s\"]",
            "jwt.sources[2]",
            "`cookie:s` is listed twice",
        ),
        ("sources = [1]", "jwt.sources[0]", "expected a string"),
        (
            "forward_credentials = \"no\"",
            "jwt.forward_credentials",
            "expected true or false",
        ),
    ];
    for (line, key, message) in cases {
        refused(&file(Some(line), ""), line, key, message);
    }
    let long = format!("sources = [\"cookie:{}\"]", "a".repeat(129));
    refused(
        &file(Some(&long), ""),
        &long,
        "jwt.sources[0]",
        "is not a cookie name",
    );
    let longest = format!("sources = [\"cookie:{}\"]", "a".repeat(128));
    assert!(load(&file(Some(&longest), "")).is_ok());
}

#[test]
fn auth_sources_narrow_jwt_sources() {
    let text = file(
        Some("sources = [\"header\", \"cookie:session\"]"),
        "auth_sources = [\"cookie:session\"]",
    );
    let config = load(&text).unwrap();
    assert_eq!(config.routes[0].auth_sources, vec![cookie("session")]);
    // The route's own order wins.
    let text = file(
        Some("sources = [\"header\", \"cookie:session\"]"),
        "auth_sources = [\"cookie:session\", \"header\"]",
    );
    let config = load(&text).unwrap();
    assert_eq!(
        config.routes[0].auth_sources,
        vec![cookie("session"), TokenSource::Header]
    );
}

#[test]
fn bad_auth_sources_are_refused_with_their_key() {
    let jwt = Some("sources = [\"header\", \"cookie:session\"]");
    let cases = [
        (
            "auth_sources = []",
            "routes[0].auth_sources",
            "at least one source",
        ),
        (
            "auth_sources = [\"cookie:other\"]",
            "routes[0].auth_sources[0]",
            "`cookie:other` is not one of [jwt].sources (\"header\", \"cookie:session\")",
        ),
        (
            "auth_sources = [\"header\", \"cookie:Session\"]",
            "routes[0].auth_sources[1]",
            "not one of [jwt].sources",
        ),
        (
            "auth_sources = [\"header\", \"header\"]",
            "routes[0].auth_sources[1]",
            "listed twice",
        ),
        (
            "auth_sources = [\"bearer\"]",
            "routes[0].auth_sources[0]",
            "not \"header\" or \"cookie:NAME\"",
        ),
        (
            "auth = \"none\"\nauth_sources = [\"header\"]",
            "routes[0].auth_sources",
            "no effect on a route with auth = \"none\"",
        ),
    ];
    for (route, key, message) in cases {
        let needle = route.lines().last().unwrap();
        refused(&file(jwt, route), needle, key, message);
    }
    // With only the default source, a cookie cannot be named.
    refused(
        &file(Some(""), "auth_sources = [\"cookie:session\"]"),
        "auth_sources",
        "routes[0].auth_sources[0]",
        "not one of [jwt].sources (\"header\")",
    );
    refused(
        &file(None, "auth = \"none\"\nauth_sources = [\"header\"]"),
        "auth_sources",
        "routes[0].auth_sources",
        "needs a [jwt] section",
    );
}

#[test]
fn an_invalid_jwt_section_does_not_also_refuse_auth_sources() {
    let text = file(
        Some("sources = [\"header\"]\nleeway = \"soon\""),
        "auth_sources = [\"cookie:session\"]",
    );
    let errors = load(&text).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].1, "jwt.leeway");
}

#[test]
fn signed_urls_are_read_with_their_default_lifetime() {
    let text = file(Some(""), "signed_urls = { keys = [\"${MEDIA_URL_KEY}\"] }");
    let policy = load(&text).unwrap().routes[0].signed_urls.clone().unwrap();
    assert_eq!(
        policy,
        SignedUrlPolicy {
            keys: vec![Secret::new(MEDIA_KEY)],
            max_ttl: Duration::from_secs(3600),
        }
    );
    assert_eq!(policy.keys[0].expose(), MEDIA_KEY.as_bytes());

    let old = "an-older-key-still-accepted-for-a-while";
    let text = file(
        Some(""),
        &format!(
            "signed_urls = {{ keys = [\"${{MEDIA_URL_KEY}}\", \"{old}\"], max_ttl = \"7d\" }}"
        ),
    );
    let policy = load(&text).unwrap().routes[0].signed_urls.clone().unwrap();
    assert_eq!(policy.keys, vec![Secret::new(MEDIA_KEY), Secret::new(old)]);
    assert_eq!(policy.max_ttl, Duration::from_secs(7 * 86_400));

    // As a table of its own, too.
    let table = "auth = \"optional\"\n\
                 [routes.signed_urls]\nkeys = [\"${MEDIA_URL_KEY}\"]\nmax_ttl = \"10m\"";
    let text = file(Some(""), table);
    let policy = load(&text).unwrap().routes[0].signed_urls.clone().unwrap();
    assert_eq!(policy.max_ttl, Duration::from_secs(600));
}

#[test]
fn bad_signed_urls_are_refused_with_their_key() {
    const KEY: &str = r#""${MEDIA_URL_KEY}""#;
    let short = format!(r#""{}""#, "k".repeat(31));
    let nine = [KEY; 9].join(", ");
    let with_key = |rest: &str| format!("keys = [{KEY}]{rest}");
    // (inside `signed_urls = { ... }`, the key path after `routes[0].signed_urls`, message)
    let cases = [
        (
            r#"max_ttl = "1h""#.to_string(),
            ".keys",
            "required key is missing",
        ),
        ("keys = []".into(), ".keys", "at least one key"),
        (r#"keys = "k""#.into(), ".keys", "expected an array"),
        (
            format!(r#"keys = [{KEY}, "short-key"]"#),
            ".keys[1]",
            "at least 32 bytes (a short HMAC key can be guessed from one signed URL); \
             this one has 9",
        ),
        (format!("keys = [{short}]"), ".keys[0]", "this one has 31"),
        (format!("keys = [{nine}]"), ".keys", "at most 8 keys"),
        (
            with_key(r#", max_ttl = "0s""#),
            ".max_ttl",
            "greater than zero",
        ),
        (
            with_key(r#", max_ttl = "8d""#),
            ".max_ttl",
            r#"at most "7d""#,
        ),
        (with_key(r#", max_ttl = "soon""#), ".max_ttl", "soon"),
        (with_key(r#", ttl = "1h""#), ".ttl", "unknown key"),
        (
            r#"keys = ["${UNSET_MEDIA_KEY}"]"#.into(),
            ".keys[0]",
            "UNSET_MEDIA_KEY is not set",
        ),
    ];
    for (table, key, message) in cases {
        let route = format!("signed_urls = {{ {table} }}");
        let key = format!("routes[0].signed_urls{key}");
        refused(&file(Some(""), &route), &route, &key, message);
    }
    let not_a_table = r#"signed_urls = "yes""#;
    refused(
        &file(Some(""), not_a_table),
        not_a_table,
        "routes[0].signed_urls",
        "expected a table",
    );
    let pointless = format!("auth = \"none\"\nsigned_urls = {{ {} }}", with_key(""));
    refused(
        &file(Some(""), &pointless),
        "signed_urls",
        "routes[0].signed_urls",
        r#"no effect on a route with auth = "none""#,
    );
    let eight = format!("signed_urls = {{ keys = [{}] }}", [KEY; 8].join(", "));
    assert!(load(&file(Some(""), &eight)).is_ok());
    let exactly_32 = format!(r#"signed_urls = {{ keys = ["{}"] }}"#, "k".repeat(32));
    assert!(load(&file(Some(""), &exactly_32)).is_ok());
}

#[test]
fn debug_output_never_shows_a_signed_url_key() {
    let text = file(Some(""), "signed_urls = { keys = [\"${MEDIA_URL_KEY}\"] }");
    let config = load(&text).unwrap();
    let debug = format!("{config:?}");
    assert!(debug.contains("Secret(<redacted>)"), "{debug}");
    assert!(!debug.contains(MEDIA_KEY), "{debug}");
    let bytes = format!("{:?}", MEDIA_KEY.as_bytes());
    assert!(!debug.contains(&bytes[1..bytes.len() - 1]));
}
