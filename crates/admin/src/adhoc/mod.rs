//! XEP-0050: Ad-Hoc Commands, carrying XEP-0133's service administration commands.
//!
//! **Discovery** (§2): the server advertises `http://jabber.org/protocol/commands`; the items
//! of that node on a host are the commands the requester may run there (§2.2 lets the list
//! depend on the requester): an account of the host sees XEP-0401's invitation command, an
//! administrator also XEP-0401's account invitation and the XEP-0133 commands, anybody else
//! nothing; a command node's disco#info (§2.3) gives the `automation/command-node` identity
//! to those who may run it (others get `item-not-found`, as for a node that does not
//! exist). XEP-0401's user invitation completes at once without a session; its account
//! invitation runs as below (see [`invite`]).
//!
//! **Execution** (§3, §4.6): every command here has one stage: `execute` without a
//! `sessionid` starts a session and answers the command's form (status `executing`, the one
//! action `complete`); the submission (`complete`, `execute` or `next` with the session's id
//! and a form) runs it and ends the session (`completed`, with notes or a result form);
//! `cancel` ends it (`canceled`). Errors as §4.6 names them: an `action` outside its list is
//! `bad-request` + `<malformed-action/>`; `prev` (there is no earlier stage) `bad-request` +
//! `<bad-action/>`; an unknown, ended or foreign `sessionid` `bad-request` + `<bad-sessionid/>`;
//! a submission without a form `bad-request` + `<bad-payload/>`; an unknown node
//! `item-not-found`; a requester who is not an administrator `forbidden`.
//!
//! **Sessions** are bounded: at most [`MAX_SESSIONS_PER_REQUESTER`] open per full JID (one
//! more is `resource-constraint`) and each expires after [`SESSION_LIFETIME`]; both are
//! checked at every request, so nothing waits on a timer.

mod commands;
mod invite;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jid::{BareJid, Jid};
use xmppd_core::{IqHandler, IqRequest, IqTarget, IqType, Module, Registry, Router, ServerNodes};
use xmppd_proto::adhoc::{
    Action, CommandRequest, CommandResponse, NS_COMMANDS, Status, specific_condition,
};
use xmppd_proto::data_form::FormType;
use xmppd_proto::disco::{DiscoInfoResult, DiscoItem, Identity};
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

pub use commands::Command;
pub use invite::{Invitations, InviteCommand, LandingPages, NS_INVITATION};

use crate::Admin;

/// Open command sessions one requester (full JID) may hold.
pub const MAX_SESSIONS_PER_REQUESTER: usize = 8;
/// How long a command session waits for its submission.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(600);

/// The administrators: bare JIDs from the configuration (`[general] admins`).
#[derive(Clone, Debug, Default)]
pub struct Admins(Arc<Vec<BareJid>>);

impl Admins {
    /// These JIDs.
    pub fn new(jids: Vec<BareJid>) -> Self {
        Admins(Arc::new(jids))
    }

    /// Whether `jid`'s account is an administrator.
    pub fn contains(&self, jid: &Jid) -> bool {
        let bare = jid.to_bare();
        self.0.contains(&bare)
    }
}

/// An open session: its command, requester and start.
#[derive(Debug)]
struct Session {
    /// The command's node.
    command: &'static str,
    requester: Jid,
    started: Instant,
}

/// The ad-hoc commands module.
pub struct AdHoc {
    admin: Admin,
    admins: Admins,
    /// XEP-0401's commands, when invitations are issued here.
    invitations: Option<Invitations>,
    sessions: Mutex<HashMap<String, Session>>,
}

impl std::fmt::Debug for AdHoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdHoc").finish_non_exhaustive()
    }
}

/// A new session id: 128 random bits.
fn session_id() -> Result<String, StanzaError> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).map_err(|_| {
        StanzaError::new(DefinedCondition::InternalServerError).with_text("no randomness")
    })?;
    Ok(hex::encode(id))
}

/// `bad-request` with a specific condition of §4.6.
fn bad_request(specific: &'static str, text: &str) -> StanzaError {
    StanzaError::new(DefinedCondition::BadRequest)
        .with_app(specific_condition(specific))
        .with_text(text)
}

