use super::*;

fn hosts() -> Vec<String> {
    vec!["music.example.com".into(), "www.music.example.com".into()]
}

fn location(r: &Result<Redirect, RedirectError>) -> &str {
    r.as_ref().unwrap().location.to_str().unwrap()
}

fn get(
    host: Option<&str>,
    target: &str,
    hosts: &[String],
    port: u16,
) -> Result<Redirect, RedirectError> {
    redirect(&Method::GET, host, target, hosts, port)
}

#[test]
fn status_follows_the_method() {
    for (method, status) in [
        (Method::GET, 301),
        (Method::HEAD, 301),
        (Method::POST, 308),
        (Method::PUT, 308),
        (Method::DELETE, 308),
        (Method::PATCH, 308),
        (Method::OPTIONS, 308),
    ] {
        let r = redirect(&method, Some("music.example.com"), "/", &hosts(), 443).unwrap();
        assert_eq!(r.status, status, "{method}");
    }
}

#[test]
fn path_and_query_are_kept() {
    let r = get(
        Some("music.example.com"),
        "/app/path/x?y=1&z=two",
        &hosts(),
        443,
    );
    assert_eq!(
        location(&r),
        "https://music.example.com/app/path/x?y=1&z=two"
    );
    let r = get(
        Some("music.example.com"),
        "/a%20b/c//d?q=%27x%27&e=",
        &hosts(),
        443,
    );
    assert_eq!(
        location(&r),
        "https://music.example.com/a%20b/c//d?q=%27x%27&e="
    );
    let r = get(Some("music.example.com"), "/caf\u{e9} x\r\n", &hosts(), 443);
    assert_eq!(
        location(&r),
        "https://music.example.com/caf%C3%A9%20x%0D%0A"
    );
}

#[test]
fn request_host_is_used_only_when_listed() {
    let r = get(Some("WWW.Music.Example.com:80"), "/x", &hosts(), 443);
    assert_eq!(location(&r), "https://www.music.example.com/x");
    let r = get(Some("music.example.com."), "/x", &hosts(), 443);
    assert_eq!(location(&r), "https://music.example.com/x");
    for foreign in [
        "evil.com",
        "music.example.com.evil.net",
        "evil.com:443",
        "music.example.com@evil.com",
        "evil.com/music.example.com",
        "evil.com\\music.example.com",
        "evil.com?music.example.com",
        "evil.com#music.example.com",
        "music.example.com:99999",
        "music.example.com:abc",
        "music.example.com evil.com",
        "%65vil.com",
        "",
    ] {
        let r = get(Some(foreign), "/x", &hosts(), 443);
        assert_eq!(location(&r), "https://music.example.com/x", "{foreign:?}");
    }
    assert_eq!(
        location(&get(None, "/x", &hosts(), 443)),
        "https://music.example.com/x"
    );
}

#[test]
fn without_hosts_only_a_valid_host_is_echoed() {
    for (host, want) in [
        ("a.example.org", "https://a.example.org/"),
        ("A.Example.ORG:8080", "https://a.example.org/"),
        ("192.0.2.7:80", "https://192.0.2.7/"),
        ("[2001:db8::1]:80", "https://[2001:db8::1]/"),
        ("localhost", "https://localhost/"),
    ] {
        assert_eq!(location(&get(Some(host), "/", &[], 443)), want, "{host}");
    }
    for bad in [
        "user@evil.com",
        "evil.com/x",
        "bad host",
        "a..b",
        "-a.com",
        "a-.com",
        "1.2.3",
        "999.1.1.1",
        "[::1",
        "[zz::1]",
        "[::1]x",
        "a.com:",
        "a.com::80",
        "\"quoted\"",
        "",
    ] {
        let r = get(Some(bad), "/", &[], 443);
        // `a.com:` is an empty port (RFC 3986 section 3.2.3), which is allowed.
        if bad == "a.com:" {
            assert_eq!(location(&r), "https://a.com/");
            continue;
        }
        assert_eq!(r, Err(RedirectError::InvalidHost), "{bad:?}");
    }
    assert_eq!(get(None, "/", &[], 443), Err(RedirectError::MissingHost));
}

#[test]
fn port_is_written_unless_443() {
    let r = get(Some("music.example.com"), "/x", &hosts(), 8443);
    assert_eq!(location(&r), "https://music.example.com:8443/x");
    let r = get(Some("[::1]:8080"), "/x", &[], 8443);
    assert_eq!(location(&r), "https://[::1]:8443/x");
    let r = get(Some("music.example.com:8080"), "/x", &hosts(), 443);
    assert_eq!(location(&r), "https://music.example.com/x");
}

#[test]
fn leading_slashes_never_make_a_scheme_relative_location() {
    for target in [
        "//evil.com/x",
        "///evil.com/x",
        "/\\evil.com/x",
        "\\\\evil.com/x",
    ] {
        let r = get(Some("music.example.com"), target, &hosts(), 443);
        assert_eq!(
            location(&r),
            "https://music.example.com/evil.com/x",
            "{target}"
        );
    }
    for target in ["", "*", "?q=1", "evil.com"] {
        let r = get(Some("music.example.com"), target, &hosts(), 443);
        assert!(
            location(&r).starts_with("https://music.example.com/"),
            "{target}: {}",
            location(&r)
        );
    }
}

#[test]
fn invalid_canonical_host_is_an_error_not_a_redirect() {
    let r = get(Some("evil.com"), "/", &["bad host".to_string()], 443);
    assert_eq!(r, Err(RedirectError::InvalidCanonicalHost));
    let r = get(Some("x"), "/", &["::1".to_string()], 443);
    assert_eq!(location(&r), "https://[::1]/");
}

#[test]
fn acme_challenges_are_exempt_and_nothing_else() {
    assert!(is_acme_challenge(
        "/.well-known/acme-challenge/LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"
    ));
    assert!(is_acme_challenge("/.well-known/acme-challenge/abc_123-x"));
    for path in [
        "/.well-known/acme-challenge/",
        "/.well-known/acme-challenge",
        "/.well-known/acme-challenge/../../admin",
        "/.well-known/acme-challenge/a/b",
        "/.well-known/acme-challenge/a%2f..",
        "/.well-known/acme-challenge/token?x=1",
        "/.well-known/other",
        "/.WELL-KNOWN/acme-challenge/token",
        "/x/.well-known/acme-challenge/token",
    ] {
        assert!(!is_acme_challenge(path), "{path}");
    }
}
