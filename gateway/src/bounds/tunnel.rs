//! `websocket_idle_timeout` and `websocket_max_duration`: a watch on an HTTP/1 connection's
//! upgraded tunnel. The proxy phases arm it when the upstream answers 101 and touch it for
//! every tunnel chunk either way; the intake races the connection's request against it and
//! drops both connections (client and upstream) when it fires, with an event line and a
//! count. One watch per connection, reset for each request on it; a request that never
//! upgrades never arms it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::Limit;

pub struct TunnelWatch {
    epoch: Instant,
    armed: AtomicBool,
    /// Milliseconds since `epoch`.
    opened: AtomicU64,
    last: AtomicU64,
    idle: AtomicU64,
    max: AtomicU64,
    woken: Notify,
    /// The tunnel's route and request id, for the event line.
    who: Mutex<Option<(String, String)>>,
}

/// Why a watch fired, and for whom.
pub struct Closed {
    pub limit: Limit,
    pub route: String,
    pub request_id: String,
    pub lasted: Duration,
}

impl Default for TunnelWatch {
    fn default() -> Self {
        TunnelWatch {
            epoch: Instant::now(),
            armed: AtomicBool::new(false),
            opened: AtomicU64::new(0),
            last: AtomicU64::new(0),
            idle: AtomicU64::new(0),
            max: AtomicU64::new(0),
            woken: Notify::new(),
            who: Mutex::new(None),
        }
    }
}

impl TunnelWatch {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The upstream answered 101: the tunnel is open from now.
    pub fn arm(&self, idle: Duration, max: Duration, route: &str, request_id: &str) {
        let now = self.now();
        self.opened.store(now, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
        self.idle.store(idle.as_millis() as u64, Ordering::Relaxed);
        self.max.store(max.as_millis() as u64, Ordering::Relaxed);
        *self.who.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((route.to_string(), request_id.to_string()));
        self.armed.store(true, Ordering::Release);
        self.woken.notify_one();
    }

    /// A tunnel chunk went one way or the other.
    pub fn touch(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// Before each request on the connection.
    pub fn reset(&self) {
        self.armed.store(false, Ordering::Release);
    }

    /// Resolves when an armed tunnel has been idle or open too long.
    pub async fn expired(&self) -> Closed {
        loop {
            if !self.armed.load(Ordering::Acquire) {
                self.woken.notified().await;
                continue;
            }
            let now = self.now();
            let opened = self.opened.load(Ordering::Relaxed);
            let idle_at = self.last.load(Ordering::Relaxed) + self.idle.load(Ordering::Relaxed);
            let max_at = opened + self.max.load(Ordering::Relaxed);
            let limit = if now >= max_at {
                Some(Limit::WebsocketDuration)
            } else if now >= idle_at {
                Some(Limit::WebsocketIdle)
            } else {
                None
            };
            if let Some(limit) = limit {
                let (route, request_id) = self
                    .who
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                    .unwrap_or_default();
                return Closed {
                    limit,
                    route,
                    request_id,
                    lasted: Duration::from_millis(now - opened),
                };
            }
            let wake = self.epoch + Duration::from_millis(idle_at.min(max_at));
            tokio::time::sleep_until(wake.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_idle_tunnel_is_closed_and_a_busy_one_only_at_its_maximum() {
        let watch = TunnelWatch::default();
        let unarmed = tokio::time::timeout(Duration::from_millis(50), watch.expired()).await;
        assert!(unarmed.is_err(), "a watch that was never armed never fires");
        watch.arm(
            Duration::from_millis(50),
            Duration::from_secs(60),
            "ws",
            "id",
        );
        let closed = watch.expired().await;
        assert_eq!(closed.limit, Limit::WebsocketIdle);
        assert_eq!(closed.route, "ws");
        assert!(closed.lasted >= Duration::from_millis(50));

        let busy = std::sync::Arc::new(TunnelWatch::default());
        busy.arm(
            Duration::from_secs(2),
            Duration::from_millis(300),
            "ws",
            "id",
        );
        let toucher = busy.clone();
        let keep_busy = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(10)).await;
                toucher.touch();
            }
        });
        let closed = busy.expired().await;
        keep_busy.abort();
        assert_eq!(closed.limit, Limit::WebsocketDuration);
        assert!(closed.lasted >= Duration::from_millis(300));
    }
}
