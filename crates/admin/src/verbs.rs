//! The admin verbs, each implemented once: the CLI (through the Unix socket), the ad-hoc
//! commands (XEP-0133) and the HTTP admin API all call these.
//!
//! **Deleting a user** goes the way in-band removal does (XEP-0077 §3.2): the contacts are
//! told the subscriptions ended, everything stored for the account goes
//! ([`xmppd_core::Accounts::delete`]: roster, archives, uploads' records …), and then every
//! session of the account ends with a `not-authorized` stream error.
//!
//! **Kicking** ends a session with `policy-violation` and the text "kicked by an
//! administrator" (and the reason, if one was given), as ejabberd's `kick_session` does;
//! Prosody closes the stream without an error, which tells the client nothing, and
//! `conflict` would read as a resource clash, which clients answer by logging in again under
//! another resource. A kicked session first writes what was queued for it.

use std::time::Instant;

use jid::{BareJid, Jid};
use serde::Serialize;
use tracing::info;
use xmppd_core::storage::Storage;
use xmppd_core::{AccountError, Router};
use xmppd_im::RosterStore;
use xmppd_proto::stanza::StanzaKind;
use xmppd_proto::{Stanza, StreamError, StreamErrorCondition, ns};
use xmppd_xml::Element;

/// Why a verb failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The text is not a JID (RFC 7622).
    #[error("'{0}' is not a valid JID")]
    InvalidJid(String),
    /// An account address was expected (user@host), without a resource.
    #[error("'{0}' is not an account address (user@host)")]
    NotAnAccount(String),
    /// The domain is not one of this server's hosts.
    #[error("{0} is not a host of this server")]
    UnknownHost(String),
    /// The account exists already.
    #[error("account {0} already exists")]
    Exists(BareJid),
    /// The account does not exist.
    #[error("account {0} does not exist")]
    NotFound(BareJid),
    /// No session to act on.
    #[error("{0} has no session online")]
    NotOnline(String),
    /// The password is not acceptable (empty, or not valid under SASLprep).
    #[error("unacceptable password: {0}")]
    BadPassword(String),
    /// Another value of the request is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The storage failed.
    #[error("storage failed: {0}")]
    Storage(String),
}

impl From<AccountError> for AdminError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Exists(j) => AdminError::Exists(j),
            AccountError::NotFound(j) => AdminError::NotFound(j),
            AccountError::NotAnAccount(t) => AdminError::NotAnAccount(t),
            AccountError::BadPassword(t) => AdminError::BadPassword(t),
            AccountError::Storage(e) => AdminError::Storage(e.to_string()),
        }
    }
}

/// One bound client session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    /// The full JID.
    pub jid: String,
    /// The account.
    pub account: String,
    /// The resource.
    pub resource: String,
    /// Whether it sent available presence.
    pub available: bool,
    /// Its presence priority, when available.
    pub priority: Option<i8>,
    /// The client's address when it bound, if its transport knew it.
    pub ip: Option<String>,
    /// `tcp` or `websocket`.
    pub transport: &'static str,
    /// Whether the stream is over TLS.
    pub tls: bool,
    /// When it bound, in seconds since the Unix epoch.
    pub since: Option<u64>,
}

/// One host's figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostStats {
    /// The host.
    pub host: String,
    /// Registered accounts.
    pub users: u64,
    /// Bound sessions.
    pub sessions: u64,
    /// Accounts with at least one bound session.
    pub online_users: u64,
}

/// The server's figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Per host.
    pub hosts: Vec<HostStats>,
    /// Bound sessions on every host.
    pub sessions: u64,
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// Established inbound federation links.
    pub s2s_in: u64,
    /// Established outbound federation links.
    pub s2s_out: u64,
}

/// What XEP-0133's "get user statistics" tells of one account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserStats {
    /// The account.
    pub jid: String,
    /// Items in its roster.
    pub roster_size: u64,
    /// Full JIDs of its bound sessions.
    pub online_resources: Vec<String>,
}

