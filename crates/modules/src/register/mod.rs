//! XEP-0077: In-Band Registration — creating an account before authenticating, changing its
//! password and removing it.
//!
//! **Creating** (§3.1, §3.1.1) is off unless `[modules.register] enabled = true`. It happens
//! on a stream that has not authenticated, so it does not come through the router: the
//! negotiation hands the query to [`PreAuth`] (see `xmppd_core::InBandRegistration`) with
//! the address the client connects from. In order, a registration is refused with
//! `not-allowed` when an `allow` list does not hold that address; `not-acceptable` when the
//! username or password is missing or empty (§3.1 and its note) or breaks the configured
//! rules (nodeprep, lengths); `resource-constraint` when the address created `max_per_ip`
//! accounts within the window (§3.1.1 leaves the limit to the service; ejabberd answers the
//! same); `conflict` when the account exists. Only created accounts count towards the limit.
//!
//! **Changing the password** (§3.3) and **removing the account** (§3.2) are always
//! available to an authenticated account, for itself only: a query naming another username
//! is `not-authorized`, one without a username or new password `bad-request` (the password
//! is then kept, as §3.3 requires for an empty one), a `<remove/>` beside anything else
//! `bad-request`, and a request for another account's JID `forbidden`. Other servers' users
//! cannot register here (`service-unavailable`).
//!
//! **Removal** deletes everything stored for the account ([`xmppd_core::Accounts::delete`]),
//! after its contacts were told their subscriptions ended (§3.2: the server "SHOULD also
//! cancel all existing presence subscriptions"). The result goes to the requester, and then
//! every session of the account ends with a `not-authorized` stream error (§3.2: "the server
//! SHOULD then return a <not-authorized/> stream error and terminate all active sessions"),
//! each after writing what was already queued for it, so the result is not lost.
//!
//! The server advertises `jabber:iq:register` in disco#info (§10) whenever the module runs,
//! since password changes are possible then, and the `<register/>` stream feature (§8) only
//! where creating accounts is enabled or invitations are accepted.
//!
//! **Invitations** (`[modules.register] invites`, on by default; see `invites.rs`) let a
//! client holding a token register even where `enabled` is false, which makes such a host
//! invitation-only: a registration without a token there is `forbidden`.

mod invites;
mod limiter;
mod settings;

pub use limiter::{AddressLimiter, Refusal};
pub use settings::{IpNetwork, RegisterSettings};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jid::BareJid;
use tracing::{info, warn};
use xmppd_core::storage::Storage;
use xmppd_core::{
    AccountError, Fixed, InBandRegistration, Invites, IqHandler, IqRequest, IqTarget, IqType, Live,
    Module, Reconfigure, RegistrationRequest, Registry, Router,
};
use xmppd_im::RosterStore;
use xmppd_proto::pars::{NS_PARS, Preauth};
use xmppd_proto::register::{NS_REGISTER, RegisterQuery};
use xmppd_proto::{DefinedCondition, StanzaError};
use xmppd_xml::Element;

/// The in-band registration module.
pub struct Register {
    rules: Arc<Rules>,
    roster: RosterStore,
}

impl std::fmt::Debug for Register {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Register")
            .field("settings", &self.rules.settings)
            .finish_non_exhaustive()
    }
}

/// The settings and the per-address counts they need.
struct Rules {
    /// Replaced by a reload, except what the limiters and the registration at startup were
    /// built from (see [`Register::check`]); one request reads it once.
    settings: Live<RegisterSettings>,
    limiter: AddressLimiter,
    /// Refused invitation tokens per address.
    token_failures: AddressLimiter,
    invites: Invites,
    /// Rosters, for the mutual subscription of a contact invitation.
    roster: RosterStore,
}

