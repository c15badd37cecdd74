//! A read-rate shaper for one connection (XEP-0205 §4.8, bandwidth limits): bytes per second
//! on average, with a burst, after which the connection is not read until its budget is back.
//!
//! It is the generic cell rate algorithm: one instant (the "theoretical arrival time" of the
//! next byte) is all the state, so an idle connection pays 16 bytes for it. Bytes are counted
//! after each read, so what a connection can get processed by time `t` is at most `burst +
//! rate × t` plus one read (a read never waits for the budget to cover it: the wait follows).
//! Nothing is dropped: a client over its rate is only read more slowly, and TCP flow control
//! slows its sending in turn.

use std::time::Duration;

use tokio::time::Instant;

/// A rate in bytes per second with a burst, as configured per listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadRate {
    /// Average bytes per second.
    pub bytes_per_second: u32,
    /// Bytes that may come at once on top of the average.
    pub burst_bytes: u32,
}

/// The shaper state of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ReadShaper {
    rate: ReadRate,
    /// When the budget is whole again (in the past: it is whole).
    full_at: Instant,
}

impl ReadShaper {
    /// A shaper with its whole burst available.
    pub fn new(rate: ReadRate) -> Self {
        ReadShaper {
            rate,
            full_at: Instant::now(),
        }
    }

    fn time_for(&self, bytes: u64) -> Duration {
        Duration::from_secs_f64(bytes as f64 / f64::from(self.rate.bytes_per_second.max(1)))
    }

    /// Counts `bytes` read at `now`; returns when the connection may be read again if its
    /// budget is overdrawn (`None`: at once).
    pub fn consumed(&mut self, bytes: usize, now: Instant) -> Option<Instant> {
        self.full_at = self.full_at.max(now) + self.time_for(bytes as u64);
        self.resume_at(now)
    }

    /// When reading may resume, if it is paused at `now`.
    pub fn resume_at(&self, now: Instant) -> Option<Instant> {
        let tolerance = self.time_for(u64::from(self.rate.burst_bytes));
        let resume = self.full_at.checked_sub(tolerance).unwrap_or(now);
        (resume > now).then_some(resume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaper(bytes_per_second: u32, burst_bytes: u32) -> ReadShaper {
        ReadShaper::new(ReadRate {
            bytes_per_second,
            burst_bytes,
        })
    }

    #[test]
    fn the_burst_passes_then_reading_waits_for_the_excess() {
        let mut s = shaper(1000, 4000);
        let t0 = Instant::now();
        assert_eq!(s.consumed(4000, t0), None);
        let resume = s.consumed(500, t0).unwrap();
        assert_eq!(resume - t0, Duration::from_millis(500));
        // One read larger than the burst is processed, and paid for afterwards.
        let mut s = shaper(1000, 4000);
        let t1 = Instant::now();
        let resume = s.consumed(16_000, t1).unwrap();
        assert_eq!(resume - t1, Duration::from_secs(12));
    }

    #[test]
    fn the_budget_comes_back_at_the_rate() {
        let mut s = shaper(1000, 2000);
        let t0 = Instant::now();
        assert_eq!(s.consumed(2000, t0), None);
        assert!(s.resume_at(t0).is_none());
        assert!(s.consumed(1, t0).is_some());
        // A second later, a thousand bytes more may come.
        let t1 = t0 + Duration::from_millis(1001);
        assert_eq!(s.consumed(999, t1), None);
        assert!(s.consumed(10, t1).is_some());
        // After a long quiet, never more than the burst at once.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!(s.consumed(2000, t2), None);
        assert!(s.consumed(10, t2).is_some());
    }
}
