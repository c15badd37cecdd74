//! Connections at once (XEP-0205 §4.1) and connection attempts per period (§4.2) per address.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::{AddressKey, LogGate, Table};

/// The budgets of one address (documented defaults in the README, `[limits]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections at once from one address.
    pub per_address: u32,
    /// Connections at once from one IPv6 /64.
    pub per_ipv6_64: u32,
    /// Connections one IPv4 address or IPv6 /64 may open at once before the rate applies…
    pub attempts: u32,
    /// …and the period over which that many come back (continuously).
    pub attempt_period: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            per_address: 100,
            per_ipv6_64: 200,
            attempts: 300,
            attempt_period: Duration::from_secs(60),
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address (or its /64) has as many connections open as it may.
    #[error("too many connections from your address")]
    TooManyConnections,
    /// The address (or its /64) opened as many connections as it may in the period.
    #[error("too many connection attempts from your address; try again later")]
    TooManyAttempts,
    /// The table is full of other addresses (a distributed flood).
    #[error("the server is busy; try again later")]
    TooManyAddresses,
}

#[derive(Debug)]
struct Entry {
    connections: u32,
    /// Attempts that may still be made at once (used on network keys).
    attempts: f64,
    refilled: Instant,
    log: LogGate,
}

/// The connection budgets of every client address of some listeners.
#[derive(Debug)]
pub struct ConnectionLimiter {
    /// Replaced by a reload; existing connections keep their permits.
    limits: crate::Live<ConnectionLimits>,
    /// Which listeners these are (`client`, `server`, `component`), named in the warnings.
    listeners: &'static str,
    table: Table<Entry>,
}

/// A connection counted against its address until dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let now = Instant::now();
        for key in self.limiter.keys(self.ip) {
            if let Some(mut e) = self.limiter.table.entries.get_mut(&key) {
                e.connections = e.connections.saturating_sub(1);
            }
            self.limiter.forget_if_idle(key, now);
        }
    }
}

