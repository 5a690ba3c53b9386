//! The memory all buffered request bodies share (`server.body_buffer_memory`). A buffered
//! request reserves its bytes as they arrive and gives them back when it ends, so the total
//! never exceeds the budget: past it, the request gets 503 `overloaded` with `Retry-After`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes reserved by buffered bodies now.
#[derive(Default)]
pub struct BufferBudget {
    used: Arc<AtomicUsize>,
}

/// One request's share of the budget, returned on drop.
pub struct Reservation {
    used: Arc<AtomicUsize>,
    gauge: prometheus::IntGauge,
    held: usize,
}

impl BufferBudget {
    /// An empty reservation that `grow` extends.
    pub fn reserve(&self, gauge: &prometheus::IntGauge) -> Reservation {
        Reservation {
            used: self.used.clone(),
            gauge: gauge.clone(),
            held: 0,
        }
    }

    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl Reservation {
    /// Adds `bytes` to this reservation if the total stays within `budget`.
    pub fn grow(&mut self, bytes: usize, budget: usize) -> bool {
        let granted = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= budget)
            })
            .is_ok();
        if granted {
            self.held += bytes;
            self.gauge.add(bytes as i64);
        }
        granted
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.held, Ordering::AcqRel);
        self.gauge.sub(self.held as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_return_it() {
        let budget = BufferBudget::default();
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let mut a = budget.reserve(&gauge);
        let mut b = budget.reserve(&gauge);
        assert!(a.grow(600, 1000));
        assert!(!b.grow(500, 1000), "600 + 500 is past the budget");
        assert!(b.grow(400, 1000));
        assert_eq!((budget.used(), gauge.get()), (1000, 1000));
        drop(a);
        assert_eq!((budget.used(), gauge.get()), (400, 400));
        assert!(b.grow(600, 1000));
        drop(b);
        assert_eq!((budget.used(), gauge.get()), (0, 0));
    }
}
