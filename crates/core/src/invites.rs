//! Invitations (XEP-0401 Easy User Onboarding): single-use, expiring tokens that let someone
//! create an account on a host whose open registration is off (XEP-0445), reset an existing
//! account's password, or become a user's contact with the subscription pre-approved
//! (XEP-0379).
//!
//! Invites are items of the Map store `invites` of their host (user `""`, the host's own
//! documents), keyed by the SHA-256 of the token in hex: the token itself is never stored, so
//! a copy of the database redeems nothing (the same reasoning as for SCRAM credentials). The
//! token is 160 random bits written as 40 lowercase hex digits — alphanumeric, as XEP-0379
//! §5.1 suggests, and twice its 80-bit minimum.
//!
//! **Single use** is the storage's atomic delete: [`Invites::consume`] removes the item and
//! only the caller whose delete removed it gets the invite, so two streams racing with one
//! token cannot both redeem it. A redemption whose account work then fails puts the invite
//! back ([`Invites::restore`]): XEP-0445 §4 "single-use tokens MUST NOT be considered used
//! until the actual registration has succeeded".
//!
//! **Expiry** is checked when a token is presented ([`Invites::valid`]); XEP-0445 §4 forbids
//! rejecting a later step of the same session because the token expired meanwhile, so
//! [`Invites::consume`] does not look at it again. Expired invites are removed when
//! listed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use xmppd_proto::pars::{InviteAction, InviteUri};

use crate::accounts::{AccountError, Accounts};
use crate::storage::{MapStore, StorageError, StorageResult};

/// The Map store of invites (per host, user `""`).
pub const INVITES_STORE: &str = "invites";

/// Random bytes in a token (160 bits).
const TOKEN_BYTES: usize = 20;

/// What an invite lets its holder do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InviteKind {
    /// Register a new account of any free name on the host (XEP-0401 §3.4 without a
    /// username: `xmpp:HOST?register;preauth=TOKEN`).
    Account,
    /// Register the new account `username`, chosen by whoever issued the invite (XEP-0401
    /// §4.2: `xmpp:USERNAME@HOST?register;preauth=TOKEN`). While the invite is valid the name
    /// is reserved: nobody registers it by other means ([`Invites::reserved`]). With
    /// `inviter` (§4.2's `roster-subscription`), the new account and the inviter end up
    /// mutually subscribed, as with a contact invitation.
    NamedAccount {
        /// The new account's localpart.
        username: String,
        /// The localpart of the account it is subscribed with, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        inviter: Option<String>,
    },
    /// Set a new password for the existing account `user` by in-band registration.
    Reset {
        /// The account's localpart.
        user: String,
    },
    /// Become the contact of `inviter` (XEP-0379 / XEP-0401 §3.1:
    /// `xmpp:INVITER?roster;preauth=TOKEN;ibr=y`): an account registered with it and the
    /// inviter end up mutually subscribed; an existing account's subscription request with it
    /// is approved on the inviter's behalf.
    Contact {
        /// The inviter's localpart on the invite's host.
        inviter: String,
    },
}

/// A stored invite.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// What it is for.
    #[serde(flatten)]
    pub kind: InviteKind,
    /// When it was created, Unix seconds.
    pub created: u64,
    /// When it stops being accepted, Unix seconds.
    pub expires: u64,
}

impl Invite {
    /// Whether it is still accepted at `now` (Unix seconds).
    pub fn is_valid_at(&self, now: u64) -> bool {
        now < self.expires
    }

    /// The `xmpp:` URI that hands out this invite of `host` with `token`: XEP-0401 §3.4
    /// `xmpp:HOST?register;preauth=TOKEN` for an account,
    /// `xmpp:USER@HOST?register;preauth=TOKEN` for a password reset (the account is given),
    /// and §3.1 `xmpp:INVITER@HOST?roster;preauth=TOKEN;ibr=y` for a contact invitation
    /// (`ibr=y`: the token can also register an account here).
    pub fn uri(&self, host: &str, token: &str) -> InviteUri {
        let (address, action) = match &self.kind {
            InviteKind::Account => (host.to_owned(), InviteAction::Register),
            InviteKind::NamedAccount { username, .. } => {
                (format!("{username}@{host}"), InviteAction::Register)
            }
            InviteKind::Reset { user } => (format!("{user}@{host}"), InviteAction::Register),
            InviteKind::Contact { inviter } => (
                format!("{inviter}@{host}"),
                InviteAction::Roster { ibr: true },
            ),
        };
        InviteUri {
            address,
            action,
            token: token.to_owned(),
        }
    }
}

