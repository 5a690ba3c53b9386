//! Finished spans as an OTLP `ExportTraceServiceRequest`, in protobuf, built on the export
//! thread.
//!
//! Written straight from the gateway's span records rather than through the generated
//! message types: building `opentelemetry-proto`'s structs (a `String` per attribute key and
//! value) and letting prost encode them (it recomputes every nested length at each level)
//! cost about 13,000 instructions per sampled request, a third of tracing's whole cost.
//! The bytes are those prost writes for the same messages, field for field and in the same
//! order (by field number): the tests below encode each case both ways with the official definitions and
//! compare, and the end-to-end tests decode every export with them.

use super::record::{FinishedTrace, Kind, SpanData, Value};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Wire types.
const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// `SpanKind` and `StatusCode` values.
const KIND_INTERNAL: u64 = 1;
const KIND_SERVER: u64 = 2;
const KIND_CLIENT: u64 = 3;
const STATUS_ERROR: u64 = 2;

/// W3C trace flags (sampled), with "parent is remote" known (bit 8) and set (bit 9).
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_REMOTE_KNOWN: u32 = 0x100;
const FLAG_REMOTE: u32 = 0x200;

/// The encoded `Resource` every span of a destination is reported under.
pub fn resource(service_name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    for (key, value) in [
        ("service.name", service_name),
        ("service.version", VERSION),
        ("telemetry.sdk.name", "portcullis"),
        ("telemetry.sdk.language", "rust"),
    ] {
        key_value(&mut out, 1, key, &Value::Str(value.to_string().into()));
    }
    out
}

/// The encoded `InstrumentationScope`.
fn scope() -> Vec<u8> {
    let mut out = Vec::with_capacity(32);
    string(&mut out, 1, "portcullis");
    string(&mut out, 2, VERSION);
    out
}

/// One `ExportTraceServiceRequest` for `traces`, all of one destination (`resource`, as
/// [`resource`] encoded it).
pub fn request(resource: &[u8], traces: Vec<FinishedTrace>) -> Vec<u8> {
    let mut spans = Vec::with_capacity(traces.iter().map(|t| t.spans.len()).sum::<usize>() * 400);
    let mut scratch = Vec::with_capacity(512);
    for trace in traces {
        let state = trace.tracestate.as_deref().unwrap_or_default();
        for span in trace.spans {
            scratch.clear();
            span_message(&mut scratch, &trace.trace_id.0, state, &span);
            tag(&mut spans, 2, LEN);
            varint(&mut spans, scratch.len() as u64);
            spans.extend_from_slice(&scratch);
        }
    }
    let scope = scope();
    let scope_spans_len = field_len(1, scope.len()) + spans.len();
    let resource_spans_len = field_len(1, resource.len()) + field_len(2, scope_spans_len);
    let mut out = Vec::with_capacity(field_len(1, resource_spans_len));
    tag(&mut out, 1, LEN); // ExportTraceServiceRequest.resource_spans
    varint(&mut out, resource_spans_len as u64);
    bytes(&mut out, 1, resource); // ResourceSpans.resource
    tag(&mut out, 2, LEN); // ResourceSpans.scope_spans
    varint(&mut out, scope_spans_len as u64);
    bytes(&mut out, 1, &scope); // ScopeSpans.scope
    out.extend_from_slice(&spans); // ScopeSpans.spans
    out
}

