//! `xmppd invite`: issuing, listing and revoking invitations (XEP-0401 Easy User
//! Onboarding) from the command line.
//!
//! Like `adduser`, these work straight against storage, with the server running or not: the
//! server reads invitations from the same store when a token is presented (see
//! `xmppd_core::invites`), so one issued here is usable at once.
//!
//! Each invitation is printed as its `xmpp:` URI and the URL of its landing page
//! (`GET /invite/TOKEN` on the HTTP listeners, `xmppd_http`'s `invite.rs`): the configured
//! `[invites] landing_page_url` followed by the token, or else the first HTTPS (failing that,
//! HTTP) listener's port on the host's name.

use anyhow::Context as _;
use jid::BareJid;
use xmppd_core::Invites;
use xmppd_core::invites::{Invite, InviteKind, NameUnavailable};
use xmppd_core::storage::Storage;
use xmppd_http::HttpKind;

use crate::Config;
use crate::admin::host_names;

/// What `invite create` was asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteRequest {
    /// A new account of the holder's choosing.
    Account,
    /// The new account of this name (a localpart), reserved meanwhile.
    NamedAccount(String),
    /// A new password for this account (a JID, or a localpart on the host).
    Reset(String),
    /// Becoming this account's contact (registering an account if need be).
    Contact(String),
}

/// An invitation just issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// Its host.
    pub host: String,
    /// The token (printed only inside the URI and URL).
    pub token: String,
    /// The `xmpp:` URI.
    pub uri: String,
    /// The landing page, when there is a listener or a configured URL for it.
    pub landing_page: Option<String>,
    /// The stored invitation.
    pub invite: Invite,
}

/// The host `given` names (it must be configured), or the only configured one.
fn host(config: &Config, given: Option<&str>) -> anyhow::Result<String> {
    match given {
        Some(name) => {
            let name = name.to_ascii_lowercase();
            anyhow::ensure!(
                config.hosts.iter().any(|h| h.name == name),
                "{name} is not a host of this server (configured: {})",
                host_names(config)
            );
            Ok(name)
        }
        None => match config.hosts.as_slice() {
            [only] => Ok(only.name.clone()),
            _ => anyhow::bail!("name the host: one of {}", host_names(config)),
        },
    }
}

/// An existing account named by `text` (a JID, or a localpart on `host` when given).
async fn account(
    config: &Config,
    storage: &Storage,
    host: Option<&str>,
    text: &str,
) -> anyhow::Result<BareJid> {
    let text = match (text.contains('@'), host) {
        (false, Some(host)) => format!("{text}@{host}"),
        (false, None) => format!("{text}@{}", self::host(config, None)?),
        (true, _) => text.to_owned(),
    };
    let jid = crate::admin::account_jid(config, &text)?;
    if let Some(host) = host {
        anyhow::ensure!(
            jid.domain().as_str() == host,
            "{jid} is not an account of {host}"
        );
    }
    let (domain, user) = (jid.domain().as_str(), jid.node().map_or("", |n| n.as_str()));
    anyhow::ensure!(
        crate::accounts(storage).exists(domain, user).await?,
        "there is no account {jid}"
    );
    Ok(jid)
}

/// The ports HTTP listeners configured with port 0 got from the system, once they are bound:
/// the running server's landing pages name those, not 0.
#[derive(Clone, Debug, Default)]
pub struct BoundPorts(std::sync::Arc<std::sync::Mutex<Vec<(u16, u16)>>>);

impl BoundPorts {
    /// A listener configured with `configured` got `bound`.
    pub fn bound(&self, configured: u16, bound: u16) {
        if let Ok(mut ports) = self.0.lock() {
            ports.push((configured, bound));
        }
    }

    /// The port a listener configured with `port` got (the first such).
    fn actual(&self, port: u16) -> u16 {
        self.0
            .lock()
            .ok()
            .and_then(|ports| ports.iter().find(|(c, _)| *c == port).map(|(_, b)| *b))
            .unwrap_or(port)
    }
}

/// The landing page of `token` on `host`, as the running server serves it (on the port its
/// listener got, where it was configured with 0).
pub fn landing_page_on(
    config: &Config,
    host: &str,
    token: &str,
    ports: &BoundPorts,
) -> Option<String> {
    landing_page_at(config, host, token, |port| ports.actual(port))
}

/// The landing page of `token` on `host`.
pub fn landing_page(config: &Config, host: &str, token: &str) -> Option<String> {
    landing_page_at(config, host, token, |port| port)
}

