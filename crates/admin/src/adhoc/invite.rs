//! XEP-0401 Easy User Onboarding: the ad-hoc commands with which users create invitations
//! from their clients (§3.1 `urn:xmpp:invite#invite`, §3.4 `urn:xmpp:invite#create-account`).
//!
//! A user invitation completes at once (§3.1: "The server SHOULD immediately provide a
//! command result, with no further interaction"); an account invitation first answers its
//! form (§3.4): `username` (optional here: without it the invitee chooses,
//! `xmpp:HOST?register;preauth=TOKEN`; with it §4.2's `xmpp:USERNAME@HOST?register;…`, the
//! name reserved for the invitee while the invitation lasts) and `roster-subscription` (the
//! new account and the administrator who invited it subscribed to each other). Both end
//! with a `urn:xmpp:invite#invitation` result form: `uri`, the `landing-url` when the server
//! has a landing page, and `expire` (XEP-0082). A user invitation may be created by any
//! account of the host, for itself; an account invitation only by the host's administrators
//! (§3.4: "the server administrator (or a user authorized to create accounts)").

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use jid::{BareJid, Jid};
use xmppd_core::invites::{InviteKind, NameUnavailable};
use xmppd_core::{Invites, Router};
use xmppd_proto::data_form::{DataForm, Field, FieldType, FormType};
use xmppd_proto::pars::InviteAction;
use xmppd_proto::{DefinedCondition, StanzaError};

/// The FORM_TYPE of the result (§6).
pub const NS_INVITATION: &str = "urn:xmpp:invite#invitation";

/// Where the landing page of an invitation (host, token) is, if the server has one.
pub type LandingPages = Arc<dyn Fn(&str, &str) -> Option<String> + Send + Sync>;

/// What the commands issue invitations with.
#[derive(Clone)]
pub struct Invitations {
    invites: Invites,
    expiry_secs: u64,
    landing_pages: LandingPages,
}

impl std::fmt::Debug for Invitations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invitations")
            .field("expiry_secs", &self.expiry_secs)
            .finish_non_exhaustive()
    }
}

impl Invitations {
    /// Invitations stored in `invites`, lasting `expiry_secs`, with `landing_pages`.
    pub fn new(invites: Invites, expiry_secs: u64, landing_pages: LandingPages) -> Self {
        Invitations {
            invites,
            expiry_secs,
            landing_pages,
        }
    }
}

/// A XEP-0401 command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InviteCommand {
    /// §3.1: a contact invitation from the requester.
    Invite,
    /// §3.4: an invitation to create an account.
    CreateAccount,
}

impl InviteCommand {
    /// Both, in the order of discovery.
    pub const ALL: [InviteCommand; 2] = [InviteCommand::Invite, InviteCommand::CreateAccount];

