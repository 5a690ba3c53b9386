//! The query parameters a signed URL carries: `exp`, `sig` and `user`.
//!
//! The query is read as `application/x-www-form-urlencoded` (WHATWG URL, section 5.1), as
//! Express's `qs` and Node's `URLSearchParams` read it: pairs split on `&`, `+` is a space,
//! `%XX` an escaped byte. Names are compared after decoding, so `%65xp` is `exp` here just
//! as it is upstream: a second `exp` cannot hide from the duplicate check, and
//! [`strip_params`] takes out every spelling the upstream would read as one of them.

use std::borrow::Cow;

/// The parameters of one signed URL, as written (undecoded), each seen at most once.
#[derive(Debug, Default)]
pub(crate) struct Params<'q> {
    pub(crate) exp: Option<&'q str>,
    pub(crate) sig: Option<&'q str>,
    pub(crate) user: Option<&'q str>,
    /// The same name appeared twice (for `exp`, `sig` or `user`).
    pub(crate) exp_or_sig_twice: bool,
    pub(crate) user_twice: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reserved {
    Exp,
    Sig,
    User,
}

/// Finds `exp`, `sig` and `user` in `query` (without the `?`). One pass, no allocation
/// unless a name is escaped.
pub(crate) fn params(query: &str) -> Params<'_> {
    let mut p = Params::default();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (slot, twice) = match reserved(name) {
            None => continue,
            Some(Reserved::Exp) => (&mut p.exp, &mut p.exp_or_sig_twice),
            Some(Reserved::Sig) => (&mut p.sig, &mut p.exp_or_sig_twice),
            Some(Reserved::User) => (&mut p.user, &mut p.user_twice),
        };
        if slot.is_some() {
            *twice = true;
        }
        *slot = Some(value);
    }
    p
}

/// `query` without `exp`, `sig` and `user`, every other parameter byte for byte and in
/// order, joined by `&` (empty pieces such as `a&&b`'s are dropped). `None` when nothing
/// remains.
///
/// Call it only once [`crate::SignedUrls::verify`] accepted the request: on an unsigned
/// request `user` may be the application's own parameter.
pub fn strip_params(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !pair.is_empty() && reserved(name).is_none()
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

fn reserved(name: &str) -> Option<Reserved> {
    let decoded = if name.contains(['%', '+']) {
        decode(name)?
    } else {
        Cow::Borrowed(name.as_bytes())
    };
    match decoded.as_ref() {
        b"exp" => Some(Reserved::Exp),
        b"sig" => Some(Reserved::Sig),
        b"user" => Some(Reserved::User),
        _ => None,
    }
}

/// Form-decodes one name or value: `+` is a space, `%XX` the byte XX. `None` for a `%` not
/// followed by two hex digits (browsers never send one; `qs` would keep it raw).
pub(crate) fn decode(component: &str) -> Option<Cow<'_, [u8]>> {
    let bytes = component.as_bytes();
    if !bytes.iter().any(|&b| b == b'%' || b == b'+') {
        return Some(Cow::Borrowed(bytes));
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = bytes.get(i + 1).copied().and_then(hex)?;
                let lo = bytes.get(i + 2).copied().and_then(hex)?;
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(Cow::Owned(out))
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_three_parameters_in_any_order_and_spelling() {
        let p = params("a=1&sig=S&user=bob&exp=10&b");
        assert_eq!((p.exp, p.sig, p.user), (Some("10"), Some("S"), Some("bob")));
        assert!(!p.exp_or_sig_twice && !p.user_twice);
        let p = params("%65xp=10&s%69g=S&us%65r=x");
        assert_eq!((p.exp, p.sig, p.user), (Some("10"), Some("S"), Some("x")));
        let p = params("exp&sig=");
        assert_eq!((p.exp, p.sig), (Some(""), Some("")));
        let p = params("EXP=1&Sig=2&expires=3&%zzexp=4");
        assert_eq!((p.exp, p.sig, p.user), (None, None, None));
    }

    #[test]
    fn notices_a_parameter_given_twice() {
        assert!(params("exp=1&exp=1").exp_or_sig_twice);
        assert!(params("sig=a&%73ig=a").exp_or_sig_twice);
        assert!(params("user=a&user=b").user_twice);
        assert!(!params("user=a&user=b").exp_or_sig_twice);
    }

    #[test]
    fn stripping_keeps_every_other_parameter_byte_for_byte() {
        assert_eq!(
            strip_params("a=1&exp=10&b=%7E+x&user=u&c&sig=S&d=e=f").as_deref(),
            Some("a=1&b=%7E+x&c&d=e=f")
        );
        assert_eq!(strip_params("exp=1&sig=2"), None);
        assert_eq!(strip_params("exp=1&&sig=2&"), None);
        assert_eq!(
            strip_params("%65xp=1&x=%zz&sig=2").as_deref(),
            Some("x=%zz")
        );
        assert_eq!(strip_params("").as_deref(), None);
        assert_eq!(strip_params("q=exp").as_deref(), Some("q=exp"));
    }

    #[test]
    fn decoding_is_form_decoding_and_strict_about_escapes() {
        assert_eq!(decode("a+b%2B%40").as_deref(), Some(&b"a b+@"[..]));
        assert_eq!(decode("plain").as_deref(), Some(&b"plain"[..]));
        assert_eq!(decode("%e2%82%AC").as_deref(), Some("€".as_bytes()));
        for bad in ["%", "%4", "%zz", "a%g0"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
