//! The request head: where an HTTP/1 header section ends, and whether it may pass. The
//! gateway's intake reads each header section itself (so its deadline and size limit hold
//! from the first byte) and asks this module about the bytes read so far.
//!
//! The end of the section is searched incrementally, each byte once, so a client trickling
//! bytes cannot make the gateway re-parse a growing buffer; the complete section is then
//! parsed once, whole, and checked against the framing rules a gateway in front of another
//! HTTP parser must hold (request smuggling shapes).

use std::borrow::Cow;
use std::mem::MaybeUninit;

/// CR/LF bytes tolerated before a request line (RFC 9112 section 2.2 asks to ignore at least
/// one empty line; more is someone probing).
const MAX_LEADING_EMPTY: usize = 4;
/// The most header fields a configuration can allow.
pub const MAX_FIELDS: usize = 256;

/// The operator's limits on a header section.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest section in bytes, request line included.
    pub bytes: usize,
    /// Most header fields (at most [`MAX_FIELDS`]).
    pub fields: usize,
}

/// What the bytes read so far amount to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Head {
    /// No end yet, and nothing wrong so far: read more.
    Partial,
    /// A complete, acceptable section (possibly followed by body bytes).
    Complete,
    /// Over the size or field-count limit (431).
    TooLarge,
    /// Malformed or ambiguous framing (400), with the reason for the client.
    Malformed(Cow<'static, str>),
    /// `CONNECT`: the gateway is a reverse proxy, not a tunnel (405).
    Connect,
}

/// The incremental search over one request's growing buffer.
#[derive(Debug, Default)]
pub struct Scan {
    searched: usize,
}

impl Scan {
    /// Judges `buf`, the bytes of this request read so far (each call sees the previous
    /// call's bytes plus more).
    pub fn examine(&mut self, buf: &[u8], limits: &Limits) -> Head {
        let start = buf
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
        if start > MAX_LEADING_EMPTY {
            return malformed("empty lines before the request line");
        }
        match section_end(buf, self.searched.max(start)) {
            Some(end) if end > limits.bytes => Head::TooLarge,
            Some(end) => check(&buf[..end], limits),
            None if buf.len() > limits.bytes => Head::TooLarge,
            None => {
                self.searched = buf.len().saturating_sub(2).max(start);
                Head::Partial
            }
        }
    }
}

/// The offset just past the blank line ending a header section (CRLF or bare LF line ends),
/// searching from `from`.
fn section_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(offset) = buf.get(i..)?.iter().position(|b| *b == b'\n') {
        let lf = i + offset;
        match (buf.get(lf + 1), buf.get(lf + 2)) {
            (Some(b'\n'), _) => return Some(lf + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(lf + 3),
            (None, _) | (Some(b'\r'), None) => return None,
            _ => i = lf + 1,
        }
    }
    None
}

fn malformed(reason: &'static str) -> Head {
    Head::Malformed(Cow::Borrowed(reason))
}

/// Parses a complete header section and applies the framing rules.
fn check(head: &[u8], limits: &Limits) -> Head {
    let fields = limits.fields.min(MAX_FIELDS);
    match parse_and_frame(head, fields) {
        Ok(verdict) => verdict,
        Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
        // Pingora percent-encodes bytes a request target may not hold raw (`|`, `{`, a space
        // in the path...) rather than refuse them, so judge the rest of the section with those
        // bytes masked; pingora still reads the original.
        Err(httparse::Error::Token | httparse::Error::Version) => {
            match parse_and_frame(&mask_target(head), fields) {
                Ok(verdict) => verdict,
                Err(httparse::Error::TooManyHeaders) => Head::TooLarge,
                Err(_) => malformed("malformed request line"),
            }
        }
        Err(e) => Head::Malformed(Cow::Owned(format!("malformed request header section: {e}"))),
    }
}

/// One httparse pass (the parser pingora uses) over uninitialised field slots: no 8 KiB
/// of empty headers to write per request.
fn parse_and_frame(bytes: &[u8], fields: usize) -> Result<Head, httparse::Error> {
    let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    Ok(
        match req.parse_with_uninit_headers(bytes, &mut storage[..fields])? {
            httparse::Status::Complete(_) => judge(&req),
            httparse::Status::Partial => malformed("malformed request header section"),
        },
    )
}

fn judge(req: &httparse::Request<'_, '_>) -> Head {
    if req.method == Some("CONNECT") {
        return Head::Connect;
    }
    let verdict = framing(req.version, req.headers).and_then(|host| target(req.path, host));
    match verdict {
        Ok(()) => Head::Complete,
        Err(reason) => malformed(reason),
    }
}

