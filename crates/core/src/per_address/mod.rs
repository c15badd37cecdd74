//! XEP-0205 (Best Practices to Discourage Denial of Service Attacks): what one client address
//! may do — connections at once (§4.1), connection attempts per period (§4.2) and failed
//! authentications (§4.3, by address, never by account).
//!
//! An IPv4 client has one address; an IPv6 client usually holds a whole /64 and may use any
//! address in it. So IPv6 connections count against their address and against their /64, and
//! attempts and authentication failures count against the /64 alone: rotating addresses
//! inside one network buys nothing.
//!
//! The tables are bounded and forget: an entry lives while its address has connections open
//! or has spent budget that has not come back yet, and each table holds at most
//! [`MAX_TRACKED`] addresses. When a limit triggers, the warning is rate-limited by
//! [`LogGate`] (one line per address per [`LOG_PERIOD`] with the count of those not
//! logged, and a global ceiling), so a flood of refusals cannot become a flood of log lines.

mod auth;
mod connections;

pub use auth::{AuthThrottle, AuthThrottleSettings};
pub use connections::{ConnectionLimiter, ConnectionLimits, ConnectionPermit, Refusal};

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tracing::warn;

/// Most addresses one table tracks at once.
pub const MAX_TRACKED: usize = 1 << 17;

/// An address (or network) is warned about at most once per period.
pub const LOG_PERIOD: Duration = Duration::from_secs(60);

/// Warnings per second a table writes at most, whatever the number of addresses.
const GLOBAL_LOG_PER_SECOND: u32 = 10;

/// What a budget is counted against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// One address (IPv4-mapped IPv6 addresses count as the IPv4 address they carry).
    Ip(IpAddr),
    /// The /64 an IPv6 address belongs to: its first 64 bits.
    Ipv6Net64(u64),
}

impl AddressKey {
    /// The address itself.
    pub fn address(ip: IpAddr) -> Self {
        AddressKey::Ip(ip.to_canonical())
    }

    /// The network a client controls as a whole: an IPv4 address, an IPv6 /64.
    pub fn network(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V6(v6) => AddressKey::Ipv6Net64((v6.to_bits() >> 64) as u64),
            v4 => AddressKey::Ip(v4),
        }
    }
}

impl std::fmt::Display for AddressKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AddressKey::Ip(ip) => write!(f, "{ip}"),
            AddressKey::Ipv6Net64(prefix) => {
                let net = std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(f, "{net}/64")
            }
        }
    }
}

/// The rate limit of one address's warnings.
#[derive(Debug, Default)]
pub(crate) struct LogGate {
    last: Option<Instant>,
    suppressed: u32,
}

impl LogGate {
    /// Whether to log a refusal now: `Some(n)` with the `n` refusals not logged since the last
    /// line, `None` when this one is only counted.
    pub(crate) fn pass(&mut self, now: Instant, global: &GlobalLogGate) -> Option<u32> {
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= LOG_PERIOD);
        if due && global.take(now) {
            self.last = Some(now);
            return Some(std::mem::take(&mut self.suppressed));
        }
        self.suppressed = self.suppressed.saturating_add(1);
        None
    }
}

/// The ceiling on warnings of one table, whatever the number of addresses: a token bucket of
/// [`GLOBAL_LOG_PER_SECOND`].
#[derive(Debug)]
pub(crate) struct GlobalLogGate {
    bucket: Mutex<(f64, Instant)>,
}

impl Default for GlobalLogGate {
    fn default() -> Self {
        GlobalLogGate {
            bucket: Mutex::new((f64::from(GLOBAL_LOG_PER_SECOND), Instant::now())),
        }
    }
}

impl GlobalLogGate {
    fn take(&self, now: Instant) -> bool {
        let Ok(mut bucket) = self.bucket.lock() else {
            return false;
        };
        let (tokens, refilled) = &mut *bucket;
        let rate = f64::from(GLOBAL_LOG_PER_SECOND);
        *tokens =
            (*tokens + now.saturating_duration_since(*refilled).as_secs_f64() * rate).min(rate);
        *refilled = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A bounded map of addresses to their state, with the rate limit of its warnings.
#[derive(Debug)]
pub(crate) struct Table<V> {
    pub(crate) entries: DashMap<AddressKey, V, crate::FastHasher>,
    pub(crate) global_log: GlobalLogGate,
    last_sweep: Mutex<Option<Instant>>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            entries: DashMap::default(),
            global_log: GlobalLogGate::default(),
            last_sweep: Mutex::new(None),
        }
    }
}

impl<V> Table<V> {
    /// Whether `key` has an entry or one can be made: a full table first drops the entries
    /// `done` says are no longer needed (at most once a second, as that walks the table).
    /// When there is no room, `refused` is logged (rate-limited).
    pub(crate) fn room_for(
        &self,
        key: AddressKey,
        now: Instant,
        done: impl Fn(&V) -> bool,
        refused: &str,
    ) -> bool {
        if self.entries.len() < MAX_TRACKED || self.entries.contains_key(&key) {
            return true;
        }
        let swept = match self.last_sweep.lock() {
            Ok(mut last)
                if last
                    .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1)) =>
            {
                *last = Some(now);
                true
            }
            _ => false,
        };
        if swept {
            self.entries.retain(|_, v| !done(v));
        }
        let room = self.entries.len() < MAX_TRACKED;
        if !room && LogGate::default().pass(now, &self.global_log).is_some() {
            warn!(
                tracked = self.entries.len(),
                "{refused}: too many client addresses are tracked at once"
            );
        }
        room
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_addresses_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::network(a), AddressKey::network(b));
        assert_ne!(AddressKey::network(a), AddressKey::network(c));
        assert_ne!(AddressKey::address(a), AddressKey::address(b));
        assert_eq!(AddressKey::network(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(
            AddressKey::network(mapped),
            AddressKey::Ip("192.0.2.7".parse().unwrap())
        );
    }

    #[test]
    fn one_line_per_period_then_the_count_of_the_others() {
        let global = GlobalLogGate::default();
        let mut gate = LogGate::default();
        let t0 = Instant::now();
        assert_eq!(gate.pass(t0, &global), Some(0));
        assert_eq!(gate.pass(t0 + Duration::from_secs(1), &global), None);
        assert_eq!(gate.pass(t0 + Duration::from_secs(2), &global), None);
        assert_eq!(gate.pass(t0 + LOG_PERIOD, &global), Some(2));
    }

    #[test]
    fn the_global_ceiling_holds_across_addresses() {
        let global = GlobalLogGate::default();
        let now = Instant::now();
        let logged = (0..100)
            .filter(|_| LogGate::default().pass(now, &global).is_some())
            .count();
        assert_eq!(logged, GLOBAL_LOG_PER_SECOND as usize);
    }
}