/// The verbs, with the stores they need beside the router.
#[derive(Clone)]
pub struct Admin {
    roster: RosterStore,
    started: Instant,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

/// `text` as an account of one of the router's hosts.
pub fn account(router: &Router, text: &str) -> Result<BareJid, AdminError> {
    let jid = Jid::new(text.trim()).map_err(|_| AdminError::InvalidJid(text.to_owned()))?;
    if jid.is_full() || jid.node().is_none() {
        return Err(AdminError::NotAnAccount(text.to_owned()));
    }
    let bare = jid.into_bare();
    local(router, bare.domain().as_str())?;
    Ok(bare)
}

/// `host` if it is one of the router's hosts.
pub fn local<'a>(router: &Router, host: &'a str) -> Result<&'a str, AdminError> {
    if router.is_local_domain(host) {
        Ok(host)
    } else {
        Err(AdminError::UnknownHost(host.to_owned()))
    }
}

/// Checks that `jid` is an existing account of one of the router's hosts.
async fn existing(router: &Router, jid: &BareJid) -> Result<(), AdminError> {
    let host = local(router, jid.domain().as_str())?;
    let user = jid.node().map_or("", |n| n.as_str());
    if router.accounts().exists(host, user).await? {
        Ok(())
    } else {
        Err(AdminError::NotFound(jid.clone()))
    }
}

fn storage(e: impl std::fmt::Display) -> AdminError {
    AdminError::Storage(e.to_string())
}

impl Admin {
    /// The verbs over `storage` (for the rosters); the uptime counts from now.
    pub fn new(storage: &Storage) -> Self {
        Admin {
            roster: RosterStore::new(storage.map.clone(), storage.keyval.clone()),
            started: Instant::now(),
        }
    }

    /// The accounts of `host`, sorted.
    pub async fn list_users(&self, router: &Router, host: &str) -> Result<Vec<String>, AdminError> {
        let host = local(router, host)?;
        let users = router.accounts().list(host).await?;
        Ok(users.into_iter().map(|u| format!("{u}@{host}")).collect())
    }

    /// Creates an account.
    pub async fn add_user(
        &self,
        router: &Router,
        jid: &BareJid,
        password: &str,
    ) -> Result<(), AdminError> {
        local(router, jid.domain().as_str())?;
        router.accounts().create(jid, password).await?;
        info!(%jid, "account created by an administrator");
        Ok(())
    }

    /// Deletes an account, as its own removal would (see the module's comment); returns how
    /// many sessions it ended.
    pub async fn delete_user(&self, router: &Router, jid: &BareJid) -> Result<usize, AdminError> {
        existing(router, jid).await?;
        let sessions = xmppd_im::remove_account(router, &self.roster, jid).await?;
        info!(%jid, sessions, "account deleted by an administrator");
        Ok(sessions)
    }

    /// Replaces an account's password (new SCRAM credentials).
    pub async fn change_password(
        &self,
        router: &Router,
        jid: &BareJid,
        password: &str,
    ) -> Result<(), AdminError> {
        local(router, jid.domain().as_str())?;
        router.accounts().set_password(jid, password).await?;
        info!(%jid, "password changed by an administrator");
        Ok(())
    }

    /// The bound sessions, of one host or all, sorted by JID.
    pub fn list_sessions(
        &self,
        router: &Router,
        host: Option<&str>,
    ) -> Result<Vec<SessionInfo>, AdminError> {
        if let Some(host) = host {
            local(router, host)?;
        }
        let mut list: Vec<SessionInfo> = router
            .sessions()
            .all()
            .into_iter()
            .filter(|r| host.is_none_or(|h| r.jid.domain().as_str() == h))
            .map(|r| {
                let origin = r.origin();
                SessionInfo {
                    jid: r.jid.to_string(),
                    account: r.jid.to_bare().to_string(),
                    resource: r.jid.resource().to_string(),
                    available: r.priority.is_some(),
                    priority: r.priority,
                    ip: origin.and_then(|o| o.ip).map(|ip| ip.to_string()),
                    transport: match origin {
                        Some(o) if o.websocket => "websocket",
                        _ => "tcp",
                    },
                    tls: origin.is_some_and(|o| o.tls),
                    since: origin.map(|o| o.since),
                }
            })
            .collect();
        list.sort_by(|a, b| a.jid.cmp(&b.jid));
        Ok(list)
    }