/// The request target's form (RFC 9112 section 3.2): origin-form (`/path`) passes (`*`, the
/// asterisk-form of a server-wide `OPTIONS`, names nothing the gateway routes);
/// absolute-form (`http://host/path`) passes only with an `http` or `https` scheme and an
/// authority that is exactly the `Host` field, so the two can never name different sites
/// (pingora refuses a mismatch too, with a bare answer of its own). Anything else, such as
/// authority-form outside CONNECT or another scheme, is refused.
fn target(path: Option<&str>, host: Option<&[u8]>) -> Result<(), &'static str> {
    let path = path.unwrap_or_default();
    // httparse lets bytes above 0x7f through; pingora's URI parser then refuses them.
    if !path.is_ascii() {
        return Err("the request target holds bytes that are not ASCII");
    }
    if path.starts_with('/') {
        return Ok(());
    }
    let rest = ["http://", "https://"].iter().find_map(|scheme| {
        path.get(..scheme.len())
            .filter(|s| s.eq_ignore_ascii_case(scheme))
            .map(|_| &path[scheme.len()..])
    });
    let Some(rest) = rest else {
        return Err("the request target must be a path");
    };
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let plain = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !plain {
        return Err("the request target names no plain host");
    }
    if host != Some(authority.as_bytes()) {
        return Err("the request target names another host than the Host header");
    }
    Ok(())
}

/// A copy of the section with every ASCII byte of the request target that is not plainly legal
/// replaced by `x` (the target is everything between the request line's first and last space).
fn mask_target(head: &[u8]) -> Vec<u8> {
    let mut out = head.to_vec();
    let start = out
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))
        .unwrap_or(0);
    let line_end = out[start..]
        .iter()
        .position(|b| *b == b'\n')
        .map_or(out.len(), |i| start + i);
    let line = &out[start..line_end];
    let (Some(first), Some(last)) = (
        line.iter().position(|b| *b == b' '),
        line.iter().rposition(|b| *b == b' '),
    ) else {
        return out;
    };
    if last <= first {
        return out;
    }
    for b in &mut out[start + first + 1..start + last] {
        // Bytes above 0x7f stay: pingora cannot escape them into a URI, so they are refused.
        let plain =
            !b.is_ascii() || b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%#[]".contains(b);
        if !plain {
            *b = b'x';
        }
    }
    out
}

/// The framing rules: one way to find the body's end and one authority.
///
/// Transfer-Encoding must be exactly `chunked`, never beside Content-Length (RFC 9112 section
/// 6.1: the two parsers behind a gateway may disagree on which wins) and never in HTTP/1.0;
/// Content-Length appears at most once, as digits; Host exactly once in HTTP/1.1 and at most
/// once in HTTP/1.0 (section 3.2), without userinfo. Returns the Host value.
fn framing<'b>(
    version: Option<u8>,
    headers: &[httparse::Header<'b>],
) -> Result<Option<&'b [u8]>, &'static str> {
    let (mut lengths, mut length_ok, mut hosts) = (0usize, true, 0usize);
    let mut host = None;
    let (mut encoded, mut codings, mut only_chunked) = (false, 0usize, true);
    for field in headers {
        let name = field.name;
        if name.eq_ignore_ascii_case("content-length") {
            lengths += 1;
            let digits = field.value.trim_ascii();
            length_ok &=
                !digits.is_empty() && digits.len() <= 18 && digits.iter().all(u8::is_ascii_digit);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            encoded = true;
            for coding in field.value.split(|b| *b == b',') {
                let coding = coding.trim_ascii();
                if coding.is_empty() {
                    continue;
                }
                codings += 1;
                only_chunked &= coding.eq_ignore_ascii_case(b"chunked");
            }
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
            host = Some(field.value.trim_ascii());
        }
    }
    if encoded {
        if version == Some(0) {
            return Err("Transfer-Encoding is not allowed in an HTTP/1.0 request");
        }
        if lengths > 0 {
            return Err("Content-Length together with Transfer-Encoding is ambiguous");
        }
        if codings != 1 || !only_chunked {
            return Err("only a single chunked transfer coding is accepted");
        }
    }
    if lengths > 1 {
        return Err("more than one Content-Length");
    }
    if !length_ok {
        return Err("Content-Length is not a number");
    }
    if hosts > 1 {
        return Err("more than one Host header");
    }
    if hosts == 0 && version != Some(0) {
        return Err("an HTTP/1.1 request needs a Host header");
    }
    if host.is_some_and(|h| h.contains(&b'@')) {
        return Err("the Host header holds userinfo");
    }
    if host.is_some_and(|h| !valid_host(h)) {
        return Err("the Host header is not a host name or address");
    }
    Ok(host)
}

