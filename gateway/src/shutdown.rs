//! Signals that end the process. SIGTERM drains: `/readyz` turns 503, pingora stops accepting,
//! requests in flight finish, and the process exits 0 as soon as none is left, or when
//! `grace_period` runs out. (Pingora alone would always sleep the whole grace period.)
//! SIGQUIT hands the listeners to a new process started with `--upgrade` (pingora's graceful
//! upgrade) and then drains the same way. SIGINT stops at once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::state::State;

pub struct DrainWatch {
    pub state: Arc<State>,
}

#[async_trait]
impl ShutdownSignalWatch for DrainWatch {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut term), Ok(mut quit), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::quit()),
            signal(SignalKind::interrupt()),
        ) else {
            log::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        tokio::select! {
            _ = term.recv() => {
                log::info!("SIGTERM: draining");
                self.begin_drain();
                ShutdownSignal::GracefulTerminate
            }
            _ = quit.recv() => {
                log::info!("SIGQUIT: handing listeners over, then draining");
                self.state.draining.store(true, Ordering::Release);
                ShutdownSignal::GracefulUpgrade
            }
            _ = int.recv() => {
                log::info!("SIGINT: stopping now");
                self.state.log.flush();
                ShutdownSignal::FastShutdown
            }
        }
    }
}

impl DrainWatch {
    /// Marks the process draining and starts the watcher that exits once nothing is in
    /// flight (or the grace period ends).
    fn begin_drain(&self) {
        self.state.draining.store(true, Ordering::Release);
        let state = self.state.clone();
        let grace = state.current().config.server.grace_period;
        let spawned = std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                let started = Instant::now();
                // A request accepted just before the listeners closed may not have reached
                // `new_ctx` yet: require the count to stay at zero for a few polls.
                let mut quiet_polls = 0;
                while started.elapsed() < grace {
                    std::thread::sleep(Duration::from_millis(25));
                    if state.in_flight.load(Ordering::Acquire) == 0 {
                        quiet_polls += 1;
                        if quiet_polls >= 4 {
                            break;
                        }
                    } else {
                        quiet_polls = 0;
                    }
                }
                let left = state.in_flight.load(Ordering::Acquire);
                if left > 0 {
                    log::warn!("grace period over with {left} requests still in flight");
                }
                log::info!("drained; exiting");
                state.log.flush();
                std::process::exit(0);
            });
        if let Err(e) = spawned {
            log::error!("cannot start the drain watcher ({e}); pingora's grace period applies");
        }
    }
}
