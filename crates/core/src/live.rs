//! Settings a configuration reload replaces while the server runs.
//!
//! Readers take a snapshot ([`Live::get`]) when something begins — a connection, a link, a
//! negotiation — and keep it to the end, so a reload changes what comes next without changing
//! anything half-way through. Snapshots are taken once per connection, not per stanza, so a
//! lock (held for an `Arc` clone) costs nothing measurable.

use std::sync::{Arc, RwLock};

/// A value a reload may replace; see the module documentation.
#[derive(Debug, Default)]
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    /// The value at start.
    pub fn new(value: T) -> Self {
        Live(RwLock::new(Arc::new(value)))
    }

    /// The current value.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(guard) => guard.clone(),
            // Only an `Arc` store happens under the lock: a panic cannot leave it half written.
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the value for every later [`Live::get`].
    pub fn replace(&self, value: T) {
        let value = Arc::new(value);
        match self.0.write() {
            Ok(mut guard) => *guard = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_outlives_the_replacement() {
        let live = Live::new(1);
        let before = live.get();
        live.replace(2);
        assert_eq!((*before, *live.get()), (1, 2));
    }
}
