use super::*;

const PARENT: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

fn start(trust: TrustIncoming, sender_trusted: bool, tp: &[&[u8]], ts: &[&[u8]]) -> RequestTrace {
    RequestTrace::start(
        trust,
        sender_trusted,
        tp.iter().copied(),
        ts.iter().copied(),
        &Sampler::new(0.0),
    )
}

#[test]
fn a_valid_traceparent_parses_and_prints_back() {
    let tp = TraceParent::parse(PARENT).unwrap();
    assert_eq!(tp.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(tp.parent_id.to_string(), "b7ad6b7169203331");
    assert!(tp.sampled());
    assert_eq!(tp.to_string().as_bytes(), PARENT);
}

#[test]
fn malformed_traceparents_are_refused() {
    let bad: &[&[u8]] = &[
        b"",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
        b"00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        b"00-00000000000000000000000000000000-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
        b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        b"00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"0g-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
        b"01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
    ];
    for value in bad {
        assert_eq!(
            TraceParent::parse(value),
            None,
            "{}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn a_later_version_is_read_by_its_prefix_and_unknown_flags_go() {
    let tp = TraceParent::parse(b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-03-what")
        .unwrap();
    assert_eq!(tp.flags, FLAG_SAMPLED);
    assert!(
        TraceParent::parse(b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00").is_some()
    );
}

#[test]
fn a_trusted_parent_continues_with_its_sampling_decision_and_state() {
    let t = start(
        TrustIncoming::TrustedProxies,
        true,
        &[PARENT],
        &[b"congo=t61rcWkgMzE", b"rojo=00f067aa0ba902b7"],
    );
    assert_eq!(t.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(
        t.parent.map(|p| p.to_string()).as_deref(),
        Some("b7ad6b7169203331")
    );
    assert!(t.sampled, "the parent's sampled flag wins over the ratio");
    assert_eq!(
        t.tracestate.as_deref(),
        Some("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
    );
    assert_ne!(
        t.span_id,
        t.parent.unwrap(),
        "the gateway's span is its own"
    );
}

#[test]
fn untrusted_senders_start_a_new_trace_without_their_state() {
    for (trust, sender_trusted) in [
        (TrustIncoming::TrustedProxies, false),
        (TrustIncoming::None, true),
        (TrustIncoming::None, false),
    ] {
        let t = start(trust, sender_trusted, &[PARENT], &[b"congo=t61rcWkgMzE"]);
        assert_ne!(t.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(t.parent, None);
        assert_eq!(t.tracestate, None);
        assert!(!t.sampled, "a ratio of 0 samples nothing a client asks for");
    }
    let all = start(TrustIncoming::All, false, &[PARENT], &[]);
    assert_eq!(all.trace_id.to_string(), "0af7651916cd43dd8448eb211c80319c");
}

#[test]
fn a_malformed_or_repeated_parent_starts_a_new_trace_and_drops_the_state() {
    let twice = start(TrustIncoming::All, true, &[PARENT, PARENT], &[b"a=1"]);
    assert_eq!(twice.parent, None);
    assert_eq!(twice.tracestate, None);
    let broken = start(TrustIncoming::All, true, &[b"00-zz"], &[b"a=1"]);
    assert_eq!(broken.parent, None);
    assert_eq!(broken.tracestate, None);
}

#[test]
fn tracestate_grammar_and_bounds() {
    assert!(valid_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
    assert!(valid_tracestate("tenant1@vendor=x, ,b=2"));
    assert!(!valid_tracestate("Congo=1"), "upper-case key");
    assert!(!valid_tracestate("a=1,a=2"), "a key twice");
    assert!(!valid_tracestate("a"), "no value");
    assert!(!valid_tracestate("a=b=c"));
    let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
    assert!(!valid_tracestate(&many.join(",")), "33 members");
    let long = format!("a={}", "x".repeat(MAX_TRACESTATE_BYTES));
    let t = start(TrustIncoming::All, true, &[PARENT], &[long.as_bytes()]);
    assert_eq!(t.tracestate, None, "longer than the bound: dropped whole");
}

#[test]
fn the_ratio_sampler_keeps_about_its_share_and_the_extremes_exactly() {
    let ids: Vec<TraceId> = (0..20_000).map(|_| TraceId::random()).collect();
    let share = |r: f64| ids.iter().filter(|id| Sampler::new(r).sample(id)).count();
    assert_eq!(share(0.0), 0);
    assert_eq!(share(1.0), ids.len());
    let quarter = share(0.25) as f64 / ids.len() as f64;
    assert!((0.22..0.28).contains(&quarter), "{quarter}");
}

#[test]
fn the_upstream_traceparent_names_the_try_as_parent_and_keeps_the_decision() {
    let t = start(TrustIncoming::All, true, &[PARENT], &[]);
    let try_span = SpanId::random();
    let sent = t.traceparent(try_span).to_string();
    assert_eq!(
        sent,
        format!("00-0af7651916cd43dd8448eb211c80319c-{try_span}-01")
    );
    assert_eq!(
        TraceParent::parse(sent.as_bytes()).unwrap().parent_id,
        try_span
    );
}