impl AdHoc {
    /// The module, running the verbs of `admin` for `admins`.
    pub fn new(admin: Admin, admins: Admins) -> Self {
        AdHoc {
            admin,
            admins,
            invitations: None,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Offers XEP-0401's commands too, issuing invitations with `invitations`.
    pub fn with_invitations(mut self, invitations: Invitations) -> Self {
        self.invitations = Some(invitations);
        self
    }

    /// The XEP-0401 commands `requester` may run on `host`.
    fn invite_commands(&self, requester: &Jid, host: &BareJid) -> Vec<InviteCommand> {
        if self.invitations.is_none() {
            return Vec::new();
        }
        let is_admin = self.admins.contains(requester);
        InviteCommand::ALL
            .into_iter()
            .filter(|c| c.allowed(requester, host, is_admin))
            .collect()
    }

    /// Runs a XEP-0401 command (see [`invite`]): the user invitation completes at once (only
    /// `execute`, without a session, is meaningful); the account invitation answers its form
    /// first and runs on its submission, as the XEP-0133 commands do.
    async fn execute_invite(
        &self,
        command: InviteCommand,
        router: &Router,
        host: &BareJid,
        requester: &Jid,
        request: CommandRequest,
    ) -> Result<CommandResponse, StanzaError> {
        let Some(invitations) = &self.invitations else {
            return Err(
                StanzaError::new(DefinedCondition::ItemNotFound).with_text("no such command")
            );
        };
        if !self.invite_commands(requester, host).contains(&command) {
            return Err(
                StanzaError::new(DefinedCondition::Forbidden).with_text(match command {
                    InviteCommand::Invite => "only accounts of this host may invite their contacts",
                    InviteCommand::CreateAccount => {
                        "only the server's administrators may invite new accounts"
                    }
                }),
            );
        }
        if let Action::Unknown(_) = request.action {
            return Err(bad_request("malformed-action", "unknown action"));
        }
        let node = command.node();
        let submitted = match (command.form(), &request.sessionid) {
            (_, None) if request.action != Action::Execute => {
                return Err(bad_request(
                    "bad-sessionid",
                    "only execute starts a command; other actions need its sessionid",
                ));
            }
            (None, None) => None,
            (None, Some(_)) => {
                return Err(bad_request(
                    "bad-sessionid",
                    "this command completes at once: execute it without a sessionid",
                ));
            }
            (Some(form), None) => {
                let id = self.open(node, requester)?;
                let mut response = CommandResponse::new(node, id, Status::Executing);
                response.actions = vec![Action::Complete];
                response.form = Some(form);
                return Ok(response);
            }
            (Some(_), Some(id)) => {
                if request.action == Action::Prev {
                    return Err(bad_request(
                        "bad-action",
                        "this command has one stage: there is no previous one",
                    ));
                }
                self.close(id, node, requester)?;
                if request.action == Action::Cancel {
                    return Ok(CommandResponse::new(node, id.clone(), Status::Canceled));
                }
                let form = request
                    .form
                    .filter(|f| f.kind == FormType::Submit)
                    .ok_or_else(|| {
                        bad_request("bad-payload", "the command's form was not submitted")
                    })?;
                Some(form)
            }
        };
        let result = command
            .run(invitations, router, host, requester, submitted.as_ref())
            .await?;
        let id = request.sessionid.map_or_else(session_id, Ok)?;
        let mut response = CommandResponse::new(node, id, Status::Completed);
        response.form = Some(result);
        Ok(response)
    }

    /// Opens a session for `requester`, dropping expired ones first.
    fn open(&self, command: &'static str, requester: &Jid) -> Result<String, StanzaError> {
        let id = session_id()?;
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| StanzaError::new(DefinedCondition::InternalServerError))?;
        sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFETIME);
        let open = sessions
            .values()
            .filter(|s| s.requester == *requester)
            .count();
        if open >= MAX_SESSIONS_PER_REQUESTER {
            return Err(StanzaError::new(DefinedCondition::ResourceConstraint)
                .with_text("too many command sessions open; complete or cancel one"));
        }
        sessions.insert(
            id.clone(),
            Session {
                command,
                requester: requester.clone(),
                started: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Ends the session `id` of `requester` running `command`; `bad-sessionid` if there is
    /// none (never opened, ended, expired, or someone else's).
    fn close(&self, id: &str, command: &'static str, requester: &Jid) -> Result<(), StanzaError> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| StanzaError::new(DefinedCondition::InternalServerError))?;
        let valid = sessions.get(id).is_some_and(|s| {
            s.command == command
                && s.requester == *requester
                && s.started.elapsed() < SESSION_LIFETIME
        });
        if !valid {
            return Err(bad_request(
                "bad-sessionid",
                "no such command session (ended, expired or never opened)",
            ));
        }
        sessions.remove(id);
        Ok(())
    }

    async fn execute(
        &self,
        router: &Router,
        host: &BareJid,
        requester: &Jid,
        request: CommandRequest,
    ) -> Result<CommandResponse, StanzaError> {
        if let Some(command) = InviteCommand::from_node(&request.node) {
            return self
                .execute_invite(command, router, host, requester, request)
                .await;
        }
        let command = Command::from_node(&request.node).ok_or_else(|| {
            StanzaError::new(DefinedCondition::ItemNotFound).with_text("no such command")
        })?;
        if !self.admins.contains(requester) {
            return Err(StanzaError::new(DefinedCondition::Forbidden)
                .with_text("only the server's administrators may run this command"));
        }
        if let Action::Unknown(_) = request.action {
            return Err(bad_request("malformed-action", "unknown action"));
        }
        let Some(id) = request.sessionid else {
            if request.action != Action::Execute {
                return Err(bad_request(
                    "bad-sessionid",
                    "only execute starts a command; other actions need its sessionid",
                ));
            }
            let id = self.open(command.node(), requester)?;
            let mut response = CommandResponse::new(command.node(), id, Status::Executing);
            response.actions = vec![Action::Complete];
            response.form = Some(command.form());
            return Ok(response);
        };
        if request.action == Action::Prev {
            // The session stays: prev is refused, not fatal to it.
            return Err(bad_request(
                "bad-action",
                "this command has one stage: there is no previous one",
            ));
        }
        self.close(&id, command.node(), requester)?;
        if request.action == Action::Cancel {
            return Ok(CommandResponse::new(command.node(), id, Status::Canceled));
        }
        let form = request
            .form
            .filter(|f| f.kind == FormType::Submit)
            .ok_or_else(|| bad_request("bad-payload", "the command's form was not submitted"))?;
        let done = command.run(&self.admin, router, host, &form).await?;
        let mut response = CommandResponse::new(command.node(), id, Status::Completed);
        response.notes = done.notes;
        response.form = done.result;
        Ok(response)
    }
}

/// The handler of `<command/>` sets to a host.
struct Execute(Arc<AdHoc>);

#[async_trait]
impl IqHandler for Execute {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let command = CommandRequest::try_from(request.payload)?;
        let response = self
            .0
            .execute(request.router, request.to, request.from, command)
            .await?;
        Ok(Some(response.to_element()))
    }
}

/// The command list and the commands' disco#info.
struct Nodes(Arc<AdHoc>);

#[async_trait]
impl ServerNodes for Nodes {
    async fn info(
        &self,
        _router: &Router,
        host: &BareJid,
        node: &str,
        requester: &Jid,
    ) -> Option<DiscoInfoResult> {
        let name = match (InviteCommand::from_node(node), Command::from_node(node)) {
            (Some(c), _) if self.0.invite_commands(requester, host).contains(&c) => c.name(),
            (None, Some(c)) if self.0.admins.contains(requester) => c.name(),
            _ => return None,
        };
        Some(DiscoInfoResult {
            identities: vec![Identity::new("automation", "command-node").with_name(name)],
            features: vec![NS_COMMANDS.to_owned(), ns::DATA_FORMS.to_owned()],
            ..DiscoInfoResult::default()
        })
    }

    async fn items(
        &self,
        _router: &Router,
        host: &BareJid,
        node: &str,
        requester: &Jid,
    ) -> Option<Vec<DiscoItem>> {
        if node != NS_COMMANDS {
            return None;
        }
        let mut commands: Vec<(&str, &str)> = self
            .0
            .invite_commands(requester, host)
            .into_iter()
            .map(|c| (c.node(), c.name()))
            .collect();
        if self.0.admins.contains(requester) {
            commands.extend(Command::ALL.iter().map(|c| (c.node(), c.name())));
        }
        let jid = Jid::from(host.clone());
        Some(
            commands
                .into_iter()
                .map(|(node, name)| {
                    let mut item = DiscoItem::new(jid.clone());
                    item.node = Some(node.to_owned());
                    item.name = Some(name.to_owned());
                    item
                })
                .collect(),
        )
    }
}

impl Module for AdHoc {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.iq(
            IqTarget::Server,
            IqType::Set,
            NS_COMMANDS,
            "command",
            Arc::new(Execute(self.clone())),
        );
        registry.server_feature(NS_COMMANDS);
        registry.server_nodes(Arc::new(Nodes(self)));
    }
}

#[cfg(test)]
mod tests;
