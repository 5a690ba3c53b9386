//! Token decoding: whatever arrives after `Bearer `, the verifier answers with an error and
//! never panics (HS256 and RS256 verifiers, so both key families' paths run).
#![no_main]

use std::path::Path;
use std::sync::LazyLock;
use std::time::SystemTime;

use libfuzzer_sys::fuzz_target;
use portcullis_jwt::Verifier;

fn verifier(section: &str) -> Verifier {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../filters/jwt/tests/keys");
    let text = format!(
        "[server]\nlisten = [\"127.0.0.1:1\"]\n[admin]\nlisten = \"127.0.0.1:2\"\n{section}\n\
         [upstreams.a]\npeers = [\"127.0.0.1:3\"]\n[[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"a\"\n"
    );
    let config = portcullis_config::parse(&dir.join("fuzz.toml"), &text, &|_| None)
        .unwrap_or_else(|e| panic!("fuzz config: {e}"));
    let jwt = config.jwt.expect("[jwt]");
    Verifier::new(&jwt).expect("verifier")
}

static HS: LazyLock<Verifier> = LazyLock::new(|| {
    verifier(
        "[jwt]\nalgorithms = [\"HS256\"]\nsecret = \"fuzz-secret-fuzz-secret-fuzz-secret-0123\"",
    )
});
static RS: LazyLock<Verifier> =
    LazyLock::new(|| verifier("[jwt]\nalgorithms = [\"RS256\"]\npublic_key_file = \"rsa.pub\""));

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let now = SystemTime::now();
    assert!(HS.verify(&token, now).result.is_err());
    assert!(RS.verify(&token, now).result.is_err());
});
