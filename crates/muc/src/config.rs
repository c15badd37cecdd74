//! A room's configuration and its `muc#roomconfig` form (XEP-0045 §10.2, §15.5.3).
//!
//! A submitted form changes only the fields it carries; a field this service does not know is
//! ignored (clients copy forms between servers), but a known field with a value of the wrong
//! kind — a boolean that is not one, a number that is not one, a list value that is not an
//! option — refuses the whole form with `not-acceptable` (§10.2: "options cannot be processed
//! or violate service policies"), and nothing changes. `roomadmins` and `roomowners` are
//! affiliation changes and are returned to the caller to apply with the usual checks.

use jid::{BareJid, Jid};
use serde::{Deserialize, Serialize};
use xmppd_proto::data_form::{DataForm, Field, FieldOption, FieldType, FormType};
use xmppd_proto::muc::FORM_ROOMCONFIG;
use xmppd_proto::payload::parse_bool;
use xmppd_proto::{DefinedCondition, StanzaError};

/// Who may see occupants' real JIDs (`muc#roomconfig_whois`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Whois {
    /// Moderators only: a semi-anonymous room.
    Moderators,
    /// Every occupant: a non-anonymous room.
    Anyone,
}

/// Who may send private messages (`muc#roomconfig_allowpm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowPm {
    /// Every occupant.
    Anyone,
    /// Participants and moderators.
    Participants,
    /// Moderators only.
    Moderators,
    /// Nobody.
    None,
}

impl AllowPm {
    fn as_str(self) -> &'static str {
        match self {
            AllowPm::Anyone => "anyone",
            AllowPm::Participants => "participants",
            AllowPm::Moderators => "moderators",
            AllowPm::None => "none",
        }
    }
}

/// What the owner decides about a room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoomConfig {
    /// Natural-language name.
    pub name: String,
    /// Short description.
    pub description: String,
    /// Language of the discussion.
    pub language: String,
    /// Survives being empty and restarts.
    pub persistent: bool,
    /// Listed in the service's disco#items.
    pub public: bool,
    /// Only members may enter.
    pub members_only: bool,
    /// Only participants with voice may speak.
    pub moderated: bool,
    /// The password, if the room has one.
    pub password: Option<String>,
    /// Most occupants (capped by the service's limit).
    pub max_users: usize,
    /// Who sees real JIDs.
    pub whois: Whois,
    /// Participants may change the subject (moderators always may).
    pub change_subject: bool,
    /// Who may send private messages.
    pub allow_pm: AllowPm,
    /// Participants may invite others (moderators always may).
    pub allow_invites: bool,
    /// Messages kept for discussion history on join.
    pub history_length: usize,
    /// Messages are archived (XEP-0313) and the room advertises it.
    pub archiving: bool,
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            name: String::new(),
            description: String::new(),
            language: String::new(),
            persistent: false,
            public: true,
            members_only: false,
            moderated: false,
            password: None,
            max_users: 200,
            whois: Whois::Moderators,
            change_subject: false,
            allow_pm: AllowPm::Anyone,
            allow_invites: false,
            history_length: 20,
            archiving: true,
        }
    }
}

/// The affiliation lists a form asks for (`roomowners`, `roomadmins`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FormLists {
    /// The complete owner list, if the form had the field.
    pub owners: Option<Vec<BareJid>>,
    /// The complete admin list, if the form had the field.
    pub admins: Option<Vec<BareJid>>,
}

const NAME: &str = "muc#roomconfig_roomname";
const DESC: &str = "muc#roomconfig_roomdesc";
const LANG: &str = "muc#roomconfig_lang";
const PERSISTENT: &str = "muc#roomconfig_persistentroom";
const PUBLIC: &str = "muc#roomconfig_publicroom";
const MEMBERS_ONLY: &str = "muc#roomconfig_membersonly";
const MODERATED: &str = "muc#roomconfig_moderatedroom";
const PASSWORD_PROTECTED: &str = "muc#roomconfig_passwordprotectedroom";
const SECRET: &str = "muc#roomconfig_roomsecret";
const MAX_USERS: &str = "muc#roomconfig_maxusers";
const WHOIS: &str = "muc#roomconfig_whois";
const CHANGE_SUBJECT: &str = "muc#roomconfig_changesubject";
const ALLOW_PM: &str = "muc#roomconfig_allowpm";
const ALLOW_INVITES: &str = "muc#roomconfig_allowinvites";
const HISTORY_LENGTH: &str = "muc#roomconfig_historylength";
/// Prosody's name for the archiving switch, the one clients (Conversations, Gajim) show.
const ARCHIVING: &str = "muc#roomconfig_enablearchiving";
const ADMINS: &str = "muc#roomconfig_roomadmins";
const OWNERS: &str = "muc#roomconfig_roomowners";

