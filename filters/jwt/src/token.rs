//! The bearer token (RFC 6750 section 2.1) and the JOSE header, read before any signature work.
//!
//! Everything that must be refused without trusting the token is refused here: tokens over
//! [`MAX_TOKEN_BYTES`], anything but three base64url segments, `alg` values outside the
//! allow-list (`none` in every spelling included) and any `crit` header, since the gateway
//! implements no JWS extension (RFC 7515 section 4.1.11). `jku`, `x5u`, `jwk` and `x5c` are
//! never read: keys come only from configuration or the configured JWKS.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::HeaderValue;
use portcullis_config::JwtAlgorithm;

use crate::AuthError;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest `kid` looked up; longer ones are refused as malformed.
const MAX_KID_BYTES: usize = 256;

/// The bearer token of an `Authorization` header: `Ok(None)` when there is no header.
///
/// On a route that checks tokens, the header must be exactly one Bearer credential (RFC 6750
/// section 2.1: `Bearer` in any case, one or more spaces, a token68). Anything else, such as
/// another scheme, a tab for the space or a token with stray characters, is refused rather
/// than treated as "no token": forwarded as anonymous, it would reach a backend that may read
/// it by rules of its own, a credential the gateway never verified.
pub fn bearer(value: Option<&HeaderValue>) -> Result<Option<&str>, AuthError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| AuthError::Malformed("the Authorization header is not ASCII"))?
        .trim_matches([' ', '\t']);
    let scheme = value.get(..6).filter(|s| s.eq_ignore_ascii_case("bearer"));
    let rest = value.get(6..).unwrap_or_default();
    let token = rest.trim_start_matches(' ');
    if scheme.is_none() || (token.len() == rest.len() && !rest.is_empty()) {
        return Err(AuthError::Malformed(
            "the Authorization header is not a Bearer credential",
        ));
    }
    if token.is_empty() {
        return Err(AuthError::Malformed("the bearer token is empty"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("the token is larger than 8 KiB"));
    }
    if !is_token68(token) {
        return Err(AuthError::Malformed(
            "the bearer token holds characters a token68 cannot",
        ));
    }
    Ok(Some(token))
}

/// RFC 9110 section 11.2: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty() && body.bytes().all(|b| TOKEN68[usize::from(b)])
}

/// The token68 characters before the padding, as a table (one load per byte of a token that
/// is read on every request).
static TOKEN68: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] =
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        b += 1;
    }
    table
};

/// What the verifier needs from the JOSE header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: JwtAlgorithm,
    pub kid: Option<String>,
}

