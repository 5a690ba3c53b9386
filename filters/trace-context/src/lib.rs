//! W3C Trace Context, level 1 (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` request headers, which incoming context a gateway continues, and the
//! parent-based ratio sampler.
//!
//! Plain Rust with no I/O: the gateway hands it the incoming header values and whether their
//! sender is trusted, and gets back the context to record and to send upstream.

mod ids;
mod sampler;
mod traceparent;
mod tracestate;

pub use ids::{SpanId, TraceId};
pub use sampler::Sampler;
pub use traceparent::{TraceParent, FLAG_SAMPLED};
pub use tracestate::{valid_tracestate, MAX_TRACESTATE_BYTES};

/// Whose `traceparent`/`tracestate` continue (`[tracing] trust_incoming`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustIncoming {
    /// Every sender's context continues.
    All,
    /// Only a peer in `server.trusted_proxies` continues a trace (its clients' headers were
    /// judged by it); anyone else starts a new one.
    TrustedProxies,
    /// Every request starts a new trace.
    None,
}

/// A request's trace: the ids it is recorded under and whether it is sampled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestTrace {
    pub trace_id: TraceId,
    /// The gateway's SERVER span.
    pub span_id: SpanId,
    /// The incoming parent span, when a trusted trace was continued.
    pub parent: Option<SpanId>,
    pub sampled: bool,
    /// The trusted sender's `tracestate`, forwarded as it came (valid, and bounded by
    /// [`MAX_TRACESTATE_BYTES`]); never an untrusted one.
    pub tracestate: Option<String>,
}

impl RequestTrace {
    /// The context for a request whose `traceparent` and `tracestate` header values are
    /// given (all occurrences). An untrusted or malformed `traceparent` starts a new trace,
    /// sampled by `sampler`; `tracestate` is kept only beside a continued `traceparent`
    /// (W3C section 3.3.1.1: without a valid `traceparent` it must be discarded).
    pub fn start<'a>(
        trust: TrustIncoming,
        sender_trusted: bool,
        traceparent: impl IntoIterator<Item = &'a [u8]>,
        tracestate: impl IntoIterator<Item = &'a [u8]>,
        sampler: &Sampler,
    ) -> RequestTrace {
        let trusted = match trust {
            TrustIncoming::All => true,
            TrustIncoming::TrustedProxies => sender_trusted,
            TrustIncoming::None => false,
        };
        let parent = if trusted {
            single(traceparent).and_then(TraceParent::parse)
        } else {
            None
        };
        match parent {
            Some(parent) => RequestTrace {
                trace_id: parent.trace_id,
                span_id: SpanId::random(),
                parent: Some(parent.parent_id),
                sampled: parent.sampled(),
                tracestate: tracestate::join(tracestate),
            },
            None => {
                let trace_id = TraceId::random();
                RequestTrace {
                    sampled: sampler.sample(&trace_id),
                    trace_id,
                    span_id: SpanId::random(),
                    parent: None,
                    tracestate: None,
                }
            }
        }
    }

    /// The `traceparent` to send upstream, naming `parent` (the CLIENT span of the try) as
    /// the parent.
    pub fn traceparent(&self, parent: SpanId) -> TraceParent {
        TraceParent {
            trace_id: self.trace_id,
            parent_id: parent,
            flags: if self.sampled { FLAG_SAMPLED } else { 0 },
        }
    }
}

/// The one value of a header that must occur once; several `traceparent` fields make the
/// header invalid (W3C section 3.2: "vendors MUST accept only one").
fn single<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
    let mut values = values.into_iter();
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

#[cfg(test)]
mod tests;
