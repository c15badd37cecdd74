//! Per-client-address budgets: concurrent connections and a request rate.
//!
//! One table for every listener, so a client cannot double its share by using both, and for
//! the TCP connections of direct clients as well as the WebSocket sessions of clients behind
//! a proxy (whose TCP connections are the proxy's). Entries are removed when their last
//! connection ends and their rate bucket is full again, so the table holds only addresses
//! that are active now.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;

#[derive(Debug)]
struct Entry {
    connections: usize,
    /// Requests that may still be made at once.
    tokens: f64,
    refilled: Instant,
}

/// The budgets of every client address.
#[derive(Debug)]
pub struct PerIp {
    max_connections: usize,
    rate: f64,
    burst: f64,
    entries: DashMap<IpAddr, Entry>,
}

/// A connection counted against its address until dropped.
#[derive(Debug)]
pub struct ConnectionGuard {
    table: Arc<PerIp>,
    ip: IpAddr,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let ip = self.ip;
        if let Some(mut e) = self.table.entries.get_mut(&ip) {
            e.connections = e.connections.saturating_sub(1);
        }
        self.table.forget_if_idle(ip);
    }
}

impl PerIp {
    /// At most `max_connections` at once and `rate` requests per second (with bursts of
    /// `burst`) per address.
    pub fn new(max_connections: usize, rate: u32, burst: u32) -> Arc<Self> {
        Arc::new(PerIp {
            max_connections,
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            entries: DashMap::new(),
        })
    }

    /// Counts a connection from `ip`; `None` when it has too many already.
    pub fn connect(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        let mut e = self.entries.entry(ip).or_insert_with(|| self.fresh());
        if e.connections >= self.max_connections {
            drop(e);
            return None;
        }
        e.connections += 1;
        Some(ConnectionGuard {
            table: self.clone(),
            ip,
        })
    }

    /// Takes one request from `ip`'s budget; `false` when it is spent.
    pub fn request(&self, ip: IpAddr) -> bool {
        let allowed = {
            let mut e = self.entries.entry(ip).or_insert_with(|| self.fresh());
            let now = Instant::now();
            let elapsed = now.duration_since(e.refilled).as_secs_f64();
            e.tokens = (e.tokens + elapsed * self.rate).min(self.burst);
            e.refilled = now;
            if e.tokens >= 1.0 {
                e.tokens -= 1.0;
                true
            } else {
                false
            }
        };
        self.forget_if_idle(ip);
        allowed
    }

    /// Addresses in the table (for tests).
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    fn fresh(&self) -> Entry {
        Entry {
            connections: 0,
            tokens: self.burst,
            refilled: Instant::now(),
        }
    }

    fn forget_if_idle(&self, ip: IpAddr) {
        let rate = self.rate;
        let burst = self.burst;
        self.entries.remove_if(&ip, |_, e| {
            let refill = e.refilled.elapsed().as_secs_f64() * rate;
            e.connections == 0 && e.tokens + refill >= burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_until_dropped() {
        let t = PerIp::new(2, 10, 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = t.connect(ip).unwrap();
        let _b = t.connect(ip).unwrap();
        assert!(t.connect(ip).is_none());
        assert!(t.connect("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(t.connect(ip).is_some());
    }

    #[test]
    fn the_rate_allows_a_burst_then_refuses() {
        let t = PerIp::new(10, 1, 3);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..3).all(|_| t.request(ip)));
        assert!(!t.request(ip));
        assert!(t.request("192.0.2.9".parse().unwrap()));
    }

    #[test]
    fn idle_addresses_are_forgotten() {
        let t = PerIp::new(10, 1000, 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        drop(t.connect(ip));
        assert_eq!(t.tracked(), 0);
        assert!(t.request(ip));
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(t.request(ip));
        // Refilled within the burst by the time the request ended: nothing to remember.
        std::thread::sleep(std::time::Duration::from_millis(5));
        t.forget_if_idle(ip);
        assert_eq!(t.tracked(), 0);
    }
}