    /// Ends the session of a full JID, or every session of a bare one; returns how many.
    pub fn kick(
        &self,
        router: &Router,
        jid: &Jid,
        reason: Option<&str>,
    ) -> Result<usize, AdminError> {
        local(router, jid.domain().as_str())?;
        if jid.node().is_none() {
            return Err(AdminError::NotAnAccount(jid.to_string()));
        }
        let text = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => format!("kicked by an administrator: {r}"),
            None => "kicked by an administrator".to_owned(),
        };
        let error = StreamError::with_text(StreamErrorCondition::PolicyViolation, text);
        let sessions = match jid.try_as_full() {
            Ok(full) => router.sessions().get(full).into_iter().collect(),
            Err(_) => router.sessions().resources(&jid.to_bare()),
        };
        if sessions.is_empty() {
            return Err(AdminError::NotOnline(jid.to_string()));
        }
        for s in &sessions {
            s.kick(error.clone());
        }
        info!(%jid, sessions = sessions.len(), "kicked by an administrator");
        Ok(sessions.len())
    }

    /// Accounts and sessions per host, uptime and federation links.
    pub async fn stats(&self, router: &Router) -> Result<Stats, AdminError> {
        let sessions = router.sessions().all();
        let mut hosts = Vec::new();
        for host in router.hosts() {
            let users = router.accounts().list(&host).await?.len() as u64;
            let mine: Vec<_> = sessions
                .iter()
                .filter(|s| s.jid.domain().as_str() == host)
                .collect();
            let mut accounts: Vec<BareJid> = mine.iter().map(|s| s.jid.to_bare()).collect();
            accounts.sort_by(|a, b| a.as_str().cmp(b.as_str()));
            accounts.dedup();
            hosts.push(HostStats {
                host,
                users,
                sessions: mine.len() as u64,
                online_users: accounts.len() as u64,
            });
        }
        let (s2s_in, s2s_out) = router.metrics().s2s_links_established();
        Ok(Stats {
            hosts,
            sessions: sessions.len() as u64,
            uptime_secs: self.started.elapsed().as_secs(),
            s2s_in,
            s2s_out,
        })
    }

    /// XEP-0133 §4.10: roster size and online resources of an account.
    pub async fn user_stats(
        &self,
        router: &Router,
        jid: &BareJid,
    ) -> Result<UserStats, AdminError> {
        existing(router, jid).await?;
        let roster_size = self.roster.items(jid).await.map_err(storage)?.len() as u64;
        let mut online_resources: Vec<String> = router
            .sessions()
            .resources(jid)
            .into_iter()
            .map(|r| r.jid.to_string())
            .collect();
        online_resources.sort();
        Ok(UserStats {
            jid: jid.to_string(),
            roster_size,
            online_resources,
        })
    }

    /// XEP-0133 §4.23: a `headline` message from `host` to every session bound on it;
    /// returns how many it was sent to.
    pub async fn announce(
        &self,
        router: &Router,
        host: &str,
        subject: Option<&str>,
        body: &str,
    ) -> Result<usize, AdminError> {
        let host = local(router, host)?;
        if body.trim().is_empty() {
            return Err(AdminError::Invalid("the announcement is empty".into()));
        }
        let from = Jid::new(host).map_err(|_| AdminError::InvalidJid(host.to_owned()))?;
        let targets: Vec<_> = router
            .sessions()
            .all()
            .into_iter()
            .filter(|s| s.jid.domain().as_str() == host)
            .collect();
        for target in &targets {
            let to = Jid::from(target.jid.clone());
            let mut el = Element::new("message", ns::CLIENT)
                .with_attr("from", from.as_str())
                .with_attr("to", to.as_str())
                .with_attr("type", "headline");
            if let Some(subject) = subject.filter(|s| !s.is_empty()) {
                el.push_child(Element::new("subject", ns::CLIENT).with_text(subject));
            }
            el.push_child(Element::new("body", ns::CLIENT).with_text(body));
            let stanza =
                Stanza::new_unchecked(StanzaKind::Message, Some(from.clone()), Some(to), el);
            router.route(stanza).await;
        }
        info!(%host, sessions = targets.len(), "announcement sent");
        Ok(targets.len())
    }
}
