//! The exporter: finished requests' spans to the OTLP/HTTP endpoint, never in a request's way.
//!
//! Not the OpenTelemetry SDK's batch processor: the SDK's span processors run their export
//! on an async runtime of their own choosing and call back into the request's thread on span
//! end; what the gateway needs is narrower and must hold by construction:
//!
//! - [`Exporter::offer`] never blocks and never allocates beyond the request's own spans: a
//!   lock-free channel send, with the queue bounded by `[tracing] queue_size` spans counted
//!   in an atomic. Past the bound the spans are dropped and counted
//!   (`portcullis_tracing_spans_dropped_total`).
//! - The export runs on its own thread and runtime: a batch of at most [`MAX_BATCH_SPANS`]
//!   spans, gathered for at most `batch_delay`, encoded as OTLP protobuf (`otlp`),
//!   gzipped, and POSTed with pingora's client (http or https, connections
//!   kept alive). Each POST is bounded by `export_timeout`; connection failures, timeouts,
//!   429, 502, 503 and 504 are retried ([`TRIES`] in all, with backoff); what still fails is
//!   dropped and counted. A collector that is down, slow or refusing therefore costs the
//!   spans, never a request, and memory stays bounded by the queue and one batch.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use prometheus::IntCounter;
use tokio::sync::{mpsc, Notify};

use super::otlp;
use super::record::FinishedTrace;
use super::Destination;

/// Most spans in one export request.
pub const MAX_BATCH_SPANS: usize = 512;
/// Tries per batch (the first and two retries).
pub const TRIES: u32 = 3;
/// The first retry's wait; doubled for the next, with jitter.
const BACKOFF: Duration = Duration::from_millis(200);
/// Most bytes of a collector's answer read (the answer is only drained to reuse the connection).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How long an idle connection to the collector is kept.
const IDLE: Duration = Duration::from_secs(60);

enum Message {
    Trace(FinishedTrace),
    /// Export what is queued now, then answer.
    Flush(std::sync::mpsc::Sender<()>),
}

pub struct Exporter {
    sender: OnceLock<mpsc::UnboundedSender<Message>>,
    /// Wakes the export thread early when a full batch is waiting.
    full: Arc<Notify>,
    /// Spans queued and not yet taken into a batch.
    queued: Arc<AtomicUsize>,
    /// `queue_size` of the current configuration.
    capacity: AtomicUsize,
    exported: IntCounter,
    dropped: IntCounter,
    /// The slowest sampled requests of the last minute (the status page).
    pub slow: super::slow::SlowTraces,
}

impl Exporter {
    pub fn new(exported: IntCounter, dropped: IntCounter) -> Exporter {
        Exporter {
            sender: OnceLock::new(),
            full: Arc::new(Notify::new()),
            queued: Arc::new(AtomicUsize::new(0)),
            capacity: AtomicUsize::new(0),
            exported,
            dropped,
            slow: Default::default(),
        }
    }

