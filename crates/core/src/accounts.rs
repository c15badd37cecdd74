//! Accounts: SCRAM credentials in the `accounts` KeyVal store.
//!
//! Only the SCRAM StoredKey/ServerKey/salt/iterations per hash are kept (never the password,
//! never the SaltedPassword): a stolen database does not let anyone log in, and the same
//! values are what Prosody and ejabberd store, so XEP-0227 imports stay possible.

use std::sync::Arc;

use jid::BareJid;
use xmppd_stream::sasl::StoredCredentials;

use crate::storage::{KeyVal, StorageError, UserData};

/// The KeyVal store that holds credentials.
pub const ACCOUNTS_STORE: &str = "accounts";

/// Why an account operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// `adduser` for an existing account.
    #[error("account {0} already exists")]
    Exists(BareJid),
    /// The account does not exist.
    #[error("account {0} does not exist")]
    NotFound(BareJid),
    /// A JID without a localpart cannot be an account.
    #[error("{0} is not an account address (user@domain)")]
    NotAnAccount(String),
    /// The password is not acceptable (empty, or not valid under SASLprep).
    #[error("unacceptable password: {0}")]
    BadPassword(String),
    /// The storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Account management on top of the storage shapes.
#[derive(Clone)]
pub struct Accounts {
    keyval: Arc<dyn KeyVal>,
    users: Arc<dyn UserData>,
    iterations: u32,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounts")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

fn split(jid: &BareJid) -> Result<(&str, &str), AccountError> {
    match jid.node() {
        Some(node) => Ok((jid.domain().as_str(), node.as_str())),
        None => Err(AccountError::NotAnAccount(jid.to_string())),
    }
}

impl Accounts {
    /// Accounts over these stores, deriving new credentials with `iterations` PBKDF2 rounds.
    pub fn new(keyval: Arc<dyn KeyVal>, users: Arc<dyn UserData>, iterations: u32) -> Self {
        Accounts {
            keyval,
            users,
            iterations,
        }
    }

    fn derive(&self, password: &str) -> Result<Vec<u8>, AccountError> {
        if password.is_empty() {
            return Err(AccountError::BadPassword("the password is empty".into()));
        }
        let creds = StoredCredentials::derive(password, self.iterations)
            .map_err(|e| AccountError::BadPassword(e.to_string()))?;
        serde_json::to_vec(&creds).map_err(|e| StorageError::Corrupt(e.to_string()).into())
    }

    /// Creates an account; fails if it exists.
    pub async fn create(&self, jid: &BareJid, password: &str) -> Result<(), AccountError> {
        let (host, user) = split(jid)?;
        let doc = self.derive(password)?;
        if self
            .keyval
            .insert_new(host, user, ACCOUNTS_STORE, &doc)
            .await?
        {
            Ok(())
        } else {
            Err(AccountError::Exists(jid.clone()))
        }
    }

    /// Replaces the password of an existing account.
    pub async fn set_password(&self, jid: &BareJid, password: &str) -> Result<(), AccountError> {
        let (host, user) = split(jid)?;
        if self.keyval.get(host, user, ACCOUNTS_STORE).await?.is_none() {
            return Err(AccountError::NotFound(jid.clone()));
        }
        let doc = self.derive(password)?;
        self.keyval.put(host, user, ACCOUNTS_STORE, &doc).await?;
        Ok(())
    }

    /// Deletes the account and everything stored for it.
    pub async fn delete(&self, jid: &BareJid) -> Result<(), AccountError> {
        let (host, user) = split(jid)?;
        if self.keyval.get(host, user, ACCOUNTS_STORE).await?.is_none() {
            return Err(AccountError::NotFound(jid.clone()));
        }
        self.users.delete_user(host, user).await?;
        Ok(())
    }

    /// The stored credentials, `None` when the account does not exist.
    pub async fn credentials(
        &self,
        host: &str,
        user: &str,
    ) -> Result<Option<StoredCredentials>, AccountError> {
        match self.keyval.get(host, user, ACCOUNTS_STORE).await? {
            None => Ok(None),
            Some(doc) => serde_json::from_slice(&doc)
                .map(Some)
                .map_err(|e| StorageError::Corrupt(format!("account {user}@{host}: {e}")).into()),
        }
    }

    /// Whether the account exists.
    pub async fn exists(&self, host: &str, user: &str) -> Result<bool, AccountError> {
        Ok(self.keyval.get(host, user, ACCOUNTS_STORE).await?.is_some())
    }

    /// Accounts of a host, sorted.
    pub async fn list(&self, host: &str) -> Result<Vec<String>, AccountError> {
        Ok(self.keyval.users(host, ACCOUNTS_STORE).await?)
    }
}
