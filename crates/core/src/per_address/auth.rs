//! Failed authentications per address (XEP-0205 §4.3), answered ever more slowly.
//!
//! The account is never locked: that would hand its owner's access to whoever guesses
//! wrongly in their name. Instead every answer to an authentication from an address with
//! recent failures waits — its success as well as its failure, or an attacker could stop
//! waiting and read a timeout as "wrong". The wait doubles with each failure past the free
//! ones, and answers to one address go out one at a time: opening many connections at once
//! gets no more guesses answered than opening one.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{AddressKey, LogGate, MAX_TRACKED, Table};

/// How failed authentications slow an address down (documented defaults in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthThrottleSettings {
    /// Failures an address may have before answers to it wait.
    pub free_failures: u32,
    /// The wait after the first failure past those; it doubles with each further one.
    pub delay: Duration,
    /// The longest wait.
    pub max_delay: Duration,
    /// An address's failures are forgotten this long after its last one.
    pub forget_after: Duration,
}

impl Default for AuthThrottleSettings {
    fn default() -> Self {
        AuthThrottleSettings {
            free_failures: 5,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            forget_after: Duration::from_secs(600),
        }
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    /// When the latest answer given a turn goes out.
    next_answer: Instant,
    log: LogGate,
}

/// The failed authentications of every client address, for every kind of authentication the
/// server answers (client SASL on any transport, component handshakes).
#[derive(Debug)]
pub struct AuthThrottle {
    /// Replaced by a reload.
    settings: crate::Live<AuthThrottleSettings>,
    table: Table<Entry>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self::with_settings(AuthThrottleSettings::default())
    }
}

impl AuthThrottle {
    /// A table applying `settings`.
    pub fn new(settings: AuthThrottleSettings) -> Arc<Self> {
        Arc::new(Self::with_settings(settings))
    }

    fn with_settings(settings: AuthThrottleSettings) -> Self {
        AuthThrottle {
            settings: crate::Live::new(settings),
            table: Table::default(),
        }
    }

    /// The settings applied.
    pub fn settings(&self) -> AuthThrottleSettings {
        *self.settings.get()
    }

    /// Applies `settings` from now on (a reload); failures already counted stay counted.
    pub fn set_settings(&self, settings: AuthThrottleSettings) {
        self.settings.set(settings);
    }

    /// How long the answer to an authentication from `ip` waits before it is sent: nothing
    /// for an address without recent failures. Takes the answer's turn, so call it once per
    /// answer, when the answer is ready.
    pub fn wait_before_answer(&self, ip: IpAddr) -> Duration {
        let key = AddressKey::network(ip);
        let now = Instant::now();
        let s = self.settings();
        let Some(mut e) = self.table.entries.get_mut(&key) else {
            // Untracked because the table is full of failing addresses: wait as one of them.
            return if self.table.entries.len() >= MAX_TRACKED {
                s.delay
            } else {
                Duration::ZERO
            };
        };
        if now.saturating_duration_since(e.last_failure) >= s.forget_after {
            drop(e);
            self.forget_if_expired(key, now);
            return Duration::ZERO;
        }
        if e.failures < s.free_failures {
            return Duration::ZERO;
        }
        let doublings = (e.failures - s.free_failures).min(31);
        let delay = s.delay.saturating_mul(1 << doublings).min(s.max_delay);
        let answer_at = (e.next_answer.max(now) + delay).min(now + s.max_delay);
        e.next_answer = answer_at;
        answer_at - now
    }

    /// Holds the answer to an authentication from `ip` back as long as its address's failures
    /// require, then counts it if it failed.
    pub async fn answer(&self, ip: IpAddr, success: bool) {
        let wait = self.wait_before_answer(ip);
        if !wait.is_zero() {
            debug!(?wait, "holding an authentication answer back");
            tokio::time::sleep(wait).await;
        }
        if !success {
            self.failed(ip);
        }
    }

    /// Counts a failed authentication from `ip`.
    pub fn failed(&self, ip: IpAddr) {
        let key = AddressKey::network(ip);
        let now = Instant::now();
        let done = |e: &Entry| self.expired(e, now);
        if !self
            .table
            .room_for(key, now, done, "a failed authentication is not counted")
        {
            // Untracked addresses wait as penalized ones do while the table is full.
            return;
        }
        let mut e = self.table.entries.entry(key).or_insert_with(|| Entry {
            failures: 0,
            last_failure: now,
            next_answer: now,
            log: LogGate::default(),
        });
        if now.saturating_duration_since(e.last_failure) >= self.settings().forget_after {
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
        e.last_failure = now;
        if e.failures >= self.settings().free_failures
            && let Some(suppressed) = e.log.pass(now, &self.table.global_log)
        {
            warn!(address = %key, failures = e.failures, suppressed, "failed authentications from one address; its answers are delayed");
        }
    }

    /// Addresses tracked now (for tests and metrics).
    pub fn tracked(&self) -> usize {
        self.table.entries.len()
    }

    fn expired(&self, e: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_failure) >= self.settings().forget_after
    }

    fn forget_if_expired(&self, key: AddressKey, now: Instant) {
        self.table
            .entries
            .remove_if(&key, |_, e| self.expired(e, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle(free_failures: u32) -> Arc<AuthThrottle> {
        AuthThrottle::new(AuthThrottleSettings {
            free_failures,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            forget_after: Duration::from_secs(600),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn free_failures_then_doubling_waits_up_to_the_ceiling() {
        let t = throttle(2);
        let a = ip("192.0.2.1");
        let mut waits = Vec::new();
        for _ in 0..7 {
            let wait = t.wait_before_answer(a);
            // Rounded: the turn is taken from "now" and some microseconds pass in between.
            waits.push(wait.as_secs_f64().round() as u64);
            t.failed(a);
        }
        // Each wait is the delay plus the turns already taken by earlier answers (their
        // clients would have waited them out; here they are reserved back to back).
        assert_eq!(waits, [0, 0, 1, 3, 7, 10, 10]);
        // Another address is not slowed.
        assert_eq!(t.wait_before_answer(ip("192.0.2.2")), Duration::ZERO);
    }

    #[test]
    fn concurrent_answers_to_one_network_take_turns() {
        let t = throttle(0);
        t.failed(ip("2001:db8::1"));
        let first = t.wait_before_answer(ip("2001:db8::2"));
        let second = t.wait_before_answer(ip("2001:db8::3"));
        assert!(first >= Duration::from_millis(1900), "{first:?}");
        assert!(second >= first + Duration::from_millis(1900), "{second:?}");
    }

    #[test]
    fn failures_are_forgotten_after_the_window() {
        let t = AuthThrottle::new(AuthThrottleSettings {
            free_failures: 0,
            delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            forget_after: Duration::from_millis(1),
        });
        t.failed(ip("192.0.2.1"));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.wait_before_answer(ip("192.0.2.1")), Duration::ZERO);
        assert_eq!(t.tracked(), 0);
    }
}