    /// Applies a configuration's queue bound and starts the export thread the first time a
    /// configuration traces. The thread then stays: spans queued under one configuration are
    /// still exported, to where they were recorded for, after a reload changed or removed
    /// `[tracing]`.
    pub fn configure(&self, queue_size: usize) {
        self.capacity.store(queue_size, Ordering::Relaxed);
        if self.sender.get().is_some() {
            return;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker {
            full: self.full.clone(),
            queued: self.queued.clone(),
            exported: self.exported.clone(),
            dropped: self.dropped.clone(),
            failing: AtomicBool::new(false),
        };
        let spawned = std::thread::Builder::new()
            .name("portcullis-otlp".into())
            .spawn(move || worker.run(rx));
        match spawned {
            Ok(_) => {
                let _ = self.sender.set(tx);
            }
            Err(e) => log::error!("cannot start the span exporter: {e}; spans are dropped"),
        }
    }

    /// Queues a finished request's spans, or drops and counts them when the queue is full.
    /// Never blocks.
    pub fn offer(&self, trace: FinishedTrace) {
        let n = trace.spans.len();
        let capacity = self.capacity.load(Ordering::Relaxed);
        let Some(sender) = self.sender.get() else {
            self.dropped.inc_by(n as u64);
            return;
        };
        let before = self.queued.fetch_add(n, Ordering::AcqRel);
        if before + n > capacity {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.dropped.inc_by(n as u64);
            return;
        }
        if sender.send(Message::Trace(trace)).is_err() {
            self.queued.fetch_sub(n, Ordering::AcqRel);
            self.dropped.inc_by(n as u64);
            return;
        }
        // The export thread sleeps through `batch_delay` without being woken per request
        // (a wake-up costs more than the spans); a full batch wakes it at once.
        if before < MAX_BATCH_SPANS && before + n >= MAX_BATCH_SPANS {
            self.full.notify_one();
        }
    }

    /// Exports what is queued (at shutdown), waiting at most `wait`.
    pub fn flush(&self, wait: Duration) {
        let Some(sender) = self.sender.get() else {
            return;
        };
        let (tx, rx) = std::sync::mpsc::channel();
        if sender.send(Message::Flush(tx)).is_ok() {
            let _ = rx.recv_timeout(wait);
        }
    }
}

struct Worker {
    full: Arc<Notify>,
    queued: Arc<AtomicUsize>,
    exported: IntCounter,
    dropped: IntCounter,
    /// The last batch failed (a failing streak is logged once).
    failing: AtomicBool,
}

impl Worker {
    fn run(self, rx: mpsc::UnboundedReceiver<Message>) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                log::error!("cannot start the span exporter's runtime: {e}");
                return;
            }
        };
        runtime.block_on(self.serve(rx));
    }

    async fn serve(&self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let connector = Connector::new(None);
        loop {
            // Sleep until something is queued: one wake-up per batch, not per request.
            let Some(first) = rx.recv().await else { return };
            let mut pending = Some(first);
            if let Some(Message::Trace(t)) = &pending {
                let delay = t.destination.config.batch_delay;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.full.notified() => {}
                }
            }
            // Drain what is queued, a batch at a time.
            loop {
                let mut batch = Vec::new();
                let mut spans = 0;
                let mut flushed = None;
                while spans < MAX_BATCH_SPANS {
                    let message = match pending.take() {
                        Some(m) => m,
                        None => match rx.try_recv() {
                            Ok(m) => m,
                            Err(_) => break,
                        },
                    };
                    match message {
                        Message::Trace(t) => {
                            spans += t.spans.len();
                            batch.push(t);
                        }
                        Message::Flush(done) => {
                            flushed = Some(done);
                            break;
                        }
                    }
                }
                self.queued.fetch_sub(spans, Ordering::AcqRel);
                // One request per destination (a reload may have changed it mid-batch).
                while let Some(destination) = batch.first().map(|t| t.destination.clone()) {
                    let (mine, rest): (Vec<_>, Vec<_>) = batch
                        .into_iter()
                        .partition(|t| Arc::ptr_eq(&t.destination, &destination));
                    batch = rest;
                    self.export(&connector, &destination, mine).await;
                }
                match flushed {
                    // Whatever was queued before the flush went out: answer, keep draining.
                    Some(done) => {
                        let _ = done.send(());
                    }
                    None if spans < MAX_BATCH_SPANS => break,
                    None => {}
                }
            }
        }
    }

    async fn export(
        &self,
        connector: &Connector,
        destination: &Destination,
        traces: Vec<FinishedTrace>,
    ) {
        let spans: usize = traces.iter().map(|t| t.spans.len()).sum();
        let body = match gzip(&otlp::request(&destination.resource, traces)) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                log::warn!("cannot compress spans: {e}");
                self.dropped.inc_by(spans as u64);
                return;
            }
        };
        let config = &destination.config;
        let mut last_error = String::new();
        for attempt in 0..TRIES {
            if attempt > 0 {
                let base = BACKOFF * 2u32.pow(attempt - 1);
                let jitter = base.mul_f64(rand::random::<f64>() * 0.5);
                tokio::time::sleep(base + jitter).await;
            }
            let result = tokio::time::timeout(
                config.export_timeout,
                post(connector, destination, body.clone()),
            )
            .await
            .unwrap_or_else(|_| {
                Err(Failed::Retry(format!(
                    "no answer within {:?}",
                    config.export_timeout
                )))
            });
            match result {
                Ok(()) => {
                    self.exported.inc_by(spans as u64);
                    if self.failing.swap(false, Ordering::AcqRel) {
                        log::info!("spans are exported to {} again", config.otlp_endpoint.url());
                    }
                    return;
                }
                Err(Failed::Retry(e)) => last_error = e,
                Err(Failed::Final(e)) => {
                    last_error = e;
                    break;
                }
            }
        }
        self.dropped.inc_by(spans as u64);
        if !self.failing.swap(true, Ordering::AcqRel) {
            log::warn!(
                "cannot export spans to {} ({last_error}); they are dropped and counted in portcullis_tracing_spans_dropped_total",
                config.otlp_endpoint.url()
            );
        }
    }
}