    /// The command's node.
    pub fn node(self) -> &'static str {
        match self {
            InviteCommand::Invite => "urn:xmpp:invite#invite",
            InviteCommand::CreateAccount => "urn:xmpp:invite#create-account",
        }
    }

    /// Its name in command lists (§2's example).
    pub fn name(self) -> &'static str {
        match self {
            InviteCommand::Invite => "Invite user",
            InviteCommand::CreateAccount => "Create account",
        }
    }

    /// The command of `node`.
    pub fn from_node(node: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.node() == node)
    }

    /// Whether `requester` may run it on `host`: an invitation from oneself needs an account
    /// of the host, one for a new account an administrator.
    pub fn allowed(self, requester: &Jid, host: &BareJid, is_admin: bool) -> bool {
        match self {
            InviteCommand::Invite => {
                requester.node().is_some() && requester.domain() == host.domain()
            }
            InviteCommand::CreateAccount => is_admin,
        }
    }

    /// The form the command answers first (§3.4), if it has one.
    pub(super) fn form(self) -> Option<DataForm> {
        match self {
            InviteCommand::Invite => None,
            InviteCommand::CreateAccount => {
                let mut form = DataForm::new(FormType::Form);
                form.title = Some(self.name().to_owned());
                form.instructions =
                    vec!["Leave the username empty to let the invitee choose it.".to_owned()];
                Some(
                    form.with_field(
                        Field::new("username", FieldType::TextSingle)
                            .with_label("The new account's username"),
                    )
                    .with_field(
                        Field::new("roster-subscription", FieldType::Boolean)
                            .with_label("Add the new account to my contacts")
                            .with_value("0"),
                    ),
                )
            }
        }
    }

    /// Issues the invitation (for the account invitation, as `submitted` asks) and returns
    /// the result form.
    pub(super) async fn run(
        self,
        invitations: &Invitations,
        router: &Router,
        host: &BareJid,
        requester: &Jid,
        submitted: Option<&DataForm>,
    ) -> Result<DataForm, StanzaError> {
        let host = host.domain().as_str();
        let kind = match self {
            InviteCommand::Invite => InviteKind::Contact {
                inviter: requester.node().map_or("", |n| n.as_str()).to_owned(),
            },
            InviteCommand::CreateAccount => {
                account_kind(invitations, router, host, requester, submitted).await?
            }
        };
        let new = invitations
            .invites
            .create(host, kind, invitations.expiry_secs)
            .await
            .map_err(|_| {
                StanzaError::new(DefinedCondition::InternalServerError)
                    .with_text("the invitation could not be stored")
            })?;
        let mut uri = new.invite.uri(host, &new.token);
        // §3.1: without registration by invitation here, the URI must not offer it.
        if let InviteAction::Roster { ibr } = &mut uri.action {
            *ibr = router
                .registry()
                .registration_on(host)
                .is_some_and(|r| r.accepts_invites());
        }
        let expire = xmppd_proto::datetime::format_datetime(
            UNIX_EPOCH + Duration::from_secs(new.invite.expires),
        );
        let mut form = DataForm::new(FormType::Result)
            .with_field(Field::form_type(NS_INVITATION))
            .with_field(Field::new("uri", FieldType::TextSingle).with_value(uri.to_uri()));
        if let Some(url) = (invitations.landing_pages)(host, &new.token) {
            form =
                form.with_field(Field::new("landing-url", FieldType::TextSingle).with_value(url));
        }
        Ok(form.with_field(Field::new("expire", FieldType::TextSingle).with_value(expire)))
    }
}

fn bad_request(text: impl Into<String>) -> StanzaError {
    StanzaError::new(DefinedCondition::BadRequest).with_text(text)
}

/// What an account invitation's submitted form asks for (§3.4, §4.2): a name of the
/// invitee's choosing, or one that is free now (neither an account nor reserved by another
/// invitation), and perhaps the subscription with the requester.
async fn account_kind(
    invitations: &Invitations,
    router: &Router,
    host: &str,
    requester: &Jid,
    submitted: Option<&DataForm>,
) -> Result<InviteKind, StanzaError> {
    let form = submitted.ok_or_else(|| bad_request("the command's form was not submitted"))?;
    let subscribe = form
        .bool("roster-subscription")
        .map_err(|_| bad_request("roster-subscription must be a boolean"))?
        .unwrap_or(false);
    let inviter = subscribe
        .then(|| requester.node().map(|n| n.as_str().to_owned()))
        .flatten();
    if subscribe && (inviter.is_none() || requester.domain().as_str() != host) {
        return Err(StanzaError::new(DefinedCondition::NotAcceptable)
            .with_text("only an account of this host can be subscribed to the new account"));
    }
    let Some(given) = form
        .value("username")
        .map(str::trim)
        .filter(|u| !u.is_empty())
    else {
        return Ok(InviteKind::Account);
    };
    let username = invitations
        .invites
        .free_username(router.accounts(), host, given)
        .await
        .map_err(|e| match e {
            NameUnavailable::Malformed => StanzaError::new(DefinedCondition::JidMalformed)
                .with_text("the username is not a valid localpart"),
            NameUnavailable::Taken | NameUnavailable::Reserved => {
                StanzaError::new(DefinedCondition::Conflict).with_text(e.to_string())
            }
            NameUnavailable::Storage(e) => {
                tracing::warn!(error = %e, "could not check a username for an invitation");
                StanzaError::new(DefinedCondition::InternalServerError)
            }
        })?;
    Ok(InviteKind::NamedAccount { username, inviter })
}
