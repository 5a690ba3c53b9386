//! The `[acme]` keys: defaults, the contract example, and every refusal with its line and key.

mod common;

use std::time::Duration;

use common::{assert_refused, load_with};
use portcullis_config::{AcmeChallenge, Config};

const SERVER: &str = "[server]\nlisten = [\"127.0.0.1:8080\"]\ntls_listen = [\"127.0.0.1:8443\"]\n";
const ROUTES: &str = "[upstreams.legacy]\npeers = [\"127.0.0.1:3000\"]\n\n[[routes]]\nname = \"site\"\npath_prefix = \"/\"\nupstream = \"legacy\"\n";

fn with_acme(server: &str, body: &str) -> String {
    format!("{server}\n[acme]\n{body}\n\n{ROUTES}")
}

const MINIMAL: &str = "directory = \"https://acme-v02.api.letsencrypt.org/directory\"\ndomains = [\"music.example.com\"]\nstate_dir = \"/var/lib/portcullis/acme\"";

fn load(text: &str) -> Result<Config, Vec<(usize, String, String)>> {
    load_with("acme.toml", text, &|_| None)
}

#[test]
fn defaults_and_the_contract_example() {
    let config = load(&with_acme(SERVER, MINIMAL)).unwrap();
    let acme = config.acme.unwrap();
    assert_eq!(acme.challenge, AcmeChallenge::Http01);
    assert_eq!(acme.renew_before, Duration::from_secs(30 * 86_400));
    assert!(acme.contact.is_empty() && acme.directory_ca.is_none());
    assert!(config.server.tls.is_none());

    let text = with_acme(
        SERVER,
        "directory = \"https://acme-v02.api.letsencrypt.org/directory\"\ncontact = [\"mailto:ops@example.com\"]\n\
         domains = [\"Music.example.com\", \"www.example.com\"]\nstate_dir = \"acme\"\nchallenge = \"tls-alpn-01\"\nrenew_before = \"20d\"",
    );
    let acme = load(&text).unwrap().acme.unwrap();
    assert_eq!(acme.domains, vec!["music.example.com", "www.example.com"]);
    assert_eq!(acme.challenge, AcmeChallenge::TlsAlpn01);
    assert_eq!(acme.renew_before, Duration::from_secs(20 * 86_400));
    assert_eq!(acme.state_dir, std::path::Path::new("acme"));
    let plain = "[server]\nlisten = [\"127.0.0.1:8080\"]\n";
    assert!(load(&format!("{plain}\n{ROUTES}")).unwrap().acme.is_none());
}

#[test]
fn mistakes_are_refused_with_their_line_and_key() {
    let text = with_acme(
        SERVER,
        &MINIMAL.replace("https://acme-v02", "http://acme-v02"),
    );
    assert_refused(
        load(&text),
        &text,
        "directory =",
        "acme.directory",
        "https://",
    );
    let text = with_acme(SERVER, &format!("{MINIMAL}\nchallenge = \"dns-01\""));
    assert_refused(
        load(&text),
        &text,
        "challenge =",
        "acme.challenge",
        "not offered",
    );
    let text = with_acme(
        SERVER,
        "directory = \"https://acme.example/dir\"\nstate_dir = \"acme\"",
    );
    assert_refused(
        load(&text),
        &text,
        "[acme]",
        "acme.domains",
        "required key is missing",
    );
    let text = with_acme(SERVER, &MINIMAL.replace("[\"music.example.com\"]", "[]"));
    assert_refused(
        load(&text),
        &text,
        "domains =",
        "acme.domains",
        "at least one",
    );
    let text = with_acme(
        SERVER,
        &MINIMAL.replace("music.example.com", "*.example.com"),
    );
    assert_refused(load(&text), &text, "domains =", "acme.domains[0]", "dns-01");
    let text = with_acme(
        SERVER,
        &format!("{MINIMAL}\ncontact = [\"ops@example.com\"]"),
    );
    assert_refused(
        load(&text),
        &text,
        "contact =",
        "acme.contact[0]",
        "mailto:",
    );
    let text = with_acme(SERVER, &format!("{MINIMAL}\nrenew_before = \"0s\""));
    assert_refused(
        load(&text),
        &text,
        "renew_before",
        "acme.renew_before",
        "greater than zero",
    );
    let text = with_acme(SERVER, &format!("{MINIMAL}\nrenew_befor = \"1d\""));
    assert_refused(
        load(&text),
        &text,
        "renew_befor",
        "acme.renew_befor",
        "unknown key",
    );
}

#[test]
fn acme_beside_tls_cert_and_missing_listeners_are_refused() {
    let dir = std::env::temp_dir().join(format!("portcullis-acme-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gw.crt"), "").unwrap();
    std::fs::write(dir.join("gw.key"), "").unwrap();
    let server = format!("{SERVER}tls_cert = \"gw.crt\"\ntls_key = \"gw.key\"\n");
    let text = with_acme(&server, MINIMAL);
    let loaded = load_with(dir.join("acme.toml").to_str().unwrap(), &text, &|_| None);
    assert_refused(
        loaded,
        &text,
        "tls_cert =",
        "server.tls_cert",
        "[acme] provides",
    );
    let _ = std::fs::remove_dir_all(&dir);

    let text = with_acme("[server]\nlisten = [\"127.0.0.1:8080\"]\n", MINIMAL);
    assert_refused(load(&text), &text, "[acme]", "acme", "tls_listen");
    let text = with_acme(
        "[server]\ntls_listen = [\"127.0.0.1:8443\"]\n",
        &format!("{MINIMAL}\nchallenge = \"http-01\""),
    );
    assert_refused(
        load(&text),
        &text,
        "[acme]",
        "acme.challenge",
        "plain listeners",
    );
}