enum Failed {
    /// Worth another try: the collector was unreachable, slow, or asked to come back.
    Retry(String),
    /// The collector refused the batch (a 4xx other than 429): retrying would not help.
    Final(String),
}

/// One POST of an encoded batch.
async fn post(connector: &Connector, destination: &Destination, body: Bytes) -> Result<(), Failed> {
    let endpoint = &destination.config.otlp_endpoint;
    let timeout = destination.config.export_timeout;
    let addr = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| Failed::Retry(format!("cannot resolve {}: {e}", endpoint.host)))?
        .next()
        .ok_or_else(|| Failed::Retry(format!("{} resolves to no address", endpoint.host)))?;
    let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
    peer.options.connection_timeout = Some(timeout);
    peer.options.total_connection_timeout = Some(timeout);
    peer.options.read_timeout = Some(timeout);
    peer.options.write_timeout = Some(timeout);
    peer.options.idle_timeout = Some(IDLE);
    let (mut session, _) = connector
        .get_http_session(&peer)
        .await
        .map_err(|e| Failed::Retry(format!("cannot connect: {e}")))?;
    let mut req = RequestHeader::build("POST", endpoint.path.as_bytes(), None)
        .map_err(|e| Failed::Final(e.to_string()))?;
    let length = body.len().to_string();
    for (name, value) in [
        ("host", endpoint.authority.as_str()),
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "gzip"),
        ("content-length", length.as_str()),
        (
            "user-agent",
            concat!("portcullis/", env!("CARGO_PKG_VERSION")),
        ),
    ] {
        req.insert_header(name, value)
            .map_err(|e| Failed::Final(e.to_string()))?;
    }
    for (name, value) in &destination.config.headers {
        req.insert_header(name.clone(), value.clone())
            .map_err(|e| Failed::Final(e.to_string()))?;
    }
    let io = |e: Box<pingora::Error>| Failed::Retry(format!("the exchange failed: {e}"));
    session
        .write_request_header(Box::new(req))
        .await
        .map_err(io)?;
    session.write_request_body(body, true).await.map_err(io)?;
    session.finish_request_body().await.map_err(io)?;
    session.read_response_header().await.map_err(io)?;
    let status = session.response_header().map_or(0, |r| r.status.as_u16());
    let mut read = 0;
    let mut drained = true;
    while let Some(chunk) = session.read_response_body().await.map_err(io)? {
        read += chunk.len();
        if read > MAX_ANSWER_BYTES {
            drained = false;
            break;
        }
    }
    if drained {
        connector
            .release_http_session(session, &peer, Some(IDLE))
            .await;
    }
    match status {
        200..=299 => Ok(()),
        429 | 502 | 503 | 504 => Err(Failed::Retry(format!("answered {status}"))),
        _ => Err(Failed::Final(format!("answered {status}"))),
    }
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    encoder.write_all(data)?;
    encoder.finish()
}