impl ConnectionLimiter {
    /// A table enforcing `limits` on the connections of `listeners` (`client`, `server`,
    /// `component`: how its warnings name them).
    pub fn new(limits: ConnectionLimits, listeners: &'static str) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            limits: crate::Live::new(limits),
            listeners,
            table: Table::default(),
        })
    }

    /// The limits enforced.
    pub fn limits(&self) -> ConnectionLimits {
        *self.limits.get()
    }

    /// Enforces `limits` on the connections admitted from now on (a reload).
    pub fn set_limits(&self, limits: ConnectionLimits) {
        self.limits.set(limits);
    }

    /// Counts an accepted connection from `ip`: a permit to keep while it lasts, or why it
    /// must be closed at once (and, rate-limited, a warning in the log).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionPermit, Refusal> {
        let now = Instant::now();
        let network = AddressKey::network(ip);
        let address = AddressKey::address(ip);
        let done = |e: &Entry| self.is_idle(e, now);
        if !self
            .table
            .room_for(network, now, done, "refused a connection")
        {
            return Err(Refusal::TooManyAddresses);
        }
        // The network's entry carries the attempts, and for IPv6 the /64's connections; one
        // map entry at a time, never two locked together.
        let network_cap = if network == address {
            self.limits().per_address
        } else {
            self.limits().per_ipv6_64
        };
        self.count(network, network_cap, true, now)?;
        if network != address
            && let Err(refusal) = self.count(address, self.limits().per_address, false, now)
        {
            if let Some(mut e) = self.table.entries.get_mut(&network) {
                e.connections = e.connections.saturating_sub(1);
            }
            return Err(refusal);
        }
        Ok(ConnectionPermit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Addresses and networks tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.table.entries.len()
    }

    fn keys(&self, ip: IpAddr) -> impl Iterator<Item = AddressKey> {
        let network = AddressKey::network(ip);
        let address = AddressKey::address(ip);
        std::iter::once(network).chain((network != address).then_some(address))
    }

    fn fresh(&self, now: Instant) -> Entry {
        Entry {
            connections: 0,
            attempts: f64::from(self.limits().attempts),
            refilled: now,
            log: LogGate::default(),
        }
    }

    /// The attempts `e` may make at `now`: its budget comes back continuously.
    fn attempts_at(&self, e: &Entry, now: Instant) -> f64 {
        let burst = f64::from(self.limits().attempts);
        let per_second = burst / self.limits().attempt_period.as_secs_f64().max(0.001);
        let elapsed = now.saturating_duration_since(e.refilled).as_secs_f64();
        (e.attempts + elapsed * per_second).min(burst)
    }

    /// Takes an attempt (when `attempt`) and a connection from `key`'s budget.
    fn count(&self, key: AddressKey, cap: u32, attempt: bool, now: Instant) -> Result<(), Refusal> {
        let mut e = self
            .table
            .entries
            .entry(key)
            .or_insert_with(|| self.fresh(now));
        let refusal = if attempt {
            e.attempts = self.attempts_at(&e, now);
            e.refilled = now;
            if e.attempts < 1.0 {
                Some(Refusal::TooManyAttempts)
            } else {
                e.attempts -= 1.0;
                (e.connections >= cap).then_some(Refusal::TooManyConnections)
            }
        } else {
            (e.connections >= cap).then_some(Refusal::TooManyConnections)
        };
        match refusal {
            None => {
                e.connections += 1;
                Ok(())
            }
            Some(refusal) => {
                if let Some(suppressed) = e.log.pass(now, &self.table.global_log) {
                    warn!(listeners = self.listeners, address = %key, suppressed, open = e.connections, "refused a connection: {refusal}");
                }
                Err(refusal)
            }
        }
    }

    fn is_idle(&self, e: &Entry, now: Instant) -> bool {
        e.connections == 0 && self.attempts_at(e, now) >= f64::from(self.limits().attempts)
    }

    fn forget_if_idle(&self, key: AddressKey, now: Instant) {
        self.table
            .entries
            .remove_if(&key, |_, e| self.is_idle(e, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: u32, per_ipv6_64: u32, attempts: u32) -> ConnectionLimits {
        ConnectionLimits {
            per_address,
            per_ipv6_64,
            attempts,
            attempt_period: Duration::from_secs(3600),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_count_until_their_permits_drop() {
        let t = ConnectionLimiter::new(limits(2, 10, 100), "client");
        let a = t.admit(ip("192.0.2.1")).unwrap();
        let _b = t.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            t.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::TooManyConnections
        );
        assert!(t.admit(ip("192.0.2.2")).is_ok());
        drop(a);
        assert!(t.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn new_limits_apply_to_the_next_admissions_and_keep_the_counts() {
        let t = ConnectionLimiter::new(limits(1, 10, 100), "client");
        let _a = t.admit(ip("192.0.2.1")).unwrap();
        assert!(t.admit(ip("192.0.2.1")).is_err());
        t.set_limits(limits(2, 10, 100));
        let _b = t.admit(ip("192.0.2.1")).unwrap();
        assert_eq!(
            t.admit(ip("192.0.2.1")).unwrap_err(),
            Refusal::TooManyConnections
        );
    }

    #[test]
    fn an_ipv6_64_is_limited_as_a_whole_and_each_address_in_it() {
        let t = ConnectionLimiter::new(limits(1, 2, 100), "client");
        let _a = t.admit(ip("2001:db8::1")).unwrap();
        assert_eq!(
            t.admit(ip("2001:db8::1")).unwrap_err(),
            Refusal::TooManyConnections
        );
        let _b = t.admit(ip("2001:db8::2")).unwrap();
        assert_eq!(
            t.admit(ip("2001:db8::3")).unwrap_err(),
            Refusal::TooManyConnections
        );
        assert!(t.admit(ip("2001:db8:0:1::3")).is_ok());
    }

    #[test]
    fn attempts_are_a_budget_per_network_even_when_connections_close() {
        let t = ConnectionLimiter::new(limits(10, 10, 3), "client");
        for _ in 0..3 {
            drop(t.admit(ip("2001:db8::1")).unwrap());
        }
        assert_eq!(
            t.admit(ip("2001:db8::77")).unwrap_err(),
            Refusal::TooManyAttempts
        );
        assert!(t.admit(ip("192.0.2.1")).is_ok());
    }

    #[test]
    fn an_address_whose_budget_is_whole_again_is_forgotten() {
        let t = ConnectionLimiter::new(
            ConnectionLimits {
                attempt_period: Duration::from_millis(1),
                ..limits(10, 10, 1)
            },
            "client",
        );
        drop(t.admit(ip("192.0.2.1")).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        drop(t.admit(ip("192.0.2.1")).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        t.forget_if_idle(AddressKey::address(ip("192.0.2.1")), Instant::now());
        assert_eq!(t.tracked(), 0);
    }
}