/// Why a username cannot be named by a new invitation (XEP-0401 §4.2).
#[derive(Debug, thiserror::Error)]
pub enum NameUnavailable {
    /// Not a valid localpart (RFC 6122 §2.3, by the JID library's rules).
    #[error("not a valid username")]
    Malformed,
    /// An account has it.
    #[error("that account already exists")]
    Taken,
    /// A valid invitation reserves it.
    #[error("another invitation already reserves that username")]
    Reserved,
    /// The store could not say.
    #[error(transparent)]
    Storage(#[from] AccountError),
}

/// An invite just created: the token to hand out (never stored) and what was stored.
#[derive(Clone, Debug)]
pub struct NewInvite {
    /// The token, 40 lowercase hex digits.
    pub token: String,
    /// The stored invite.
    pub invite: Invite,
}

/// The invites of every host, over the Map store.
#[derive(Clone)]
pub struct Invites {
    map: Arc<dyn MapStore>,
}

impl std::fmt::Debug for Invites {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invites").finish_non_exhaustive()
    }
}

/// The current time in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The storage key of `token`: its SHA-256 in hex. Also the invite's id in listings (its
/// first 16 digits are shown), which identifies it without revealing the token.
pub fn token_key(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` can be one of ours: 40 lowercase hex digits. Anything else is not looked
/// up at all.
pub fn is_token_shaped(token: &str) -> bool {
    token.len() == TOKEN_BYTES * 2
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn new_token() -> StorageResult<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| StorageError::Backend(format!("no randomness for a token: {e}")))?;
    Ok(hex::encode(bytes))
}

fn decode(value: &[u8]) -> StorageResult<Invite> {
    serde_json::from_slice(value).map_err(|e| StorageError::Corrupt(format!("invite: {e}")))
}

fn encode(invite: &Invite) -> StorageResult<Vec<u8>> {
    serde_json::to_vec(invite).map_err(|e| StorageError::Corrupt(format!("invite: {e}")))
}

impl Invites {
    /// Invites kept in `map`.
    pub fn new(map: Arc<dyn MapStore>) -> Self {
        Invites { map }
    }

    /// Creates an invite of `kind` on `host`, valid for `ttl_secs` from now.
    pub async fn create(
        &self,
        host: &str,
        kind: InviteKind,
        ttl_secs: u64,
    ) -> StorageResult<NewInvite> {
        let token = new_token()?;
        let created = unix_now();
        let invite = Invite {
            kind,
            created,
            expires: created.saturating_add(ttl_secs),
        };
        self.map
            .put(
                host,
                "",
                INVITES_STORE,
                &token_key(&token),
                &encode(&invite)?,
            )
            .await?;
        Ok(NewInvite { token, invite })
    }

    /// The invite of `token` on `host`, expired or not; `None` for a token that is unknown,
    /// used, revoked or not shaped like ours.
    pub async fn get(&self, host: &str, token: &str) -> StorageResult<Option<Invite>> {
        if !is_token_shaped(token) {
            return Ok(None);
        }
        match self
            .map
            .get(host, "", INVITES_STORE, &token_key(token))
            .await?
        {
            Some(value) => decode(&value).map(Some),
            None => Ok(None),
        }
    }

    /// The invite of `token` on `host` if it may be used now (known and not expired).
    pub async fn valid(&self, host: &str, token: &str) -> StorageResult<Option<Invite>> {
        let now = unix_now();
        Ok(self
            .get(host, token)
            .await?
            .filter(|invite| invite.is_valid_at(now)))
    }

    /// Uses the invite of `token` up: removes it and returns it, or `None` when it is gone
    /// (used by someone else meanwhile, or revoked). Only one caller ever gets it.
    pub async fn consume(&self, host: &str, token: &str) -> StorageResult<Option<Invite>> {
        let Some(invite) = self.get(host, token).await? else {
            return Ok(None);
        };
        let removed = self
            .map
            .delete(host, "", INVITES_STORE, &token_key(token))
            .await?;
        Ok(removed.then_some(invite))
    }

    /// Puts back an invite [`Invites::consume`] took, when what it was taken for failed.
    pub async fn restore(&self, host: &str, token: &str, invite: &Invite) -> StorageResult<()> {
        self.map
            .put(host, "", INVITES_STORE, &token_key(token), &encode(invite)?)
            .await
    }

    /// The unexpired invites of `host` as (id, invite), by id; expired ones are removed.
    pub async fn list(&self, host: &str) -> StorageResult<Vec<(String, Invite)>> {
        let now = unix_now();
        let mut live = Vec::new();
        for (key, value) in self.map.list(host, "", INVITES_STORE).await? {
            let invite = decode(&value)?;
            if invite.is_valid_at(now) {
                live.push((key, invite));
            } else {
                self.map.delete(host, "", INVITES_STORE, &key).await?;
            }
        }
        Ok(live)
    }

    /// Whether a valid invite of `host` reserves the new account `username` (XEP-0401 §4.2),
    /// other than the invite of `except` (a token key). Invites are few (an administrator
    /// issues them), so they are read rather than indexed.
    pub async fn reserved(
        &self,
        host: &str,
        username: &str,
        except: Option<&str>,
    ) -> StorageResult<bool> {
        let now = unix_now();
        for (key, value) in self.map.list(host, "", INVITES_STORE).await? {
            if except == Some(key.as_str()) {
                continue;
            }
            let invite = decode(&value)?;
            if invite.is_valid_at(now)
                && matches!(&invite.kind, InviteKind::NamedAccount { username: u, .. } if u == username)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `name` prepared as a localpart, when a new invitation of `host` may name it: no account
    /// has it and no valid invitation reserves it.
    pub async fn free_username(
        &self,
        accounts: &Accounts,
        host: &str,
        name: &str,
    ) -> Result<String, NameUnavailable> {
        let username = jid::NodePart::new(name.trim())
            .map_err(|_| NameUnavailable::Malformed)?
            .as_str()
            .to_owned();
        if accounts.exists(host, &username).await? {
            return Err(NameUnavailable::Taken);
        }
        if self
            .reserved(host, &username, None)
            .await
            .map_err(AccountError::from)?
        {
            return Err(NameUnavailable::Reserved);
        }
        Ok(username)
    }

    /// Revokes the invite that `id_or_token` names on `host`: its token, or its id (the key
    /// [`Invites::list`] gives, or a prefix of at least 8 digits naming exactly one). Returns
    /// whether one was removed.
    pub async fn revoke(&self, host: &str, id_or_token: &str) -> StorageResult<bool> {
        if is_token_shaped(id_or_token) {
            let key = token_key(id_or_token);
            if self.map.delete(host, "", INVITES_STORE, &key).await? {
                return Ok(true);
            }
        }
        if id_or_token.len() < 8 {
            return Ok(false);
        }
        let keys: Vec<String> = self
            .map
            .list(host, "", INVITES_STORE)
            .await?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| key.starts_with(id_or_token))
            .collect();
        match keys.as_slice() {
            [key] => self.map.delete(host, "", INVITES_STORE, key).await,
            _ => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_hex_of_160_bits() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 40);
        assert!(is_token_shaped(&a) && is_token_shaped(&b));
        assert_ne!(a, b);
        for bad in [
            "",
            "ABCDEF",
            &"g".repeat(40),
            &"a".repeat(39),
            &"a".repeat(41),
        ] {
            assert!(!is_token_shaped(bad), "{bad}");
        }
    }

    #[test]
    fn the_key_hides_the_token() {
        let token = "0123456789abcdef0123456789abcdef01234567";
        let key = token_key(token);
        assert_eq!(key.len(), 64);
        assert!(!key.contains(token));
        assert_eq!(key, token_key(token));
    }

    #[test]
    fn invites_round_trip_and_expire() {
        for kind in [
            InviteKind::Account,
            InviteKind::NamedAccount {
                username: "juliet".into(),
                inviter: Some("romeo".into()),
            },
            InviteKind::NamedAccount {
                username: "juliet".into(),
                inviter: None,
            },
            InviteKind::Reset {
                user: "juliet".into(),
            },
            InviteKind::Contact {
                inviter: "romeo".into(),
            },
        ] {
            let invite = Invite {
                kind,
                created: 10,
                expires: 20,
            };
            assert_eq!(decode(&encode(&invite).unwrap()).unwrap(), invite);
            assert!(invite.is_valid_at(19));
            assert!(!invite.is_valid_at(20));
        }
        assert!(matches!(
            decode(b"{\"kind\":\"other\"}"),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn each_kind_has_its_uri() {
        let invite = |kind| Invite {
            kind,
            created: 0,
            expires: 1,
        };
        let token = "00ff";
        let uri = |kind| invite(kind).uri("example.com", token).to_uri();
        assert_eq!(
            uri(InviteKind::Account),
            "xmpp:example.com?register;preauth=00ff"
        );
        assert_eq!(
            uri(InviteKind::NamedAccount {
                username: "juliet".into(),
                inviter: None,
            }),
            "xmpp:juliet@example.com?register;preauth=00ff"
        );
        assert_eq!(
            uri(InviteKind::Reset {
                user: "juliet".into()
            }),
            "xmpp:juliet@example.com?register;preauth=00ff"
        );
        assert_eq!(
            uri(InviteKind::Contact {
                inviter: "romeo".into()
            }),
            "xmpp:romeo@example.com?roster;preauth=00ff;ibr=y"
        );
    }
}
