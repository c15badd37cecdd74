//! Per-session state owned by the modules that need it.
//!
//! A feature's state for one session (carbons enabled, CSI inactive, stream management
//! counters, a cached block list) is a value of the module's own type, kept in a type-keyed
//! slot: the core names no feature, and a module cannot read or clobber another's state
//! because it cannot name the other's private type.
//!
//! Most sessions hold nothing here, so an empty set allocates nothing; the few entries a
//! session has are searched linearly (faster than hashing for a handful of `TypeId`s).
//! Values are shared (`Arc`): a module that changes its state keeps atomics or a lock inside
//! its type, or replaces the value.

use std::any::{Any, TypeId};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

type Slot = (TypeId, Arc<dyn Any + Send + Sync>);

/// Adds a slot with room for it alone: a session holds a handful at most, for its whole
/// lifetime, and a vector's first growth would make room for four (128 bytes).
fn push_exact(slots: &mut Vec<Slot>, slot: Slot) {
    slots.reserve_exact(1);
    slots.push(slot);
}

/// The typed slots of one session.
#[derive(Default)]
pub struct Extensions {
    slots: Mutex<Vec<Slot>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extensions")
            .field("slots", &self.lock().len())
            .finish()
    }
}

impl Extensions {
    fn lock(&self) -> MutexGuard<'_, Vec<Slot>> {
        // Nothing panics while holding the lock; the vector stays consistent if it did.
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value of type `T`, if one was set.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let slots = self.lock();
        let (_, value) = slots.iter().find(|(id, _)| *id == TypeId::of::<T>())?;
        value.clone().downcast::<T>().ok()
    }

    /// Sets the value of type `T`, replacing and returning an earlier one.
    pub fn insert<T: Any + Send + Sync>(&self, value: T) -> Option<Arc<T>> {
        let value: Arc<dyn Any + Send + Sync> = Arc::new(value);
        let mut slots = self.lock();
        match slots.iter_mut().find(|(id, _)| *id == TypeId::of::<T>()) {
            Some(slot) => std::mem::replace(&mut slot.1, value).downcast::<T>().ok(),
            None => {
                push_exact(&mut slots, (TypeId::of::<T>(), value));
                None
            }
        }
    }

    /// The value of type `T`, set to `make()` first if there was none.
    pub fn get_or_insert_with<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        let mut slots = self.lock();
        if let Some((_, value)) = slots.iter().find(|(id, _)| *id == TypeId::of::<T>())
            && let Ok(value) = value.clone().downcast::<T>()
        {
            return value;
        }
        let value = Arc::new(make());
        slots.retain(|(id, _)| *id != TypeId::of::<T>());
        push_exact(&mut slots, (TypeId::of::<T>(), value.clone()));
        value
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let mut slots = self.lock();
        let at = slots.iter().position(|(id, _)| *id == TypeId::of::<T>())?;
        slots.swap_remove(at).1.downcast::<T>().ok()
    }

    /// Whether no module keeps state here.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[derive(Debug, Default)]
    struct Carbons(AtomicBool);
    #[derive(Debug, PartialEq)]
    struct Counter(u32);

    /// A session's slots take the room they need and no more.
    #[test]
    fn slots_are_added_without_spare_room() {
        let ext = Extensions::default();
        ext.insert(1u8);
        assert_eq!(ext.lock().capacity(), 1);
        ext.get_or_insert_with(|| 2u16);
        assert_eq!(ext.lock().capacity(), 2);
        assert_eq!(ext.get::<u8>().as_deref(), Some(&1));
        assert_eq!(ext.get::<u16>().as_deref(), Some(&2));
    }

    #[test]
    fn each_type_has_its_own_slot() {
        let ext = Extensions::default();
        assert!(ext.is_empty());
        assert!(ext.get::<Carbons>().is_none());
        ext.get_or_insert_with(Carbons::default)
            .0
            .store(true, Ordering::Relaxed);
        assert!(ext.insert(Counter(1)).is_none());
        assert!(
            ext.get::<Carbons>()
                .is_some_and(|c| c.0.load(Ordering::Relaxed))
        );
        assert_eq!(ext.insert(Counter(2)).as_deref(), Some(&Counter(1)));
        assert_eq!(ext.get::<Counter>().as_deref(), Some(&Counter(2)));
        assert_eq!(ext.remove::<Counter>().as_deref(), Some(&Counter(2)));
        assert!(ext.get::<Counter>().is_none());
        assert!(ext.get::<Carbons>().is_some());
    }

    #[test]
    fn get_or_insert_keeps_the_first_value() {
        let ext = Extensions::default();
        ext.get_or_insert_with(|| Counter(1));
        assert_eq!(*ext.get_or_insert_with(|| Counter(9)), Counter(1));
    }
}
