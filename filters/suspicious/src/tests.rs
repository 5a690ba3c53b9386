use std::time::Duration;

use proptest::prelude::*;

use super::target::Target;
use super::*;

fn config(disabled: &[&str]) -> Suspicious {
    Suspicious {
        mode: portcullis_config::SuspiciousMode::Block,
        max_uri_bytes: 1024,
        max_headers: 20,
        ban_threshold: 10,
        ban_window: Duration::from_secs(60),
        ban_duration: Duration::from_secs(600),
        ban_table_size: 1000,
        disabled_rules: disabled.iter().map(|s| s.to_string()).collect(),
        ipv6_prefix: 64,
    }
}

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> Parts {
    let mut b = http::Request::builder().method(method).uri(target);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn rule_of(target: &str) -> Option<&'static str> {
    Detector::new(&config(&[]))
        .inspect(&request("GET", target, &[]))
        .map(|f| f.rule)
}

fn assert_rule(rule: &str, targets: &[&str]) {
    for t in targets {
        assert_eq!(rule_of(t), Some(rule), "{t}");
    }
}

fn assert_clean(targets: &[&str]) {
    let d = Detector::new(&config(&[]));
    for t in targets {
        assert_eq!(d.inspect(&request("GET", t, &[])), None, "{t}");
    }
}

#[test]
fn rule_names_are_the_config_names() {
    let names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names, portcullis_config::Suspicious::RULES);
    assert!(Rule::ALL
        .iter()
        .all(|r| Rule::from_name(r.name()) == Some(*r)));
}

#[test]
fn path_traversal_in_every_spelling() {
    assert_rule(
        "path_traversal",
        &[
            "/../../etc/passwd",
            "/static/..%2f..%2fetc%2fpasswd",
            "/static/%2e%2e/%2e%2e/secret",
            "/static/%252e%252e%252fsecret",
            "/static/%25252e%25252e/secret",
            "/static/..%5c..%5cwindows",
            "/static/..\\..\\x",
            "/static/%c0%ae%c0%ae/x",
            "/static/%c0%ae%c0%ae%c0%afx",
            "/static/%e0%80%ae%e0%80%ae/x",
            "/static/%u002e%u002e/x",
            "/static/....//....//x",
            "/static/..;/admin",
            "/x?file=../../config",
            "/x?file=..",
            "/x?file=%2e%2e%5c%2e%2e%5cboot.ini",
            "/x?file=/etc/passwd",
            "/x?url=file:///c:/boot.ini",
        ],
    );
    assert_clean(&[
        "/api/music?range=1..10",
        "/api/music?q=wait...",
        "/api/music?q=...And%20Justice%20for%20All",
        "/static/js/app.3f9a1c.min.js",
        "/api/music?q=R.E.M.",
    ]);
}

#[test]
fn null_bytes_and_control_characters() {
    assert_rule("null_byte", &["/x?file=a%00.jpg", "/x%2500", "/x?q=%u0000"]);
    assert_rule(
        "control_chars",
        &[
            "/x?q=a%0d%0aSet-Cookie:x",
            "/x?q=%1b[31m",
            "/x?q=%7f",
            "/x?q=a%09b",
        ],
    );
}

