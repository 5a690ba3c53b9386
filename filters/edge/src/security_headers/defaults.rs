//! The built-in header values. They are `const`, so an invalid name or value is a compile
//! error rather than a start-up panic.

use http::header::{
    CONTENT_SECURITY_POLICY, REFERRER_POLICY, SERVER, STRICT_TRANSPORT_SECURITY,
    X_CONTENT_TYPE_OPTIONS, X_DNS_PREFETCH_CONTROL, X_FRAME_OPTIONS, X_XSS_PROTECTION,
};
use http::{HeaderName, HeaderValue};

/// Helmet 8's default Content-Security-Policy, byte for byte (helmet
/// `contentSecurityPolicy.getDefaultDirectives()`, joined with `;`). It allows only
/// same-origin scripts, forbids plugins (`object-src 'none'`) and inline event handlers
/// (`script-src-attr 'none'`), and limits framing to the same origin
/// (MDN: Content-Security-Policy).
pub const DEFAULT_CSP: &str = "default-src 'self';base-uri 'self';font-src 'self' https: data:;form-action 'self';frame-ancestors 'self';img-src 'self' data:;object-src 'none';script-src 'self';script-src-attr 'none';style-src 'self' https: 'unsafe-inline';upgrade-insecure-requests";

/// One year, subdomains included (Helmet 8; RFC 6797 section 6.1). Not `preload`: joining
/// the browsers' preload list is an operator's deliberate, hard-to-undo decision.
pub const DEFAULT_HSTS: &str = "max-age=31536000; includeSubDomains";

/// Every default, in the order they are written. `None` means "remove": `Server` and
/// `X-Powered-By` advertise the backend's software and version to scanners (OWASP Secure
/// Headers Project).
pub const DEFAULTS: [(HeaderName, Option<HeaderValue>); 14] = [
    (
        CONTENT_SECURITY_POLICY,
        Some(HeaderValue::from_static(DEFAULT_CSP)),
    ),
    (
        STRICT_TRANSPORT_SECURITY,
        Some(HeaderValue::from_static(DEFAULT_HSTS)),
    ),
    // MIME sniffing can turn an uploaded image into a script (MDN: X-Content-Type-Options).
    (
        X_CONTENT_TYPE_OPTIONS,
        Some(HeaderValue::from_static("nosniff")),
    ),
    // Clickjacking defence for browsers without CSP `frame-ancestors` (RFC 7034).
    (
        X_FRAME_OPTIONS,
        Some(HeaderValue::from_static("SAMEORIGIN")),
    ),
    // No URL (with its tokens or search terms) leaks to other sites (W3C Referrer Policy).
    (
        REFERRER_POLICY,
        Some(HeaderValue::from_static("no-referrer")),
    ),
    // Process isolation against Spectre-style cross-window attacks (HTML standard, COOP).
    (
        HeaderName::from_static("cross-origin-opener-policy"),
        Some(HeaderValue::from_static("same-origin")),
    ),
    // Other sites cannot embed these responses (Fetch standard, CORP).
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        Some(HeaderValue::from_static("same-origin")),
    ),
    // Origin-keyed agent clusters (HTML standard, Origin-Agent-Cluster).
    (
        HeaderName::from_static("origin-agent-cluster"),
        Some(HeaderValue::from_static("?1")),
    ),
    (
        X_DNS_PREFETCH_CONTROL,
        Some(HeaderValue::from_static("off")),
    ),
    // Old Internet Explorer opened downloads in the site's context.
    (
        HeaderName::from_static("x-download-options"),
        Some(HeaderValue::from_static("noopen")),
    ),
    // No Flash/PDF cross-domain policy files.
    (
        HeaderName::from_static("x-permitted-cross-domain-policies"),
        Some(HeaderValue::from_static("none")),
    ),
    // `0` switches off legacy XSS auditors, which themselves enabled leaks (OWASP; MDN).
    (X_XSS_PROTECTION, Some(HeaderValue::from_static("0"))),
    (SERVER, None),
    (HeaderName::from_static("x-powered-by"), None),
];
