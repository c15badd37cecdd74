//! The archive ids clients see: unpredictable (XEP-0313 §3: "a server-assigned UID that MUST
//! be unpredictable"), while the store hands out increasing integers.
//!
//! A store id (a positive `i64`) is run through a keyed permutation of 64-bit values — a
//! four-round Feistel network whose round function is HMAC-SHA-256 under a host's secret
//! key, a pseudorandom permutation (Luby–Rackoff) — and written as 16 hex digits. Without
//! the key nobody can tell which id comes next or how many messages lie between two ids;
//! with it the server maps every id back, so paging and filters still work on the store's
//! order. The key of each host is created once (32 random bytes in the KeyVal store
//! [`KEY_STORE`], host-wide, `insert_new` so that nodes sharing storage agree on it) and
//! kept in memory.

use std::sync::Arc;

use dashmap::DashMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::OnceCell;
use xmppd_core::storage::{KeyVal, StorageError, StorageResult};

/// The KeyVal store of the hosts' id keys (user: empty, host-wide).
pub const KEY_STORE: &str = "mam_id_key";

const ROUNDS: u8 = 4;

/// One host's permutation.
#[derive(Clone)]
pub struct IdCipher {
    /// HMAC keyed once: each round clones it instead of hashing the key again (half the
    /// SHA-256 blocks of a round; every archived message runs four).
    keyed: Option<Hmac<Sha256>>,
}

impl IdCipher {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        // HMAC accepts keys of any length; this cannot fail.
        IdCipher {
            keyed: <Hmac<Sha256> as Mac>::new_from_slice(&key).ok(),
        }
    }

    fn round(&self, round: u8, half: u32) -> u32 {
        let Some(mut mac) = self.keyed.clone() else {
            return 0;
        };
        mac.update(&[round]);
        mac.update(&half.to_be_bytes());
        let out = mac.finalize().into_bytes();
        u32::from_be_bytes([out[0], out[1], out[2], out[3]])
    }

    fn permute(&self, n: u64) -> u64 {
        let (mut l, mut r) = ((n >> 32) as u32, n as u32);
        for i in 0..ROUNDS {
            (l, r) = (r, l ^ self.round(i, r));
        }
        (u64::from(l) << 32) | u64::from(r)
    }

    fn unpermute(&self, n: u64) -> u64 {
        let (mut l, mut r) = ((n >> 32) as u32, n as u32);
        for i in (0..ROUNDS).rev() {
            (l, r) = (r ^ self.round(i, l), l);
        }
        (u64::from(l) << 32) | u64::from(r)
    }

    /// The public id of a store id (which is decimal by the storage contract).
    pub fn encode(&self, store_id: &str) -> String {
        let n: u64 = store_id.parse().unwrap_or(0);
        format!("{:016x}", self.permute(n))
    }

    /// The store id of a public id; `None` for anything this server did not hand out.
    pub fn decode(&self, public: &str) -> Option<String> {
        if public.len() != 16
            || !public
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return None;
        }
        let n = u64::from_str_radix(public, 16).ok()?;
        let id = self.unpermute(n);
        (id > 0 && id <= i64::MAX as u64).then(|| id.to_string())
    }
}

/// The ciphers of the hosts (or MUC service domains), loaded on first use.
pub struct IdKeys {
    keyval: Arc<dyn KeyVal>,
    hosts: DashMap<String, Arc<OnceCell<IdCipher>>>,
}

impl IdKeys {
    /// Keys kept in `keyval` (store [`KEY_STORE`], one per host, user empty).
    pub fn new(keyval: Arc<dyn KeyVal>) -> Self {
        IdKeys {
            keyval,
            hosts: DashMap::new(),
        }
    }

    /// The cipher of `host`, creating its key if it has none yet.
    pub async fn cipher(&self, host: &str) -> StorageResult<IdCipher> {
        let cell = self.hosts.entry(host.to_owned()).or_default().clone();
        cell.get_or_try_init(|| self.load(host)).await.cloned()
    }

    async fn load(&self, host: &str) -> StorageResult<IdCipher> {
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh)
            .map_err(|e| StorageError::Backend(format!("no randomness for the id key: {e}")))?;
        // First writer wins; everyone (other nodes too) then reads the same key.
        self.keyval.insert_new(host, "", KEY_STORE, &fresh).await?;
        let stored = self
            .keyval
            .get(host, "", KEY_STORE)
            .await?
            .ok_or_else(|| StorageError::Corrupt("the archive id key vanished".into()))?;
        let key: [u8; 32] = stored
            .as_slice()
            .try_into()
            .map_err(|_| StorageError::Corrupt("the archive id key is not 32 bytes".into()))?;
        Ok(IdCipher::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_do_not_reveal_their_order() {
        let c = IdCipher::new([7; 32]);
        let mut seen = std::collections::BTreeSet::new();
        let mut increasing = 0;
        let mut previous = String::new();
        for n in 1..=2000u64 {
            let public = c.encode(&n.to_string());
            assert_eq!(public.len(), 16);
            assert_eq!(c.decode(&public), Some(n.to_string()));
            assert!(seen.insert(public.clone()));
            if public > previous {
                increasing += 1;
            }
            previous = public;
        }
        // Consecutive store ids give ids in no particular order (about half go up).
        assert!((700..1300).contains(&increasing), "{increasing}");
        let other = IdCipher::new([8; 32]);
        assert_ne!(other.encode("1"), c.encode("1"));
    }

    #[test]
    fn foreign_ids_decode_to_nothing() {
        let c = IdCipher::new([7; 32]);
        for bad in [
            "",
            "1",
            "42",
            "0123456789abcdeg",
            "0123456789ABCDEF",
            "00000000000000000",
        ] {
            assert_eq!(c.decode(bad), None, "{bad}");
        }
    }
}