impl Register {
    /// The module; `storage` is read for rosters (contacts to tell on removal).
    pub fn new(storage: &Storage, settings: RegisterSettings) -> Self {
        let window = Duration::from_secs(settings.window_secs);
        let limiter =
            AddressLimiter::new(settings.max_per_ip, window, settings.max_tracked_addresses);
        let token_failures = AddressLimiter::new(
            settings.max_token_failures_per_ip,
            window,
            settings.max_tracked_addresses,
        );
        let roster = RosterStore::new(storage.map.clone(), storage.keyval.clone());
        Register {
            rules: Arc::new(Rules {
                settings: Live::new(settings),
                limiter,
                token_failures,
                invites: Invites::new(storage.map.clone()),
                roster: roster.clone(),
            }),
            roster,
        }
    }
}

impl Reconfigure for Register {
    type Settings = RegisterSettings;

    /// The per-address limiters were built from `max_per_ip`, `window_secs`,
    /// `max_tracked_addresses` and `max_token_failures_per_ip`: new limiters would forget the
    /// addresses they count. Registration before authentication is offered to streams only
    /// when `enabled` or `invites` was on at startup: switching it on from both off waits too.
    fn check(&self, new: &mut RegisterSettings) -> Result<Vec<&'static str>, String> {
        let running = self.rules.settings.get();
        let (old, new) = (&*running, &*new);
        let mut fixed = Fixed::default()
            .key("max_per_ip", &old.max_per_ip, &new.max_per_ip)
            .key("window_secs", &old.window_secs, &new.window_secs)
            .key(
                "max_tracked_addresses",
                &old.max_tracked_addresses,
                &new.max_tracked_addresses,
            )
            .key(
                "max_token_failures_per_ip",
                &old.max_token_failures_per_ip,
                &new.max_token_failures_per_ip,
            );
        if !old.enabled && !old.invites {
            fixed = fixed
                .key("enabled", &false, &new.enabled)
                .key("invites", &false, &new.invites);
        }
        Ok(fixed.into_keys())
    }

    fn reconfigure(&self, mut new: RegisterSettings) {
        let running = self.rules.settings.get();
        new.max_per_ip = running.max_per_ip;
        new.window_secs = running.window_secs;
        new.max_tracked_addresses = running.max_tracked_addresses;
        new.max_token_failures_per_ip = running.max_token_failures_per_ip;
        if !running.enabled && !running.invites {
            new.enabled = false;
            new.invites = false;
        }
        self.rules.settings.set(new);
    }
}

impl Module for Register {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        let settings = self.rules.settings.get();
        if settings.enabled || settings.invites {
            registry.in_band_registration(Arc::new(PreAuth(self.rules.clone())));
        }
        for target in [IqTarget::Server, IqTarget::Account] {
            for iq_type in [IqType::Get, IqType::Set] {
                registry.iq(target, iq_type, NS_REGISTER, "query", self.clone());
            }
        }
        registry.server_feature(NS_REGISTER);
    }
}

fn not_acceptable(text: impl Into<String>) -> StanzaError {
    StanzaError::new(DefinedCondition::NotAcceptable).with_text(text)
}

fn internal(e: impl std::fmt::Display) -> StanzaError {
    warn!(error = %e, "account storage failed");
    StanzaError::new(DefinedCondition::InternalServerError).with_text("account storage failed")
}

/// The account `username` would be on `host`, if the name is acceptable under `s`.
fn account_of(s: &RegisterSettings, username: &str, host: &str) -> Result<BareJid, StanzaError> {
    let jid = BareJid::new(&format!("{username}@{host}"))
        .ok()
        .filter(|j| j.domain().as_str() == host)
        .ok_or_else(|| not_acceptable(format!("'{username}' is not a valid username")))?;
    let length = jid.node().map_or(0, |n| n.as_str().chars().count());
    if length < s.username_min_length || length > s.username_max_length {
        return Err(not_acceptable(format!(
            "a username has {} to {} characters",
            s.username_min_length, s.username_max_length
        )));
    }
    Ok(jid)
}