#[test]
fn sql_injection_shapes() {
    assert_rule(
        "sql_injection",
        &[
            "/x?q=1%27%20OR%20%271%27=%271",
            "/x?q=1'%20or%20'1'='1",
            "/x?q=1'or'1'='1",
            "/x?q=%22%20or%20%22%22=%22",
            "/x?q=x')%20or%20('a'='a",
            "/x?id=1%20or%201=1",
            "/x?id=1%20AND%201=2",
            "/x?id=1+UNION+SELECT+username,password+FROM+users",
            "/x?id=1+union++all+++select+1",
            "/x?id=1/**/union/**/select/**/1",
            "/x?id=1%20union/*x*/select%201",
            "/x?id=1;%20DROP%20TABLE%20users",
            "/x?id=1%27;%20drop%20table%20users;--",
            "/x?id=1%20AND%20SLEEP(5)",
            "/x?id=1%20and%20benchmark(1000000,md5(1))",
            "/x?id=1;WAITFOR%20DELAY%20'0:0:5'",
            "/x?user=admin'--",
            "/x?user=admin'%23",
            "/x?user=admin')%20--%20",
            "/x?id=1'%20order%20by%203--",
            "/x?id=1%20order%20by%2010%23",
            "/x?id=%2527%2520or%2520%25271%2527%253D%25271",
            "/api/music/track/1'%20or%20'1'='1",
        ],
    );
    assert_clean(&[
        "/x?q=select%20your%20favourite%20song",
        "/x?q=union%20station",
        "/x?q=drop%20the%20bass",
        "/x?q=order%20by%20popularity",
        "/x?q=don%27t%20stop",
        "/x?q=%22best%20of%22%201978",
        "/x?q=rock%20%27n%27%20roll",
        "/x?q='wish%20you%20were%20here'%20or%20'money'",
        "/x?q=--%20the%20end%20--",
        "/x?q=don%27t%20--%20stop",
        "/x?q=1%3D1%20lesson",
        "/x?q=top%2010%20or%2020",
        "/x?year=1994&and=2&or=3",
        "/x?q=news%3B%20update%20on%20the%20tour",
        "/x?q=it%27s%20%231",
    ]);
}

#[test]
fn script_injection_shapes() {
    assert_rule(
        "script_injection",
        &[
            "/x?q=%3Cscript%3Ealert(1)%3C/script%3E",
            "/x?q=%253Cscript%253E",
            "/x?q=%3CSCRIPT%20src=//x%3E",
            "/x?q=%3Csvg/onload=alert(1)%3E",
            "/x?q=%3Cimg%20src=x%20onerror=alert(1)%3E",
            "/x?q=%3Ciframe%20src=x%3E",
            "/x?q=%22%20onmouseover=%22x",
            "/x?q='%20autofocus%20onfocus%20=x",
            "/x?next=javascript:alert(1)",
            "/x?next=JaVaScRiPt%3Aalert(1)",
            "/x?q=document.cookie",
            "/x?q=data:text/html;base64,PHNjcmlwdD4=",
            "/x?q=%26lt;script%26gt;",
            "/x?q=%3C/script%3E",
        ],
    );
    assert_clean(&[
        "/x?q=%3Cinsert%20title%20here%3E",
        "/x?q=script%20writing%20music",
        "/x?q=the%20script",
        "/x?online=1&only=2&onsale=yes",
        "/x?q=take%20on%20me",
        "/x?q=on%20error%20resume%20next",
        "/x?q=a%3Cb%20and%20c%3Ed",
    ]);
}

#[test]
fn scanner_user_agents() {
    let d = Detector::new(&config(&[]));
    for ua in [
        "sqlmap/1.7.2#stable (https://sqlmap.org)",
        "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:Port Check)",
        "Mozilla/5.0 (compatible; Nmap Scripting Engine; https://nmap.org/book/nse.html)",
        "masscan/1.3 (https://github.com/robertdavidgraham/masscan)",
        "Mozilla/5.0 zgrab/0.x",
        "WPScan v3.8.22 (https://wpscan.com/wordpress-security-scanner)",
        "gobuster/3.6",
        "Fuzz Faster U Fool v2.1.0 ffuf",
        "Nuclei - Open-source project (github.com/projectdiscovery/nuclei)",
    ] {
        let f = d.inspect(&request("GET", "/", &[("user-agent", ua)]));
        assert_eq!(f.map(|f| f.rule), Some("scanner_user_agent"), "{ua}");
    }
    for ua in [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
        "curl/8.5.0",
        "python-requests/2.31.0",
        "okhttp/4.12.0",
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    ] {
        assert_eq!(d.inspect(&request("GET", "/", &[("user-agent", ua)])), None, "{ua}");
    }
}

#[test]
fn forbidden_methods() {
    let d = Detector::new(&config(&[]));
    for m in ["TRACE", "TRACK", "track"] {
        let f = d.inspect(&request(m, "/", &[])).unwrap();
        assert_eq!(
            (f.rule, f.detail.as_str()),
            ("forbidden_method", &*m.to_uppercase())
        );
    }
    let connect = request("CONNECT", "example.com:443", &[]);
    assert_eq!(d.inspect(&connect).unwrap().rule, "forbidden_method");
    for m in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        assert_eq!(d.inspect(&request(m, "/api/music", &[])), None, "{m}");
    }
}

