//! XEP-0133: Service Administration — the commands this server offers, their forms (with
//! the field names of §4) and what each does through the verbs.
//!
//! Every account named must be on the host the command was sent to (a host's
//! administration is its own); one elsewhere is `not-allowed`.

use jid::{BareJid, Jid};
use xmppd_core::Router;
use xmppd_proto::adhoc::NoteType;
use xmppd_proto::data_form::{DataForm, Field, FieldOption, FieldType, FormType};
use xmppd_proto::{DefinedCondition, StanzaError};

use super::bad_request;
use crate::{Admin, AdminError};

/// The FORM_TYPE of XEP-0133's forms (§5).
pub const NS_ADMIN: &str = "http://jabber.org/protocol/admin";

/// A XEP-0133 command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// §4.1 Add User.
    AddUser,
    /// §4.2 Delete User.
    DeleteUser,
    /// §4.5 End User Session.
    EndUserSession,
    /// §4.7 Change User Password.
    ChangeUserPassword,
    /// §4.10 Get User Statistics.
    GetUserStats,
    /// §4.18 Get List of Online Users.
    GetOnlineUsersList,
    /// §4.23 Send Announcement to Online Users.
    Announce,
}

/// What a completed command hands back.
#[derive(Debug, Default)]
pub(super) struct Done {
    pub(super) notes: Vec<(NoteType, String)>,
    pub(super) result: Option<DataForm>,
}

fn info(text: impl Into<String>) -> Done {
    Done {
        notes: vec![(NoteType::Info, text.into())],
        result: None,
    }
}

/// A verb's failure as the stanza error §4.6 and RFC 6120 §8.3.3 name for it.
fn stanza_error(e: AdminError) -> StanzaError {
    let condition = match &e {
        AdminError::InvalidJid(_) => DefinedCondition::JidMalformed,
        AdminError::NotAnAccount(_) | AdminError::Invalid(_) => {
            return bad_request("bad-payload", &e.to_string());
        }
        AdminError::UnknownHost(_) => DefinedCondition::NotAllowed,
        AdminError::Exists(_) => DefinedCondition::Conflict,
        AdminError::NotFound(_) | AdminError::NotOnline(_) => DefinedCondition::ItemNotFound,
        AdminError::BadPassword(_) => DefinedCondition::NotAcceptable,
        AdminError::Storage(_) => {
            return StanzaError::new(DefinedCondition::InternalServerError)
                .with_text("the storage failed");
        }
    };
    StanzaError::new(condition).with_text(e.to_string())
}

fn field(var: &str, kind: FieldType, label: &str) -> Field {
    Field::new(var, kind).with_label(label)
}

fn required(mut f: Field) -> Field {
    f.required = true;
    f
}

/// A required single value of the submission.
fn value<'a>(form: &'a DataForm, var: &str) -> Result<&'a str, StanzaError> {
    form.value(var)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| bad_request("bad-payload", &format!("the field '{var}' is required")))
}

/// Parses `text` as a JID of `host`; an account of another host is `not-allowed`.
fn on_host(host: &BareJid, text: &str) -> Result<Jid, StanzaError> {
    let jid =
        Jid::new(text.trim()).map_err(|_| stanza_error(AdminError::InvalidJid(text.to_owned())))?;
    if jid.domain() != host.domain() || jid.node().is_none() {
        return Err(StanzaError::new(DefinedCondition::NotAllowed)
            .with_text(format!("{jid} is not an account of {host}")));
    }
    Ok(jid)
}

fn account_on_host(host: &BareJid, text: &str) -> Result<BareJid, StanzaError> {
    let jid = on_host(host, text)?;
    if jid.is_full() {
        return Err(stanza_error(AdminError::NotAnAccount(text.to_owned())));
    }
    Ok(jid.into_bare())
}

/// The `accountjids` of a submission, at least one.
fn jids(form: &DataForm) -> Result<Vec<&str>, StanzaError> {
    let jids: Vec<&str> = form
        .values("accountjids")
        .iter()
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
        .collect();
    if jids.is_empty() {
        return Err(bad_request(
            "bad-payload",
            "the field 'accountjids' needs at least one JID",
        ));
    }
    Ok(jids)
}

