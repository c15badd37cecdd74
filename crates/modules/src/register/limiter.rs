//! How many accounts each address created lately: the rate limit of in-band registration.
//!
//! Kept in memory, per node: registrations are rare, and a limit that forgets on restart
//! costs an abuser one restart's worth of accounts at most. IPv6 addresses count per /64,
//! since one subscriber usually has a whole /64 to pick addresses from. The map holds at
//! most `capacity` addresses; when it is full of addresses still inside their window, new
//! addresses are refused rather than letting the map grow.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// The key an address counts under: IPv4 addresses alone, IPv6 ones by their /64; `None`
/// for connections whose address is unknown (one shared budget).
type Key = Option<IpAddr>;

fn key(ip: Option<IpAddr>) -> Key {
    ip.map(|ip| match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & (u128::MAX << 64);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    })
}

/// Why a registration may not go ahead now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The address created as many accounts as allowed within the window.
    #[error("too many accounts were registered from this address; try again later")]
    TooMany,
    /// Too many addresses registered lately to remember another one.
    #[error("too many registrations lately; try again later")]
    Busy,
}

/// Registrations per address within a sliding window.
#[derive(Debug)]
pub struct AddressLimiter {
    max: usize,
    window: Duration,
    capacity: usize,
    /// The times of each address's registrations within the window, oldest first.
    recent: Mutex<HashMap<Key, VecDeque<Instant>>>,
}

impl AddressLimiter {
    /// At most `max` registrations per address in `window`, remembering at most `capacity`
    /// addresses.
    pub fn new(max: u32, window: Duration, capacity: usize) -> Self {
        AddressLimiter {
            max: max as usize,
            window,
            capacity,
            recent: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a registration from `ip` at `now`, unless that would exceed the limit. A
    /// registration that then fails gives its place back with [`AddressLimiter::release`].
    pub fn acquire(&self, ip: Option<IpAddr>, now: Instant) -> Result<(), Refusal> {
        let key = key(ip);
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let expired = |t: &Instant| now.saturating_duration_since(*t) >= self.window;
        if !recent.contains_key(&key) && recent.len() >= self.capacity {
            recent.retain(|_, times| !times.back().is_some_and(expired));
            if recent.len() >= self.capacity {
                return Err(Refusal::Busy);
            }
        }
        let times = recent.entry(key).or_default();
        while times.front().is_some_and(expired) {
            times.pop_front();
        }
        if times.len() >= self.max {
            return Err(Refusal::TooMany);
        }
        times.push_back(now);
        Ok(())
    }

    /// Gives back the place a registration from `ip` took (it failed).
    pub fn release(&self, ip: Option<IpAddr>) {
        let key = key(ip);
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(times) = recent.get_mut(&key) {
            times.pop_back();
            if times.is_empty() {
                recent.remove(&key);
            }
        }
    }

    /// Addresses remembered now.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
