//! Finished spans as OTLP messages (the official protobuf definitions, `opentelemetry-proto`),
//! built on the exporter's thread.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span::SpanKind, status::StatusCode, ResourceSpans, ScopeSpans, Span, Status,
};

use super::record::{FinishedTrace, Kind, SpanData, Value};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The resource every span of a destination is reported under.
pub fn resource(service_name: &str) -> Resource {
    Resource {
        attributes: vec![
            string("service.name", service_name),
            string("service.version", VERSION),
            string("telemetry.sdk.name", "portcullis"),
            string("telemetry.sdk.language", "rust"),
        ],
        ..Default::default()
    }
}

/// One export request for `traces`, all of one destination (`resource`).
pub fn request(resource: &Resource, traces: Vec<FinishedTrace>) -> ExportTraceServiceRequest {
    let count = traces.iter().map(|t| t.spans.len()).sum();
    let mut spans = Vec::with_capacity(count);
    for trace in traces {
        let trace_id = trace.trace_id.0.to_vec();
        let state = trace.tracestate.unwrap_or_default();
        for span in trace.spans {
            spans.push(span_message(&trace_id, &state, span));
        }
    }
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
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
}

fn span_message(trace_id: &[u8], state: &str, span: SpanData) -> Span {
    let kind = match span.kind {
        Kind::Server => SpanKind::Server,
        Kind::Client => SpanKind::Client,
        Kind::Internal => SpanKind::Internal,
    };
    // Only errors get a status (the conventions leave it unset otherwise).
    let status = span.error.then(|| Status {
        code: StatusCode::Error as i32,
        message: String::new(),
    });
    Span {
        trace_id: trace_id.to_vec(),
        span_id: span.span_id.0.to_vec(),
        // The SERVER span carries the incoming tracestate it continued.
        trace_state: if span.kind == Kind::Server {
            state.to_string()
        } else {
            String::new()
        },
        parent_span_id: span.parent.map_or_else(Vec::new, |p| p.0.to_vec()),
        // W3C trace flags (sampled), with "parent is remote" known (bit 8) and set for a
        // continued SERVER span.
        flags: 0x01
            | 0x100
            | if span.kind == Kind::Server && span.parent.is_some() {
                0x200
            } else {
                0
            },
        name: span.name.into_owned(),
        kind: kind as i32,
        start_time_unix_nano: span.start_ns,
        end_time_unix_nano: span.end_ns.max(span.start_ns),
        attributes: span
            .attributes
            .into_iter()
            .map(|(key, value)| KeyValue {
                key: key.into(),
                value: Some(AnyValue {
                    value: Some(match value {
                        Value::Str(s) => any_value::Value::StringValue(s.into_owned()),
                        Value::Int(n) => any_value::Value::IntValue(n),
                    }),
                }),
                ..Default::default()
            })
            .collect(),
        status,
        ..Default::default()
    }
}

fn string(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}