/// Online users listed at most (§4.18: `max_items`, "all" bounded here).
const MAX_LISTED: usize = 10_000;

impl Command {
    /// Every command, in the order they are listed.
    pub const ALL: [Command; 7] = [
        Command::AddUser,
        Command::DeleteUser,
        Command::EndUserSession,
        Command::ChangeUserPassword,
        Command::GetUserStats,
        Command::GetOnlineUsersList,
        Command::Announce,
    ];

    /// The command node (§4: `http://jabber.org/protocol/admin#…`).
    pub fn node(self) -> &'static str {
        match self {
            Command::AddUser => "http://jabber.org/protocol/admin#add-user",
            Command::DeleteUser => "http://jabber.org/protocol/admin#delete-user",
            Command::EndUserSession => "http://jabber.org/protocol/admin#end-user-session",
            Command::ChangeUserPassword => "http://jabber.org/protocol/admin#change-user-password",
            Command::GetUserStats => "http://jabber.org/protocol/admin#user-stats",
            Command::GetOnlineUsersList => "http://jabber.org/protocol/admin#get-online-users-list",
            Command::Announce => "http://jabber.org/protocol/admin#announce",
        }
    }

    /// The name in the command list.
    pub fn name(self) -> &'static str {
        match self {
            Command::AddUser => "Add User",
            Command::DeleteUser => "Delete User",
            Command::EndUserSession => "End User Session",
            Command::ChangeUserPassword => "Change User Password",
            Command::GetUserStats => "Get User Statistics",
            Command::GetOnlineUsersList => "Get List of Online Users",
            Command::Announce => "Send Announcement to Online Users",
        }
    }

    /// The command of a node.
    pub fn from_node(node: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.node() == node)
    }

    /// The form the requester fills in.
    pub(super) fn form(self) -> DataForm {
        let mut form = DataForm::new(FormType::Form).with_field(Field::form_type(NS_ADMIN));
        form.title = Some(self.name().to_owned());
        let fields: Vec<Field> = match self {
            Command::AddUser => vec![
                required(field(
                    "accountjid",
                    FieldType::JidSingle,
                    "The Jabber ID for the account to be added",
                )),
                required(field(
                    "password",
                    FieldType::TextPrivate,
                    "The password for this account",
                )),
                field("password-verify", FieldType::TextPrivate, "Retype password"),
            ],
            Command::DeleteUser => vec![required(field(
                "accountjids",
                FieldType::JidMulti,
                "The Jabber ID(s) to delete",
            ))],
            Command::EndUserSession => vec![required(field(
                "accountjids",
                FieldType::JidMulti,
                "The Jabber ID(s) for which to end sessions",
            ))],
            Command::ChangeUserPassword => vec![
                required(field(
                    "accountjid",
                    FieldType::JidSingle,
                    "The Jabber ID for this account",
                )),
                required(field(
                    "password",
                    FieldType::TextPrivate,
                    "The password for this account",
                )),
            ],
            Command::GetUserStats => vec![required(field(
                "accountjid",
                FieldType::JidSingle,
                "The Jabber ID for which to retrieve statistics",
            ))],
            Command::GetOnlineUsersList => {
                let mut max = field(
                    "max_items",
                    FieldType::ListSingle,
                    "Maximum number of items to show",
                )
                .with_value("100");
                max.options = ["25", "50", "75", "100", "150", "200", "none"]
                    .into_iter()
                    .map(|v| FieldOption {
                        label: None,
                        value: v.to_owned(),
                    })
                    .collect();
                vec![max]
            }
            Command::Announce => vec![
                field("subject", FieldType::TextSingle, "Subject"),
                required(field("announcement", FieldType::TextMulti, "Announcement")),
            ],
        };
        form.fields.extend(fields);
        form
    }

    /// Runs the command with the submitted `form` on `host`.
    pub(super) async fn run(
        self,
        admin: &Admin,
        router: &Router,
        host: &BareJid,
        form: &DataForm,
    ) -> Result<Done, StanzaError> {
        match self {
            Command::AddUser => {
                let jid = account_on_host(host, value(form, "accountjid")?)?;
                let password = value(form, "password")?;
                if let Some(again) = form.value("password-verify")
                    && again != password
                {
                    return Err(bad_request("bad-payload", "the passwords differ"));
                }
                admin
                    .add_user(router, &jid, password)
                    .await
                    .map_err(stanza_error)?;
                Ok(info(format!("created {jid}")))
            }
            Command::DeleteUser => {
                let accounts = jids(form)?
                    .into_iter()
                    .map(|j| account_on_host(host, j))
                    .collect::<Result<Vec<_>, _>>()?;
                for jid in &accounts {
                    admin.delete_user(router, jid).await.map_err(stanza_error)?;
                }
                Ok(info(format!("deleted {} account(s)", accounts.len())))
            }
            Command::EndUserSession => {
                let targets = jids(form)?
                    .into_iter()
                    .map(|j| on_host(host, j))
                    .collect::<Result<Vec<_>, _>>()?;
                let mut ended = 0;
                let mut done = Done::default();
                for jid in &targets {
                    match admin.kick(router, jid, None) {
                        Ok(n) => ended += n,
                        Err(AdminError::NotOnline(j)) => {
                            done.notes
                                .push((NoteType::Warn, format!("{j} has no session")));
                        }
                        Err(e) => return Err(stanza_error(e)),
                    }
                }
                done.notes
                    .insert(0, (NoteType::Info, format!("ended {ended} session(s)")));
                Ok(done)
            }
            Command::ChangeUserPassword => {
                let jid = account_on_host(host, value(form, "accountjid")?)?;
                let password = value(form, "password")?;
                admin
                    .change_password(router, &jid, password)
                    .await
                    .map_err(stanza_error)?;
                Ok(info(format!("changed the password of {jid}")))
            }
            Command::GetUserStats => {
                let jid = account_on_host(host, value(form, "accountjid")?)?;
                let stats = admin.user_stats(router, &jid).await.map_err(stanza_error)?;
                let mut result =
                    DataForm::new(FormType::Result).with_field(Field::form_type(NS_ADMIN));
                result.fields.push(
                    field(
                        "rostersize",
                        FieldType::TextSingle,
                        "Number of roster items",
                    )
                    .with_value(stats.roster_size.to_string()),
                );
                let mut online = field("onlineresources", FieldType::TextMulti, "Online resources");
                online.values = stats.online_resources;
                result.fields.push(online);
                Ok(Done {
                    notes: Vec::new(),
                    result: Some(result),
                })
            }
            Command::GetOnlineUsersList => {
                let max = match form.value("max_items").map(str::trim) {
                    None | Some("" | "none" | "all") => MAX_LISTED,
                    Some(n) => n
                        .parse::<usize>()
                        .map_err(|_| bad_request("bad-payload", "max_items is a number or none"))?
                        .min(MAX_LISTED),
                };
                let sessions = admin
                    .list_sessions(router, Some(host.domain().as_str()))
                    .map_err(stanza_error)?;
                let mut users: Vec<String> = sessions.into_iter().map(|s| s.account).collect();
                users.sort();
                users.dedup();
                users.truncate(max);
                let mut result =
                    DataForm::new(FormType::Result).with_field(Field::form_type(NS_ADMIN));
                let mut list = field(
                    "onlineuserjids",
                    FieldType::JidMulti,
                    "The list of all online users",
                );
                list.values = users;
                result.fields.push(list);
                Ok(Done {
                    notes: Vec::new(),
                    result: Some(result),
                })
            }
            Command::Announce => {
                // text-multi: one value per line (XEP-0004 §3.3).
                let body = form.values("announcement").join("\n");
                let subject = form.value("subject");
                let sent = admin
                    .announce(router, host.domain().as_str(), subject, &body)
                    .await
                    .map_err(stanza_error)?;
                Ok(info(format!("sent to {sent} session(s)")))
            }
        }
    }
}