fn not_acceptable(text: String) -> StanzaError {
    StanzaError::new(DefinedCondition::NotAcceptable).with_text(text)
}

fn boolean(field: &Field) -> Result<bool, StanzaError> {
    let var = field.var.as_deref().unwrap_or_default();
    match field.value() {
        None => Ok(false),
        Some(v) => parse_bool(v)
            .ok_or_else(|| not_acceptable(format!("'{var}' must be a boolean, not '{v}'"))),
    }
}

fn number(field: &Field, max: usize) -> Result<usize, StanzaError> {
    let var = field.var.as_deref().unwrap_or_default();
    let v = field.value().unwrap_or_default().trim();
    if v == "none" || v.is_empty() {
        return Ok(max);
    }
    let n: usize = v
        .parse()
        .map_err(|_| not_acceptable(format!("'{var}' must be a number, not '{v}'")))?;
    if n > max {
        return Err(not_acceptable(format!(
            "'{var}' is {n}, more than this service's limit of {max}"
        )));
    }
    Ok(n)
}

fn bare_jids(field: &Field) -> Result<Vec<BareJid>, StanzaError> {
    let jids = field.jids().map_err(StanzaError::from)?;
    Ok(jids.into_iter().map(Jid::into_bare).collect())
}

/// Limits the form is checked against.
#[derive(Clone, Copy, Debug)]
pub struct ConfigLimits {
    /// The service's most occupants per room.
    pub max_users: usize,
    /// The service's longest history.
    pub max_history: usize,
}

impl RoomConfig {
    /// Applies a submitted form; on error nothing changed.
    pub fn apply(
        &mut self,
        form: &DataForm,
        limits: ConfigLimits,
    ) -> Result<FormLists, StanzaError> {
        let mut next = self.clone();
        let mut lists = FormLists::default();
        let mut protected: Option<bool> = None;
        for field in &form.fields {
            let text = || field.value().unwrap_or_default().to_owned();
            match field.var.as_deref().unwrap_or_default() {
                NAME => next.name = text(),
                DESC => next.description = text(),
                LANG => next.language = text(),
                PERSISTENT => next.persistent = boolean(field)?,
                PUBLIC => next.public = boolean(field)?,
                MEMBERS_ONLY => next.members_only = boolean(field)?,
                MODERATED => next.moderated = boolean(field)?,
                PASSWORD_PROTECTED => protected = Some(boolean(field)?),
                SECRET => next.password = Some(text()).filter(|p| !p.is_empty()),
                MAX_USERS => next.max_users = number(field, limits.max_users)?,
                HISTORY_LENGTH => next.history_length = number(field, limits.max_history)?,
                CHANGE_SUBJECT => next.change_subject = boolean(field)?,
                ALLOW_INVITES => next.allow_invites = boolean(field)?,
                ARCHIVING => next.archiving = boolean(field)?,
                WHOIS => {
                    next.whois = match field.value().map(str::trim) {
                        Some("anyone") => Whois::Anyone,
                        Some("moderators") | None => Whois::Moderators,
                        Some(v) => {
                            return Err(not_acceptable(format!("'{WHOIS}' cannot be '{v}'")));
                        }
                    }
                }
                ALLOW_PM => {
                    next.allow_pm = match field.value().map(str::trim) {
                        Some("anyone") | None => AllowPm::Anyone,
                        Some("participants") => AllowPm::Participants,
                        Some("moderators") => AllowPm::Moderators,
                        Some("none") => AllowPm::None,
                        Some(v) => {
                            return Err(not_acceptable(format!("'{ALLOW_PM}' cannot be '{v}'")));
                        }
                    }
                }
                OWNERS => lists.owners = Some(bare_jids(field)?),
                ADMINS => lists.admins = Some(bare_jids(field)?),
                _ => {}
            }
        }
        match protected {
            Some(false) => next.password = None,
            Some(true) if next.password.is_none() => {
                return Err(not_acceptable(format!(
                    "a password-protected room needs a non-empty '{SECRET}'"
                )));
            }
            _ => {}
        }
        if lists.owners.as_ref().is_some_and(Vec::is_empty) {
            return Err(StanzaError::new(DefinedCondition::Conflict)
                .with_text("a room must keep at least one owner"));
        }
        *self = next;
        Ok(lists)
    }