/// A `Span`'s fields, in the order prost writes them (by field number), defaults left out.
fn span_message(out: &mut Vec<u8>, trace_id: &[u8], state: &str, span: &SpanData) {
    let server = span.kind == Kind::Server;
    bytes(out, 1, trace_id);
    bytes(out, 2, &span.span_id.0);
    // The SERVER span carries the incoming tracestate it continued.
    if server {
        string(out, 3, state);
    }
    if let Some(parent) = &span.parent {
        bytes(out, 4, &parent.0);
    }
    string(out, 5, &span.name);
    let kind = match span.kind {
        Kind::Server => KIND_SERVER,
        Kind::Client => KIND_CLIENT,
        Kind::Internal => KIND_INTERNAL,
    };
    tag(out, 6, VARINT);
    varint(out, kind);
    let end = span.end_ns.max(span.start_ns);
    for (field, at) in [(7, span.start_ns), (8, end)] {
        if at != 0 {
            tag(out, field, FIXED64);
            out.extend_from_slice(&at.to_le_bytes());
        }
    }
    for (key, value) in &span.attributes {
        key_value(out, 9, key, value);
    }
    // Only errors get a status (the conventions leave it unset otherwise).
    if span.error {
        tag(out, 15, LEN);
        varint(out, field_len_varint(STATUS_ERROR) as u64);
        tag(out, 3, VARINT);
        varint(out, STATUS_ERROR);
    }
    let remote = if server && span.parent.is_some() {
        FLAG_REMOTE
    } else {
        0
    };
    tag(out, 16, FIXED32);
    out.extend_from_slice(&(FLAG_SAMPLED | FLAG_REMOTE_KNOWN | remote).to_le_bytes());
}

