//! Header names on the wire in lower case: pingora's case map dropped from the heads the
//! gateway edits, so its headers go straight into the `http::HeaderMap`.
//!
//! Pingora keeps a second map beside each head's `HeaderMap` holding every name's wire
//! spelling, and its `insert_header` turns the name into that spelling, parses it back into a
//! `HeaderName` and writes both maps, growing each as it fills: about 1,400 instructions per
//! header, and a proxied answer gets 17 of them. HTTP field names are case-insensitive (RFC
//! 9110 section 5.1) and HTTP/2 sends them in lower case (RFC 9113 section 8.2.2), so the
//! gateway gives that map up for the heads it edits: a head without it is written with
//! pingora's title case for the dozen common names (`Content-Length`, `Date`, ...) and lower
//! case for the rest.
//!
//! Pingora hands the head out by `&mut` with no way to reach its `HeaderMap` mutably, so the
//! head is taken apart (`From<ResponseHeader> for http::response::Parts`) and rebuilt from its
//! parts, which keep the status, version, headers and extensions; what the parts lack (a
//! response's non-standard reason phrase, a request's verbatim target and HTTP/2 end-of-stream
//! flag) is carried across here. No allocation, no copy of a header.

use http::HeaderMap;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;

/// Runs `edit` on the response's header map, the case map dropped.
pub fn response<R>(resp: &mut ResponseHeader, edit: impl FnOnce(&mut HeaderMap) -> R) -> Result<R> {
    let reason = (resp.get_reason_phrase() != resp.status.canonical_reason())
        .then(|| resp.get_reason_phrase().map(str::to_owned))
        .flatten();
    let empty = ResponseHeader::from(http::Response::new(()).into_parts().0);
    let mut parts: http::response::Parts = std::mem::replace(resp, empty).into();
    let out = edit(&mut parts.headers);
    *resp = ResponseHeader::from(parts);
    if reason.is_some() {
        resp.set_reason_phrase(reason.as_deref())?;
    }
    Ok(out)
}

/// Runs `edit` on the request's header map, the case map dropped.
pub fn request<R>(req: &mut RequestHeader, edit: impl FnOnce(&mut HeaderMap) -> R) -> Result<R> {
    // A target the URI does not reproduce (absolute form, non-UTF-8) is kept verbatim.
    let from_uri = req
        .uri
        .path_and_query()
        .is_some_and(|pq| pq.as_str().as_bytes() == req.raw_path());
    let raw = (!from_uri).then(|| req.raw_path().to_vec());
    let end_stream = req.send_end_stream();
    let empty = RequestHeader::from(http::Request::new(()).into_parts().0);
    let mut parts: http::request::Parts = std::mem::replace(req, empty).into();
    let out = edit(&mut parts.headers);
    *req = RequestHeader::from(parts);
    if let Some(raw) = raw {
        req.set_raw_path(&raw)?;
    }
    if let Some(end_stream) = end_stream {
        req.set_send_end_stream(end_stream);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};

    fn wire(resp: &ResponseHeader) -> String {
        let mut buf = bytes::BytesMut::new();
        resp.header_to_h1_wire(&mut buf);
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn a_response_keeps_its_status_reason_and_values_with_names_in_lower_case() {
        let mut resp = ResponseHeader::build(203, None).unwrap();
        resp.set_reason_phrase(Some("Fine Thanks")).unwrap();
        resp.append_header("X-Custom-Thing", "a").unwrap();
        resp.append_header("X-Custom-Thing", "b").unwrap();
        resp.insert_header(CONTENT_TYPE, "text/plain").unwrap();
        response(&mut resp, |h| {
            h.insert(
                HeaderName::from_static("x-added"),
                HeaderValue::from_static("1"),
            )
        })
        .unwrap();
        assert_eq!(resp.status, 203);
        assert_eq!(resp.get_reason_phrase(), Some("Fine Thanks"));
        let wire = wire(&resp);
        assert!(
            wire.contains("x-custom-thing: a\r\nx-custom-thing: b\r\n"),
            "{wire}"
        );
        assert!(wire.contains("Content-Type: text/plain\r\n"), "{wire}");
        assert!(wire.contains("x-added: 1\r\n"), "{wire}");
        // Later edits through pingora's own methods still work on the head.
        resp.insert_header("cache-status", "x").unwrap();
        assert_eq!(resp.headers["cache-status"], "x");
    }

    #[test]
    fn a_request_keeps_its_method_target_and_values() {
        let mut req = RequestHeader::build("POST", b"/a/b?c=d", None).unwrap();
        req.append_header("X-Thing", "1").unwrap();
        request(&mut req, |h| {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("x"))
        })
        .unwrap();
        assert_eq!(req.method, http::Method::POST);
        assert_eq!(req.raw_path(), b"/a/b?c=d");
        assert_eq!(req.headers["x-thing"], "1");
        assert_eq!(req.headers[CONTENT_TYPE], "x");
        assert!(!req.has_case());
    }

    #[test]
    fn a_target_the_uri_does_not_reproduce_is_kept_verbatim() {
        for target in [&b"http://example.com/x?y"[..], b"/caf\xe9"] {
            let mut req = RequestHeader::build("GET", target, None).unwrap();
            request(&mut req, |_| ()).unwrap();
            assert_eq!(req.raw_path(), target);
        }
    }
}