#[test]
fn oversized_uri_and_too_many_headers() {
    let d = Detector::new(&config(&[]));
    let long = format!("/api/music?ids={}", "1,".repeat(600));
    let f = d.inspect(&request("GET", &long, &[])).unwrap();
    assert_eq!(f.rule, "oversized_uri");
    assert_eq!(f.detail, format!("{} bytes, limit 1024", long.len()));
    let fits = format!("/api/music?ids={}", "1,".repeat(500));
    assert_eq!(d.inspect(&request("GET", &fits, &[])), None);

    let names: Vec<String> = (0..21).map(|i| format!("x-h{i}")).collect();
    let many: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    assert_eq!(
        d.inspect(&request("GET", "/", &many)).unwrap().rule,
        "too_many_headers"
    );
    assert_eq!(d.inspect(&request("GET", "/", &many[..20])), None);
}

#[test]
fn disabled_rules_are_skipped() {
    let cases = [
        (
            "scanner_user_agent",
            request("GET", "/", &[("user-agent", "sqlmap/1.7")]),
        ),
        ("forbidden_method", request("TRACE", "/", &[])),
        ("path_traversal", request("GET", "/x?f=../../etc", &[])),
        ("null_byte", request("GET", "/x?f=a%00", &[])),
        ("control_chars", request("GET", "/x?f=a%0a", &[])),
        (
            "sql_injection",
            request("GET", "/x?id=1%20union%20select%201", &[]),
        ),
        ("script_injection", request("GET", "/x?q=%3Cscript%3E", &[])),
    ];
    for (rule, req) in cases {
        assert_eq!(
            Detector::new(&config(&[])).inspect(&req).map(|f| f.rule),
            Some(rule)
        );
        assert_eq!(
            Detector::new(&config(&[rule])).inspect(&req),
            None,
            "{rule} disabled"
        );
    }
    let all: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
    let d = Detector::new(&config(&all));
    assert_eq!(
        d.inspect(&request("TRACE", "/../%00%3Cscript%3E", &[])),
        None
    );
}

#[test]
fn details_are_short_printable_and_never_echo_the_request() {
    let d = Detector::new(&config(&[]));
    for target in ["/x?q=%0d%0a%1b[2J", "/x?q=%3Cscript%3E%0a", "/x?f=../%00"] {
        let f = d.inspect(&request("GET", target, &[])).unwrap();
        assert!(f.detail.len() <= 64, "{f:?}");
        assert!(f.detail.bytes().all(|b| (0x20..0x7F).contains(&b)), "{f:?}");
    }
}

#[test]
fn decoding_views() {
    let t = Target::new(b"/A%2541+B%c0%afC%u0044\t  E");
    assert_eq!(t.decoded, b"/AA B/CD\t  E");
    assert_eq!(t.canonical, b"/aa b/cd e");
    assert!(t.overlong_separator);
    let korean = Target::new("/?q=%EC%9D%8C%EC%95%85%F0%9F%8E%B8".as_bytes());
    assert_eq!(korean.decoded, "/?q=음악🎸".as_bytes());
    assert!(!korean.overlong_separator);
    let malformed = Target::new(b"/%zz%4%u12%");
    assert_eq!(malformed.decoded, b"/%zz%4%u12%");
}

proptest! {
    #[test]
    fn decoding_never_panics_and_never_grows(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
        let t = Target::new(&raw);
        prop_assert!(t.decoded.len() <= raw.len());
        prop_assert!(t.canonical.len() <= t.decoded.len());
    }

    #[test]
    fn rule_checks_never_panic(raw in "[ -~]{0,200}") {
        static D: std::sync::LazyLock<Detector> =
            std::sync::LazyLock::new(|| Detector::new(&config(&[])));
        let d = &*D;
        let _ = d.inspect_target(raw.as_bytes());
        let _ = sql::find(raw.as_bytes(), &d.sql);
        let _ = script::find(raw.as_bytes(), &d.script);
    }
}