    /// The form an owner fills in (§10.2), with the current values.
    pub fn to_form(
        &self,
        owners: &[BareJid],
        admins: &[BareJid],
        limits: ConfigLimits,
    ) -> DataForm {
        let boolean = |var: &str, label: &str, v: bool| {
            Field::new(var, FieldType::Boolean)
                .with_label(label)
                .with_value(if v { "1" } else { "0" })
        };
        let text = |var: &str, label: &str, v: &str| {
            Field::new(var, FieldType::TextSingle)
                .with_label(label)
                .with_value(v)
        };
        let list = |var: &str, label: &str, v: &str, options: &[&str]| {
            let mut f = Field::new(var, FieldType::ListSingle)
                .with_label(label)
                .with_value(v);
            f.options = options
                .iter()
                .map(|o| FieldOption {
                    label: None,
                    value: (*o).to_owned(),
                })
                .collect();
            f
        };
        let jids = |var: &str, label: &str, list: &[BareJid]| {
            let mut f = Field::new(var, FieldType::JidMulti).with_label(label);
            f.values = list.iter().map(|j| j.to_string()).collect();
            f
        };
        let mut form = DataForm::new(FormType::Form);
        form.title = Some("Room configuration".to_owned());
        form.with_field(Field::form_type(FORM_ROOMCONFIG))
            .with_field(text(NAME, "Name", &self.name))
            .with_field(text(DESC, "Description", &self.description))
            .with_field(text(LANG, "Language", &self.language))
            .with_field(boolean(PERSISTENT, "Persistent", self.persistent))
            .with_field(boolean(PUBLIC, "Listed in the directory", self.public))
            .with_field(boolean(MEMBERS_ONLY, "Members only", self.members_only))
            .with_field(boolean(MODERATED, "Moderated", self.moderated))
            .with_field(boolean(
                PASSWORD_PROTECTED,
                "Password protected",
                self.password.is_some(),
            ))
            .with_field(
                Field::new(SECRET, FieldType::TextPrivate)
                    .with_label("Password")
                    .with_value(self.password.clone().unwrap_or_default()),
            )
            .with_field(text(
                MAX_USERS,
                &format!("Most occupants (at most {})", limits.max_users),
                &self.max_users.to_string(),
            ))
            .with_field(list(
                WHOIS,
                "Who may see real JIDs",
                match self.whois {
                    Whois::Moderators => "moderators",
                    Whois::Anyone => "anyone",
                },
                &["moderators", "anyone"],
            ))
            .with_field(boolean(
                CHANGE_SUBJECT,
                "Participants may change the subject",
                self.change_subject,
            ))
            .with_field(list(
                ALLOW_PM,
                "Who may send private messages",
                self.allow_pm.as_str(),
                &["anyone", "participants", "moderators", "none"],
            ))
            .with_field(boolean(
                ALLOW_INVITES,
                "Participants may invite",
                self.allow_invites,
            ))
            .with_field(text(
                HISTORY_LENGTH,
                &format!("Messages of history (at most {})", limits.max_history),
                &self.history_length.to_string(),
            ))
            .with_field(boolean(ARCHIVING, "Archive messages", self.archiving))
            .with_field(jids(ADMINS, "Admins", admins))
            .with_field(jids(OWNERS, "Owners", owners))
    }

    /// The disco#info features naming this configuration (§15.6).
    pub fn features(&self) -> [&'static str; 6] {
        [
            if self.persistent {
                "muc_persistent"
            } else {
                "muc_temporary"
            },
            if self.public {
                "muc_public"
            } else {
                "muc_hidden"
            },
            if self.members_only {
                "muc_membersonly"
            } else {
                "muc_open"
            },
            if self.moderated {
                "muc_moderated"
            } else {
                "muc_unmoderated"
            },
            if self.password.is_some() {
                "muc_passwordprotected"
            } else {
                "muc_unsecured"
            },
            match self.whois {
                Whois::Anyone => "muc_nonanonymous",
                Whois::Moderators => "muc_semianonymous",
            },
        ]
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