/// The landing page of `token` on `host`: `[invites] landing_page_url` followed by the token,
/// or else on the first HTTPS (failing that, HTTP) listener, whose configured port `port`
/// turns into the one it listens on.
fn landing_page_at(
    config: &Config,
    host: &str,
    token: &str,
    port: impl Fn(u16) -> u16,
) -> Option<String> {
    if let Some(base) = &config.invites.landing_page_url {
        return Some(format!("{base}{token}"));
    }
    let listener = config
        .http_listen
        .iter()
        .find(|l| l.kind == HttpKind::Tls)
        .or_else(|| config.http_listen.first())?;
    let (scheme, default_port) = match listener.kind {
        HttpKind::Tls => ("https", 443),
        HttpKind::Plain => ("http", 80),
    };
    let port = port(listener.addr.port());
    let authority = if port == default_port {
        host.to_owned()
    } else {
        format!("{host}:{port}")
    };
    Some(format!(
        "{scheme}://{authority}{}{token}",
        xmppd_http::invite::PREFIX
    ))
}

/// Issues an invitation on `host` (or the only host, or the account's): valid for
/// `expires_secs` (or `[invites] expiry`).
pub async fn create(
    config: &Config,
    storage: &Storage,
    host: Option<&str>,
    request: &InviteRequest,
    expires_secs: Option<u64>,
) -> anyhow::Result<Issued> {
    let given = host.map(str::to_ascii_lowercase);
    let (host, kind) = match request {
        InviteRequest::Account => (self::host(config, given.as_deref())?, InviteKind::Account),
        InviteRequest::NamedAccount(name) => {
            let host = self::host(config, given.as_deref())?;
            let username = Invites::new(storage.map.clone())
                .free_username(&crate::accounts(storage), &host, name)
                .await
                .map_err(|e| match e {
                    NameUnavailable::Malformed => {
                        anyhow::anyhow!("{name:?} is not a valid username")
                    }
                    NameUnavailable::Taken => {
                        anyhow::anyhow!("there is already an account {name}@{host}")
                    }
                    NameUnavailable::Reserved => {
                        anyhow::anyhow!("another invitation already reserves {name}@{host}")
                    }
                    NameUnavailable::Storage(e) => anyhow::Error::from(e),
                })?;
            let kind = InviteKind::NamedAccount {
                username,
                inviter: None,
            };
            (host, kind)
        }
        InviteRequest::Reset(who) | InviteRequest::Contact(who) => {
            let jid = account(config, storage, given.as_deref(), who).await?;
            let user = jid.node().map_or("", |n| n.as_str()).to_owned();
            let kind = match request {
                InviteRequest::Reset(_) => InviteKind::Reset { user },
                _ => InviteKind::Contact { inviter: user },
            };
            (jid.domain().as_str().to_owned(), kind)
        }
    };
    let ttl = expires_secs.unwrap_or(config.invites.expiry_secs);
    let new = Invites::new(storage.map.clone())
        .create(&host, kind, ttl)
        .await
        .context("cannot store the invitation")?;
    Ok(Issued {
        uri: new.invite.uri(&host, &new.token).to_uri(),
        landing_page: landing_page(config, &host, &new.token),
        host,
        token: new.token,
        invite: new.invite,
    })
}

/// What an invitation is for, in words.
pub fn describe(invite: &Invite, host: &str) -> String {
    match &invite.kind {
        InviteKind::Account => format!("a new account on {host}"),
        InviteKind::NamedAccount { username, .. } => format!("the new account {username}@{host}"),
        InviteKind::Reset { user } => format!("a new password for {user}@{host}"),
        InviteKind::Contact { inviter } => format!("a contact of {inviter}@{host}"),
    }
}

/// The unexpired invitations of `host` (or of every host), as (host, id, invitation).
pub async fn list(
    config: &Config,
    storage: &Storage,
    host: Option<&str>,
) -> anyhow::Result<Vec<(String, String, Invite)>> {
    let hosts = match host {
        Some(h) => vec![self::host(config, Some(h))?],
        None => config.hosts.iter().map(|h| h.name.clone()).collect(),
    };
    let invites = Invites::new(storage.map.clone());
    let mut all = Vec::new();
    for host in hosts {
        for (id, invite) in invites.list(&host).await? {
            all.push((host.clone(), id, invite));
        }
    }
    Ok(all)
}

/// Revokes the invitation `id_or_token` names on `host` (or on whichever host has it);
/// returns its host.
pub async fn revoke(
    config: &Config,
    storage: &Storage,
    host: Option<&str>,
    id_or_token: &str,
) -> anyhow::Result<String> {
    let hosts = match host {
        Some(h) => vec![self::host(config, Some(h))?],
        None => config.hosts.iter().map(|h| h.name.clone()).collect(),
    };
    let invites = Invites::new(storage.map.clone());
    for host in hosts {
        if invites.revoke(&host, id_or_token).await? {
            return Ok(host);
        }
    }
    anyhow::bail!(
        "no invitation '{id_or_token}': give its token, or an id of at least 8 digits from \
         `xmppd invite list` that names only one"
    )
}