/// Checks the token's shape and reads its header. `allowed` is the configured allow-list.
pub fn header(token: &str, allowed: &[JwtAlgorithm]) -> Result<Header, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed("the token is larger than 8 KiB"));
    }
    let mut parts = token.split('.');
    let (Some(head), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed(
            "a token has three dot-separated parts",
        ));
    };
    if head.is_empty() || payload.is_empty() {
        return Err(AuthError::Malformed("a token part is empty"));
    }
    if ![head, payload, signature].iter().all(|p| is_base64url(p)) {
        return Err(AuthError::Malformed("a token part is not base64url"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(head)
        .map_err(|_| AuthError::Malformed("the token header is not base64url"))?;
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|_| AuthError::Malformed("the token header is not a JSON object"))?;
    let alg = match fields.get("alg") {
        Some(serde_json::Value::String(name)) => {
            if name.trim().eq_ignore_ascii_case("none") {
                return Err(AuthError::UnsupportedAlg);
            }
            JwtAlgorithm::from_name(name)
                .filter(|a| allowed.contains(a))
                .ok_or(AuthError::UnsupportedAlg)?
        }
        Some(_) => return Err(AuthError::Malformed("the token's alg is not a string")),
        None => return Err(AuthError::Malformed("the token has no alg")),
    };
    if fields.contains_key("crit") {
        return Err(AuthError::Malformed(
            "the token requires an unsupported critical extension",
        ));
    }
    let kid = match fields.get("kid") {
        None => None,
        Some(serde_json::Value::String(kid)) if kid.len() <= MAX_KID_BYTES => Some(kid.clone()),
        Some(_) => {
            return Err(AuthError::Malformed(
                "the token's kid is not a short string",
            ))
        }
    };
    if signature.is_empty() {
        return Err(AuthError::InvalidSignature);
    }
    Ok(Header { alg, kid })
}

fn is_base64url(part: &str) -> bool {
    part.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn with_header(json: &str) -> String {
        format!("{}.{}.c2ln", b64(json), b64(r#"{"exp":1}"#))
    }

    const ALL: &[JwtAlgorithm] = &JwtAlgorithm::ALL;

    #[test]
    fn bearer_takes_the_token_of_the_bearer_scheme_only() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(bearer(None), Ok(None));
        assert_eq!(bearer(Some(&v("Bearer abc"))), Ok(Some("abc")));
        assert_eq!(bearer(Some(&v("bearer   abc "))), Ok(Some("abc")));
        assert_eq!(
            bearer(Some(&v("BEARER a.b-c_d~e+f/g=="))),
            Ok(Some("a.b-c_d~e+f/g=="))
        );
        assert!(bearer(Some(&v("Bearer"))).is_err());
        assert!(bearer(Some(&v("Bearer  "))).is_err());
        for other in [
            "Basic dXNlcjpwdw==",
            "Bearer\tabc",
            "Bearerabc",
            "Bearer abc def",
            "Bearer a,b",
            "Bearer =abc",
            "Bearer ==",
            "Token abc",
            "Bear",
            "abc",
        ] {
            assert!(
                matches!(bearer(Some(&v(other))), Err(AuthError::Malformed(_))),
                "{other:?}"
            );
        }
        let big =
            HeaderValue::from_str(&format!("Bearer {}", "a".repeat(MAX_TOKEN_BYTES + 1))).unwrap();
        assert_eq!(
            bearer(Some(&big)),
            Err(AuthError::Malformed("the token is larger than 8 KiB"))
        );
    }

    #[test]
    fn none_is_refused_in_every_spelling() {
        for alg in ["none", "None", "NONE", "nOnE", " none"] {
            let token = with_header(&format!(r#"{{"alg":"{alg}"}}"#));
            assert_eq!(header(&token, ALL), Err(AuthError::UnsupportedAlg), "{alg}");
        }
    }

    #[test]
    fn algorithms_outside_the_allow_list_or_misspelt_are_refused() {
        let token = with_header(r#"{"alg":"RS256"}"#);
        assert_eq!(
            header(&token, &[JwtAlgorithm::HS256]),
            Err(AuthError::UnsupportedAlg)
        );
        let token = with_header(r#"{"alg":"hs256"}"#);
        assert_eq!(header(&token, ALL), Err(AuthError::UnsupportedAlg));
        let token = with_header(r#"{"alg":"HS256","kid":"k1","jku":"https://evil"}"#);
        assert_eq!(
            header(&token, ALL),
            Ok(Header {
                alg: JwtAlgorithm::HS256,
                kid: Some("k1".into())
            })
        );
    }

    #[test]
    fn crit_and_hostile_shapes_are_malformed() {
        let cases = [
            with_header(r#"{"alg":"HS256","crit":["b64"],"b64":false}"#),
            with_header(r#"{"alg":"HS256","kid":7}"#),
            with_header(&format!(r#"{{"alg":"HS256","kid":"{}"}}"#, "k".repeat(300))),
            with_header(r#"["HS256"]"#),
            with_header(r#"{"typ":"JWT"}"#),
            "a.b".into(),
            "a.b.c.d".into(),
            "a+b.c.d".into(),
            "eyJ=.e30.c2ln".into(),
            ".e30.c2ln".into(),
        ];
        for token in cases {
            assert!(
                matches!(header(&token, ALL), Err(AuthError::Malformed(_))),
                "{token}"
            );
        }
    }

    #[test]
    fn a_stripped_signature_is_an_invalid_signature() {
        let token = format!("{}.{}.", b64(r#"{"alg":"HS256"}"#), b64("{}"));
        assert_eq!(header(&token, ALL), Err(AuthError::InvalidSignature));
    }
}
