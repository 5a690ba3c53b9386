//! The command line: --version, --check on good and broken files (FILE:LINE:COL: key: message,
//! every error at once, exit 2), and exit 1 for a taken address.

#[path = "harness/mod.rs"]
mod harness;

use harness::*;

fn config(port: u16, admin: u16, backend: u16) -> String {
    server_section(port, admin, "")
        + &format!(
            "[upstreams.app]\npeers = [\"127.0.0.1:{backend}\"]\nconnect_timeout = \"2s\"\n\n"
        )
        + "[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"app\"\n"
}

fn check(name: &str, text: &str) -> (Option<i32>, String, String) {
    let dir = scratch("cli");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let out = run_cli(&["--config", path.to_str().unwrap(), "--check"]);
    let _ = std::fs::remove_dir_all(dir);
    out
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .expect("needle in text")
        + 1
}

#[test]
fn version_prints_a_version() {
    let (code, out, _) = run_cli(&["--version"]);
    assert_eq!(code, Some(0));
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "{out}");
}

#[test]
fn a_good_file_checks_ok() {
    let (code, out, err) = check("good.toml", &config(8080, 9901, 3000));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("configuration ok"));
}

#[test]
fn the_example_configs_check_ok() {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples/quickstart.toml");
    let (code, _, err) = run_cli(&["--config", root.to_str().unwrap(), "--check"]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn broken_files_name_file_line_and_key() {
    let good = config(8080, 9901, 3000);
    let typo = good.replace(
        "connect_timeout = \"2s\"",
        "connect_timeout = \"2s\"\nread_timout = \"5s\"",
    );
    let bad_duration = good.replace("\"2s\"", "\"soon\"");
    let ghost = good.clone()
        + "\n[[routes]]\nname = \"ghost\"\npath_prefix = \"/ghost\"\nupstream = \"nowhere\"\n";
    let unset = good.replace(
        "connect_timeout = \"2s\"",
        "request_headers = { \"x-api-key\" = \"${PORTCULLIS_TEST_SURELY_UNSET}\" }",
    );
    let cases = [
        (
            "typo.toml",
            &typo,
            line_of(&typo, "read_timout"),
            "upstreams.app.read_timout",
            "unknown key",
        ),
        (
            "duration.toml",
            &bad_duration,
            line_of(&bad_duration, "soon"),
            "upstreams.app.connect_timeout",
            "soon",
        ),
        (
            "ghost.toml",
            &ghost,
            line_of(&ghost, "nowhere"),
            "routes[1].upstream",
            "unknown upstream `nowhere`",
        ),
        (
            "unset.toml",
            &unset,
            line_of(&unset, "SURELY_UNSET"),
            "x-api-key",
            "PORTCULLIS_TEST_SURELY_UNSET is not set",
        ),
    ];
    for (file, text, line, key, message) in cases {
        let (code, _, err) = check(file, text);
        assert_eq!(code, Some(2), "{file}: {err}");
        let expected = format!("{file}:{line}:");
        assert!(
            err.contains(&expected),
            "{file}: expected `{expected}` in {err}"
        );
        assert!(err.contains(key) && err.contains(message), "{file}: {err}");
    }
}

#[test]
fn every_error_is_reported_at_once() {
    let good = config(8080, 9901, 3000);
    let two = good.replace(
        "connect_timeout = \"2s\"",
        "connect_timeout = \"soon\"\nread_timout = \"5s\"",
    );
    let (code, _, err) = check("two.toml", &two);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.lines().filter(|l| l.contains("two.toml:")).count(),
        2,
        "{err}"
    );
}

#[test]
fn a_taken_address_exits_1_with_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = scratch("taken");
    let path = dir.join("p.toml");
    std::fs::write(&path, config(port, free_port(), free_port())).unwrap();
    let (code, _, err) = run_cli(&["--config", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

#[test]
fn the_header_deadline_is_accepted_and_a_zero_one_refused_with_its_location() {
    let good = config(8080, 9901, 3000);
    let with_deadline = good.replace(
        "grace_period",
        "request_header_timeout = \"3s\"\ngrace_period",
    );
    let (code, _, err) = check("deadline.toml", &with_deadline);
    assert_eq!(code, Some(0), "{err}");
    let zero = with_deadline.replace("\"3s\"", "\"0s\"");
    let (code, _, err) = check("zero.toml", &zero);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "zero.toml:{}:",
            line_of(&zero, "request_header_timeout")
        )) && err.contains("server.request_header_timeout"),
        "{err}"
    );
}

#[test]
fn a_jwt_key_file_that_is_not_a_public_key_is_refused_with_its_location() {
    let dir = scratch("cli-jwt");
    std::fs::write(
        dir.join("jwt.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let text = config(8080, 9901, 3000)
        + "\n[jwt]\nalgorithms = [\"RS256\"]\npublic_key_file = \"jwt.pem\"\n";
    let path = dir.join("jwt.toml");
    std::fs::write(&path, &text).unwrap();
    let (code, _, err) = run_cli(&["--config", path.to_str().unwrap(), "--check"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("jwt.toml:{}:", line_of(&text, "public_key_file")))
            && err.contains("private key"),
        "{err}"
    );
}

#[test]
fn hardening_keys_are_checked_with_their_location() {
    let good = config(8080, 9901, 3000);
    let with = |server: &str, rest: &str| {
        good.replacen("grace_period", &format!("{server}\ngrace_period"), 1) + rest
    };
    let cases = [
        (
            with("underscore_headers = \"strip\"", ""),
            "strip",
            "server.underscore_headers",
            "not one of \"drop\", \"reject\", \"allow\"",
        ),
        (
            with(
                "",
                "\n[rate_limits.default]\nper_ip = \"10/min\"\nipv6_prefix = 47\n",
            ),
            "ipv6_prefix",
            "rate_limits.default.ipv6_prefix",
            "48",
        ),
        (
            with("", "\n[suspicious]\nipv6_prefix = 129\n"),
            "ipv6_prefix",
            "suspicious.ipv6_prefix",
            "128",
        ),
        (
            good.replace("path_prefix = \"/\"", "path_prefix = \"/api;v=1\""),
            "/api;v=1",
            "routes[0].path_prefix",
            "`;`",
        ),
    ];
    for (i, (text, needle, key, message)) in cases.iter().enumerate() {
        let file = format!("hardening-{i}.toml");
        let (code, _, err) = check(&file, text);
        assert_eq!(code, Some(2), "{file}: {err}");
        let expected = format!("{file}:{}:", line_of(text, needle));
        assert!(
            err.contains(&expected),
            "{file}: expected `{expected}` in {err}"
        );
        assert!(err.contains(key) && err.contains(message), "{file}: {err}");
    }
    let fine = with(
        "underscore_headers = \"reject\"",
        "\n[rate_limits.default]\nper_ip = \"10/min\"\nipv6_prefix = 56\n\n[suspicious]\nipv6_prefix = 48\n",
    );
    let (code, out, err) = check("hardening-ok.toml", &fine);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("configuration ok"));
}