/// Whether `password` has a length `s` accepts.
fn password_check(s: &RegisterSettings, password: &str) -> Result<(), StanzaError> {
    let length = password.chars().count();
    if length < s.password_min_length || length > s.password_max_length {
        return Err(not_acceptable(format!(
            "a password has {} to {} characters",
            s.password_min_length, s.password_max_length
        )));
    }
    Ok(())
}

impl Rules {
    /// The account `username` would be on `host`, if the name is acceptable.
    fn account(&self, username: &str, host: &str) -> Result<BareJid, StanzaError> {
        account_of(&self.settings.get(), username, host)
    }

    fn check_password(&self, password: &str) -> Result<(), StanzaError> {
        password_check(&self.settings.get(), password)
    }

    /// §3.1: creates the account the query describes, for a client at `peer` — or, when the
    /// stream presented an invitation `token`, does what the invitation is for.
    async fn create(
        &self,
        router: &Router,
        host: &str,
        peer: Option<IpAddr>,
        query: &RegisterQuery,
        token: Option<&str>,
    ) -> Result<(), StanzaError> {
        if query.remove {
            return Err(StanzaError::new(DefinedCondition::UnexpectedRequest)
                .with_text("only a registered and authenticated account can be removed"));
        }
        let (Some(username), Some(password)) = (
            query.username.as_deref().filter(|u| !u.is_empty()),
            query.password.as_deref().filter(|p| !p.is_empty()),
        ) else {
            return Err(not_acceptable("a username and a password are required"));
        };
        let settings = self.settings.get();
        let jid = account_of(&settings, username, host)?;
        password_check(&settings, password)?;
        if let Some(token) = token {
            return self.redeem(router, host, &jid, password, token).await;
        }
        if !settings.enabled {
            return Err(StanzaError::new(DefinedCondition::Forbidden)
                .with_text("registration on this server is by invitation only"));
        }
        self.refuse_reserved(host, jid.node().map_or("", |n| n.as_str()), None)
            .await?;
        self.limiter
            .acquire(peer, Instant::now())
            .map_err(|refusal| {
                StanzaError::new(DefinedCondition::ResourceConstraint)
                    .with_text(refusal.to_string())
            })?;
        match router.accounts().create(&jid, password).await {
            Ok(()) => {
                info!(%jid, peer = ?peer, "account registered in band");
                Ok(())
            }
            Err(e) => {
                self.limiter.release(peer);
                Err(match e {
                    AccountError::Exists(_) => StanzaError::new(DefinedCondition::Conflict)
                        .with_text("that username is taken"),
                    AccountError::BadPassword(text) => not_acceptable(text),
                    AccountError::NotAnAccount(text) => not_acceptable(text),
                    other => internal(other),
                })
            }
        }
    }
}

/// Registration before authentication.
struct PreAuth(Arc<Rules>);

#[async_trait]
impl InBandRegistration for PreAuth {
    async fn handle(
        &self,
        request: RegistrationRequest<'_>,
    ) -> Result<Option<Element>, StanzaError> {
        let rules = &self.0;
        let settings = rules.settings.get();
        if request.query.is("preauth", NS_PARS) {
            // A <preauth/> without a token is a bad request.
            let preauth = Preauth::try_from(request.query)?;
            if !settings.invites {
                return Err(StanzaError::service_unavailable()
                    .with_text("this server does not take invitations"));
            }
            rules
                .check_token(request.host, request.peer, &preauth.token)
                .await?;
            *request.preauth = Some(preauth.token);
            return Ok(None);
        }
        // An invitation admits its holder from anywhere; `allow` is for open registration.
        if request.preauth.is_none() && !settings.allows(request.peer) {
            return Err(StanzaError::new(DefinedCondition::NotAllowed)
                .with_text("registration is not open to your network"));
        }
        match request.iq_type {
            IqType::Get => {
                let form = RegisterQuery::form(settings.instructions.as_str());
                Ok(Some(form.to_element()))
            }
            IqType::Set => {
                let query = RegisterQuery::try_from(request.query)?;
                let token = request.preauth.clone();
                rules
                    .create(
                        request.router,
                        request.host,
                        request.peer,
                        &query,
                        token.as_deref(),
                    )
                    .await?;
                if token.is_some() {
                    *request.preauth = None;
                }
                Ok(None)
            }
        }
    }