/// A `KeyValue` as field `field`: `key` (1) and an `AnyValue` (2) holding a string (1) or an
/// int64 (3).
fn key_value(out: &mut Vec<u8>, field: u64, key: &str, value: &Value) {
    let any_len = match value {
        Value::Str(s) => 1 + varint_len(s.len() as u64) + s.len(),
        Value::Int(n) => field_len_varint(*n as u64),
    };
    let pair_len = if key.is_empty() {
        0
    } else {
        field_len(1, key.len())
    } + field_len(2, any_len);
    tag(out, field, LEN);
    varint(out, pair_len as u64);
    string(out, 1, key);
    tag(out, 2, LEN);
    varint(out, any_len as u64);
    match value {
        Value::Str(s) => {
            // A oneof member is written even when empty.
            tag(out, 1, LEN);
            varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Int(n) => {
            tag(out, 3, VARINT);
            varint(out, *n as u64);
        }
    }
}

/// A string field, left out when empty (proto3 default).
fn string(out: &mut Vec<u8>, field: u64, value: &str) {
    bytes(out, field, value.as_bytes());
}

/// A bytes field, left out when empty.
fn bytes(out: &mut Vec<u8>, field: u64, value: &[u8]) {
    if value.is_empty() {
        return;
    }
    tag(out, field, LEN);
    varint(out, value.len() as u64);
    out.extend_from_slice(value);
}

fn tag(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, field << 3 | wire);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// The bytes of a length-delimited field `field` with `len` bytes of content (empty: none).
fn field_len(field: u64, len: usize) -> usize {
    if len == 0 {
        return 0;
    }
    varint_len(field << 3) + varint_len(len as u64) + len
}

/// The bytes of a varint field numbered below 16 holding `v` (a oneof member: always written).
fn field_len_varint(v: u64) -> usize {
    1 + varint_len(v)
}

#[cfg(test)]
mod tests {
    //! The encoder against the official definitions: the same spans built as
    //! `opentelemetry-proto` messages and encoded by prost give the same bytes.

    use std::borrow::Cow;
    use std::sync::Arc;

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{
        any_value, AnyValue, InstrumentationScope, KeyValue,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{
        span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
    };
    use portcullis_trace_context::{SpanId, TraceId};
    use prost::Message as _;

    use super::*;
    use crate::trace::Destination;

    fn kv(key: &str, value: &Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(match value {
                    Value::Str(s) => any_value::Value::StringValue(s.to_string()),
                    Value::Int(n) => any_value::Value::IntValue(*n),
                }),
            }),
            ..Default::default()
        }
    }

    /// What prost writes for the same spans.
    fn official(service: &str, trace_id: TraceId, state: &str, spans: &[SpanData]) -> Vec<u8> {
        let resource = Resource {
            attributes: [
                ("service.name", service),
                ("service.version", VERSION),
                ("telemetry.sdk.name", "portcullis"),
                ("telemetry.sdk.language", "rust"),
            ]
            .iter()
            .map(|(k, v)| kv(k, &Value::Str(v.to_string().into())))
            .collect(),
            ..Default::default()
        };
        let spans = spans
            .iter()
            .map(|s| Span {
                trace_id: trace_id.0.to_vec(),
                span_id: s.span_id.0.to_vec(),
                trace_state: if s.kind == Kind::Server {
                    state.into()
                } else {
                    String::new()
                },
                parent_span_id: s.parent.map_or_else(Vec::new, |p| p.0.to_vec()),
                flags: 0x101
                    | if s.kind == Kind::Server && s.parent.is_some() {
                        0x200
                    } else {
                        0
                    },
                name: s.name.to_string(),
                kind: match s.kind {
                    Kind::Server => SpanKind::Server,
                    Kind::Client => SpanKind::Client,
                    Kind::Internal => SpanKind::Internal,
                } as i32,
                start_time_unix_nano: s.start_ns,
                end_time_unix_nano: s.end_ns.max(s.start_ns),
                attributes: s.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
                status: s.error.then(|| Status {
                    code: StatusCode::Error as i32,
                    message: String::new(),
                }),
                ..Default::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(resource),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "portcullis".into(),
                        version: VERSION.into(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
        .encode_to_vec()
    }

    fn span(
        kind: Kind,
        parent: Option<SpanId>,
        error: bool,
        attributes: Vec<(&'static str, Value)>,
    ) -> SpanData {
        SpanData {
            span_id: SpanId::random(),
            parent,
            name: Cow::Borrowed("GET /api/music"),
            kind,
            start_ns: 1_764_000_000_123_456_789,
            end_ns: 1_764_000_000_223_456_789,
            attributes,
            error,
        }
    }

    fn destination(service: &str) -> Arc<Destination> {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:1\"]\n[upstreams.a]\npeers = [\"127.0.0.1:2\"]\n\
             [[routes]]\nname = \"a\"\npath_prefix = \"/\"\nupstream = \"a\"\n\
             [tracing]\notlp_endpoint = \"http://127.0.0.1:3\"\nservice_name = \"{service}\"\n"
        );
        let config = portcullis_config::parse(std::path::Path::new("t.toml"), &text, &|_| None)
            .unwrap()
            .tracing
            .unwrap();
        Arc::new(Destination {
            resource: resource(&config.service_name),
            config,
        })
    }

    #[track_caller]
    fn same_bytes(service: &str, state: Option<&str>, spans: Vec<SpanData>) {
        let trace_id = TraceId::random();
        let expected = official(service, trace_id, state.unwrap_or_default(), &spans);
        let destination = destination(service);
        let ours = request(
            &destination.resource,
            vec![FinishedTrace {
                destination: destination.clone(),
                trace_id,
                tracestate: state.map(str::to_string),
                spans,
            }],
        );
        let first = ours.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(
            ours,
            expected,
            "first difference at {first:?} of {} / {}: {:?} / {:?}",
            ours.len(),
            expected.len(),
            first.map(|i| &ours[i.saturating_sub(8)..(i + 8).min(ours.len())]),
            first.map(|i| &expected[i.saturating_sub(8)..(i + 8).min(expected.len())])
        );
        ExportTraceServiceRequest::decode(&ours[..])
            .expect("decodes with the official definitions");
    }

    #[test]
    fn the_bytes_are_prosts() {
        let attributes = || {
            vec![
                ("http.request.method", Value::from("GET")),
                ("url.path", Value::from("/api/music/7".to_string())),
                ("http.response.status_code", Value::Int(503)),
                ("http.request.resend_count", Value::Int(1)),
                ("negative", Value::Int(-5)),
                ("empty", Value::from("")),
                ("long", Value::from("x".repeat(300))),
            ]
        };
        let incoming = SpanId::random();
        let server = span(Kind::Server, Some(incoming), true, attributes());
        let client = span(Kind::Client, Some(server.span_id), false, attributes());
        let internal = span(Kind::Internal, Some(server.span_id), true, vec![]);
        same_bytes(
            "portcullis",
            Some("congo=t61rcWkgMzE"),
            vec![server, client, internal],
        );
        // A new trace's root, no tracestate, a long service name, many spans.
        let root = span(Kind::Server, None, false, attributes());
        let mut many = vec![root];
        for _ in 0..40 {
            many.push(span(Kind::Client, None, false, attributes()));
        }
        same_bytes(&"edge-".repeat(40), None, many);
    }
}
