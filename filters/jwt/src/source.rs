//! Where a request's token comes from: `[jwt] sources` (or a route's `auth_sources`), tried
//! in order; the first one present is the credential. A source that is present but broken
//! (a malformed `Authorization`, a duplicated or malformed token cookie) is a refusal, never
//! a reason to look further or to pass as anonymous.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use portcullis_config::TokenSource;

use crate::{bearer, cookie_token, AuthError};

/// The token a request presents, and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential<'a> {
    pub token: &'a str,
    pub source: &'a TokenSource,
}

/// The request's credential under `sources`; `Ok(None)` when no source is present.
///
/// An `Authorization` header is refused on a route whose sources leave it out: the gateway
/// would not verify it, and forwarding it would hand the backend a credential nobody checked.
pub fn credential<'a>(
    headers: &'a HeaderMap,
    sources: &'a [TokenSource],
) -> Result<Option<Credential<'a>>, AuthError> {
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    let (first, second) = (authorization.next(), authorization.next());
    if second.is_some() {
        return Err(AuthError::Malformed("more than one Authorization header"));
    }
    if first.is_some() && !sources.contains(&TokenSource::Header) {
        return Err(AuthError::Malformed(
            "this route does not take its token from the Authorization header",
        ));
    }
    for source in sources {
        let token = match source {
            TokenSource::Header => bearer(first)?,
            TokenSource::Cookie(name) => cookie_token(headers, name)?,
        };
        if let Some(token) = token {
            return Ok(Some(Credential { token, source }));
        }
    }
    Ok(None)
}

/// The kind of source a credential came from: what the cross-site rule and the metrics need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Header,
    Cookie,
}

impl SourceKind {
    pub fn of(source: &TokenSource) -> Self {
        match source {
            TokenSource::Header => SourceKind::Header,
            TokenSource::Cookie(_) => SourceKind::Cookie,
        }
    }

    /// The label in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Header => "header",
            SourceKind::Cookie => "cookie",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn both() -> Vec<TokenSource> {
        vec![TokenSource::Header, TokenSource::Cookie("session".into())]
    }

    #[test]
    fn the_first_present_source_wins() {
        let h = headers(&[("authorization", "Bearer aaa"), ("cookie", "session=bbb")]);
        let sources = both();
        let c = credential(&h, &sources).unwrap().unwrap();
        assert_eq!((c.token, c.source), ("aaa", &TokenSource::Header));
        let cookie_first = vec![TokenSource::Cookie("session".into()), TokenSource::Header];
        let c = credential(&h, &cookie_first).unwrap().unwrap();
        assert_eq!(c.token, "bbb");
        let only_cookie = headers(&[("cookie", "theme=dark; session=ccc")]);
        assert_eq!(
            credential(&only_cookie, &both()).unwrap().unwrap().token,
            "ccc"
        );
        assert_eq!(credential(&headers(&[]), &both()), Ok(None));
    }

    #[test]
    fn a_broken_source_is_refused_not_skipped() {
        let bad_header = headers(&[("authorization", "Basic x"), ("cookie", "session=bbb")]);
        assert!(credential(&bad_header, &both()).is_err());
        let twice = headers(&[("cookie", "session=a"), ("cookie", "session=b")]);
        assert!(credential(&twice, &both()).is_err());
        let two_headers = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(credential(&two_headers, &both()).is_err());
    }

    #[test]
    fn an_authorization_header_the_route_does_not_take_is_refused() {
        let cookie_only = vec![TokenSource::Cookie("session".into())];
        let h = headers(&[("authorization", "Bearer aaa")]);
        assert!(credential(&h, &cookie_only).is_err());
        let with_cookie = headers(&[("authorization", "Bearer aaa"), ("cookie", "session=b")]);
        assert!(credential(&with_cookie, &cookie_only).is_err());
        let cookie = headers(&[("cookie", "session=b")]);
        assert_eq!(
            credential(&cookie, &cookie_only).unwrap().unwrap().token,
            "b"
        );
    }
}