    fn accepts_invites(&self) -> bool {
        self.0.settings.get().invites
    }
}

/// The requester's own account, when it is a local account of the addressed host asking
/// for itself.
fn own_account(request: &IqRequest<'_>) -> Result<BareJid, StanzaError> {
    let from = request.from.to_bare();
    let host = request.to.domain();
    if from.node().is_none() || from.domain() != host {
        return Err(StanzaError::service_unavailable());
    }
    if request.to.node().is_some() && *request.to != from {
        return Err(StanzaError::new(DefinedCondition::Forbidden)
            .with_text("only the account itself can change or remove its registration"));
    }
    Ok(from)
}

#[async_trait]
impl IqHandler for Register {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let query = RegisterQuery::try_from(request.payload)?;
        let account = own_account(&request)?;
        let username = account.node().map(|n| n.as_str().to_owned());
        if request.stanza.type_attr() == Some("get") {
            // §3.1: a registered entity learns that it is, and what is on file.
            let on_file = RegisterQuery {
                registered: true,
                instructions: Some(
                    "You are registered. Send your username and a new password to change it, \
                     or <remove/> to delete the account."
                        .into(),
                ),
                username,
                ..RegisterQuery::default()
            };
            return Ok(Some(on_file.to_element()));
        }
        if query.remove {
            if !query.is_lone_remove() {
                return Err(StanzaError::bad_request(
                    "<remove/> must be the only child of the query",
                ));
            }
            self.remove(request.router, &account).await?;
            return Ok(None);
        }
        self.change_password(request.router, &account, &query)
            .await?;
        Ok(None)
    }
}

impl Register {
    /// §3.3: the account's own username and a new password.
    async fn change_password(
        &self,
        router: &Router,
        account: &BareJid,
        query: &RegisterQuery,
    ) -> Result<(), StanzaError> {
        let Some(username) = query.username.as_deref().filter(|u| !u.is_empty()) else {
            return Err(StanzaError::bad_request("the <username/> is required"));
        };
        let named = self.rules.account(username, account.domain().as_str()).ok();
        if named.as_ref() != Some(account) {
            return Err(StanzaError::new(DefinedCondition::NotAuthorized)
                .with_text("you can only change your own password"));
        }
        let Some(password) = query.password.as_deref().filter(|p| !p.is_empty()) else {
            return Err(StanzaError::bad_request(
                "a new password is required; the old one is kept",
            ));
        };
        self.rules.check_password(password)?;
        match router.accounts().set_password(account, password).await {
            Ok(()) => {
                info!(jid = %account, "password changed in band");
                Ok(())
            }
            Err(AccountError::BadPassword(text)) => Err(not_acceptable(text)),
            Err(AccountError::NotFound(_)) => {
                Err(StanzaError::new(DefinedCondition::RegistrationRequired))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// §3.2: ends the account's subscriptions, deletes everything stored for it and ends its
    /// sessions once the result is on its way.
    async fn remove(&self, router: &Router, account: &BareJid) -> Result<(), StanzaError> {
        let (host, user) = (
            account.domain().as_str(),
            account.node().map_or("", |n| n.as_str()),
        );
        match router.accounts().exists(host, user).await {
            Ok(true) => {}
            Ok(false) => return Err(StanzaError::new(DefinedCondition::RegistrationRequired)),
            Err(e) => return Err(internal(e)),
        }
        let sessions = match xmppd_im::remove_account(router, &self.roster, account).await {
            Ok(sessions) => sessions,
            Err(AccountError::NotFound(_)) => {
                return Err(StanzaError::new(DefinedCondition::RegistrationRequired));
            }
            Err(e) => return Err(internal(e)),
        };
        info!(jid = %account, sessions, "account removed in band");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