/// RFC 9110 section 7.2 and RFC 3986 section 3.2.2: `uri-host [ ":" port ]`, where the host is
/// an IP literal in brackets or a reg-name (unreserved, sub-delims and escapes). RFC 9112
/// section 3.2 asks for 400 on an invalid Host; an empty one is valid.
fn valid_host(host: &[u8]) -> bool {
    let (name, port) = if host.first() == Some(&b'[') {
        let Some(close) = host.iter().position(|b| *b == b']') else {
            return false;
        };
        let literal = &host[1..close];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return false;
        }
        (&host[..0], &host[close + 1..])
    } else {
        match host.iter().position(|b| *b == b':') {
            Some(colon) => (&host[..colon], &host[colon..]),
            None => (host, &host[host.len()..]),
        }
    };
    let name_ok = name.iter().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            )
    });
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        bytes: 16 * 1024,
        fields: 100,
    };

    /// Ok(complete?) or Err(the status the gateway answers).
    fn verdict(bytes: &[u8]) -> Result<bool, u16> {
        status(Scan::default().examine(bytes, &LIMITS))
    }

    fn status(head: Head) -> Result<bool, u16> {
        match head {
            Head::Complete => Ok(true),
            Head::Partial => Ok(false),
            Head::TooLarge => Err(431),
            Head::Malformed(_) => Err(400),
            Head::Connect => Err(405),
        }
    }

    #[test]
    fn a_plain_request_is_complete_and_a_prefix_is_partial() {
        let req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(verdict(req), Ok(true));
        for cut in 0..req.len() {
            assert_eq!(verdict(&req[..cut]), Ok(false), "cut at {cut}");
        }
        assert_eq!(verdict(b"GET / HTTP/1.1\nHost: x\n\n"), Ok(true));
        assert_eq!(verdict(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"), Ok(true));
    }

    #[test]
    fn trickled_bytes_are_searched_once_and_still_found() {
        let req = b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc";
        let mut scan = Scan::default();
        let mut done = None;
        for end in 1..=req.len() {
            if scan.examine(&req[..end], &LIMITS) == Head::Complete {
                done = Some(end);
                break;
            }
        }
        assert_eq!(done, Some(req.len() - 3));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        for req in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"HELLO\r\n\r\n",
            b"\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(verdict(req), Err(400), "{}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn hosts_and_target_forms_are_checked() {
        for req in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: user@x\r\n\r\n",
            b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://x@x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http://evil.example/ HTTP/1.1\r\n\r\n",
            b"GET http://evil.example/ HTTP/1.0\r\n\r\n",
            b"GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET x:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET http:///a HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET api/x HTTP/1.1\r\nHost: x\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET /\x80 HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a:1:2\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
        ] {
            assert_eq!(verdict(req), Err(400), "{}", String::from_utf8_lossy(req));
        }
        for req in [
            &b"GET / HTTP/1.0\r\n\r\n"[..],
            b"GET http://x/a?b HTTP/1.1\r\nHost: x\r\n\r\n",
            b"GET HTTPS://x:8443 HTTP/1.1\r\nHost: x:8443\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: music.example.com:443\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        ] {
            assert_eq!(verdict(req), Ok(true), "{}", String::from_utf8_lossy(req));
        }
        for req in [
            &b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"[..],
            b"CONNECT evil.example:443 HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(verdict(req), Err(405), "{}", String::from_utf8_lossy(req));
        }
    }

    #[test]
    fn targets_pingora_would_escape_are_accepted() {
        assert_eq!(
            verdict(b"GET /a|b?q={1} HTTP/1.1\r\nHost: x\r\n\r\n"),
            Ok(true)
        );
        assert_eq!(
            verdict(
                b"POST /a|b HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n"
            ),
            Err(400)
        );
    }

    #[test]
    fn sizes_and_counts_over_the_limits_get_431() {
        let mut big = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 17 * 1024));
        assert_eq!(verdict(&big), Err(431), "no end in sight");
        big.extend(b"\r\n\r\n");
        assert_eq!(verdict(&big), Err(431), "complete but too large");
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..101 {
            many.extend(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(verdict(&many), Err(431));
    }

    /// Request-shaped bytes: known pieces of request lines and fields, mixed with noise.
    fn head_like() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(b"GET / HTTP/1.1\r\n".to_vec()),
            Just(b"POST /a|b HTTP/1.0\r\n".to_vec()),
            Just(b"Host: x\r\n".to_vec()),
            Just(b"Content-Length: 5\r\n".to_vec()),
            Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
            Just(b"Transfer-Encoding: gzip,chunked\r\n".to_vec()),
            Just(b" folded\r\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b" ".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..12),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|p| p.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(20_000))]

        /// Whatever arrives, the intake answers without panicking, and reading the bytes in
        /// pieces (as the network delivers them) reaches the same verdict as reading them whole.
        #[test]
        fn trickled_and_whole_reads_agree_and_never_panic(
            bytes in head_like(),
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..6),
        ) {
            let whole = verdict(&bytes);
            let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
            ends.push(bytes.len());
            ends.sort_unstable();
            let mut scan = Scan::default();
            let mut pieces = Ok(false);
            for end in ends {
                pieces = status(scan.examine(&bytes[..end], &LIMITS));
                if pieces != Ok(false) {
                    break;
                }
            }
            proptest::prop_assert_eq!(whole, pieces);
            proptest::prop_assert_eq!(mask_target(&bytes).len(), bytes.len());
        }
    }
}
