//! Per-client counts (connections, requests in flight), keyed by client bucket: an IPv4
//! address, or an IPv6 prefix (`server.ipv6_prefix`, /64 by default, one end site's subnet:
//! RFC 6177), so one host cannot dodge the cap by rotating addresses inside its own subnet.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Most clients tracked at once by one table. An entry exists only while its client holds
/// something (a connection, a request), so the real bound is the connections or requests
/// held; this is a backstop against a bug, never reached in practice.
pub const MAX_CLIENTS: usize = 1 << 20;

/// How many things each client bucket holds now.
pub struct ClientCounts {
    held: Mutex<HashMap<IpAddr, u32>>,
    max_clients: usize,
}

/// One thing held by one client, released on drop.
pub struct ClientPermit {
    table: Arc<ClientCounts>,
    bucket: IpAddr,
}

impl ClientCounts {
    pub fn new(max_clients: usize) -> Arc<Self> {
        Arc::new(ClientCounts {
            held: Mutex::new(HashMap::new()),
            max_clients,
        })
    }

    /// Takes one more for `bucket` if it holds fewer than `cap`; `None` past the cap (or when
    /// the table is full, which `MAX_CLIENTS` makes a bug, refused rather than grown).
    pub fn try_acquire(self: &Arc<Self>, bucket: IpAddr, cap: usize) -> Option<ClientPermit> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let full = held.len() >= self.max_clients;
        match held.get_mut(&bucket) {
            Some(n) if (*n as usize) < cap => *n += 1,
            Some(_) => return None,
            None if full || cap == 0 => return None,
            None => {
                held.insert(bucket, 1);
            }
        }
        Some(ClientPermit {
            table: self.clone(),
            bucket,
        })
    }

    /// What `bucket` holds now.
    #[cfg(test)]
    pub fn held(&self, bucket: IpAddr) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(&bucket).map_or(0, |n| *n as usize)
    }

    /// Clients holding at least one.
    #[cfg(test)]
    pub fn clients(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        let mut held = self
            .table
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = held.get_mut(&self.bucket) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.bucket);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_client_gets_up_to_its_cap_and_more_once_one_is_released() {
        let table = ClientCounts::new(16);
        let a = ip("192.0.2.1");
        let permits: Vec<_> = (0..3).filter_map(|_| table.try_acquire(a, 3)).collect();
        assert_eq!(permits.len(), 3);
        assert!(table.try_acquire(a, 3).is_none());
        // Another client is not affected.
        assert!(table.try_acquire(ip("192.0.2.2"), 3).is_some());
        drop(permits.into_iter().next());
        assert!(table.try_acquire(a, 3).is_some());
    }

    #[test]
    fn released_clients_leave_the_table() {
        let table = ClientCounts::new(16);
        let permit = table.try_acquire(ip("192.0.2.1"), 1);
        assert_eq!(table.clients(), 1);
        drop(permit);
        assert_eq!(table.clients(), 0);
        assert_eq!(table.held(ip("192.0.2.1")), 0);
    }

    #[test]
    fn the_table_never_grows_past_its_bound() {
        let table = ClientCounts::new(2);
        let _a = table.try_acquire(ip("192.0.2.1"), 5).unwrap();
        let _b = table.try_acquire(ip("192.0.2.2"), 5).unwrap();
        assert!(table.try_acquire(ip("192.0.2.3"), 5).is_none());
        // Clients already in it keep their own budget.
        assert!(table.try_acquire(ip("192.0.2.1"), 5).is_some());
    }
}
