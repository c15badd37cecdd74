//! The verbs as data: one request type that the Unix socket and the HTTP admin API both
//! read from JSON, and one [`dispatch`] that runs it, so every way in runs the same code.

use jid::Jid;
use serde::Deserialize;
use serde_json::{Value, json};
use xmppd_core::Router;

use crate::{Admin, AdminError, account};

/// The verbs' names, as [`Request`]'s `verb` and the HTTP API's paths.
pub const VERBS: &[&str] = &[
    "list_users",
    "add_user",
    "delete_user",
    "change_password",
    "sessions",
    "kick",
    "stats",
    "announce",
];

/// A verb with its arguments. JSON: `{"verb": "add_user", "jid": "…", "password": "…"}`
/// on the socket; on the HTTP API the verb is the path and the rest the body.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "verb", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The accounts of a host.
    ListUsers {
        /// The host.
        host: String,
    },
    /// Create an account.
    AddUser {
        /// user@host.
        jid: String,
        /// Its password.
        password: String,
    },
    /// Delete an account, ending its sessions.
    DeleteUser {
        /// user@host.
        jid: String,
    },
    /// Replace an account's password.
    ChangePassword {
        /// user@host.
        jid: String,
        /// The new password.
        password: String,
    },
    /// The bound sessions (of one host, or all).
    Sessions {
        /// Only this host's.
        #[serde(default)]
        host: Option<String>,
    },
    /// End a session (full JID) or all of an account's (bare JID).
    Kick {
        /// The JID.
        jid: String,
        /// Told to the client in the stream error's text.
        #[serde(default)]
        reason: Option<String>,
    },
    /// Accounts and sessions per host, uptime, federation links.
    Stats {},
    /// A headline message to every session of a host.
    Announce {
        /// The host.
        host: String,
        /// The text.
        message: String,
        /// An optional subject.
        #[serde(default)]
        subject: Option<String>,
    },
}

/// Runs `request`; the result as JSON.
pub async fn dispatch(
    admin: &Admin,
    router: &Router,
    request: Request,
) -> Result<Value, AdminError> {
    Ok(match request {
        Request::ListUsers { host } => json!({ "users": admin.list_users(router, &host).await? }),
        Request::AddUser { jid, password } => {
            let jid = account(router, &jid)?;
            admin.add_user(router, &jid, &password).await?;
            json!({ "created": jid.to_string() })
        }
        Request::DeleteUser { jid } => {
            let jid = account(router, &jid)?;
            let sessions = admin.delete_user(router, &jid).await?;
            json!({ "deleted": jid.to_string(), "sessions_ended": sessions })
        }
        Request::ChangePassword { jid, password } => {
            let jid = account(router, &jid)?;
            admin.change_password(router, &jid, &password).await?;
            json!({ "changed": jid.to_string() })
        }
        Request::Sessions { host } => {
            json!({ "sessions": admin.list_sessions(router, host.as_deref())? })
        }
        Request::Kick { jid, reason } => {
            let jid = Jid::new(jid.trim()).map_err(|_| AdminError::InvalidJid(jid.clone()))?;
            let sessions = admin.kick(router, &jid, reason.as_deref())?;
            json!({ "sessions_ended": sessions })
        }
        Request::Stats {} => serde_json::to_value(admin.stats(router).await?)
            .map_err(|e| AdminError::Invalid(e.to_string()))?,
        Request::Announce {
            host,
            message,
            subject,
        } => {
            let sent = admin
                .announce(router, &host, subject.as_deref(), &message)
                .await?;
            json!({ "sessions": sent })
        }
    })
}

/// How a failure is classed for the interfaces (the HTTP status follows from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// The request cannot be acted on as given (HTTP 422).
    Invalid,
    /// What it names does not exist (HTTP 404).
    NotFound,
    /// What it would create exists (HTTP 409).
    Conflict,
    /// The server failed (HTTP 500).
    Internal,
}

impl ErrorClass {
    /// The class of `e`.
    pub fn of(e: &AdminError) -> Self {
        match e {
            AdminError::InvalidJid(_)
            | AdminError::NotAnAccount(_)
            | AdminError::UnknownHost(_)
            | AdminError::BadPassword(_)
            | AdminError::Invalid(_) => ErrorClass::Invalid,
            AdminError::NotFound(_) | AdminError::NotOnline(_) => ErrorClass::NotFound,
            AdminError::Exists(_) => ErrorClass::Conflict,
            AdminError::Storage(_) => ErrorClass::Internal,
        }
    }

    /// Its name in JSON answers.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Invalid => "invalid",
            ErrorClass::NotFound => "not_found",
            ErrorClass::Conflict => "conflict",
            ErrorClass::Internal => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_read_from_json_and_unknown_fields_are_refused() {
        let r: Request =
            serde_json::from_str(r#"{"verb":"kick","jid":"a@b/c","reason":"spam"}"#).unwrap();
        assert_eq!(
            r,
            Request::Kick {
                jid: "a@b/c".into(),
                reason: Some("spam".into())
            }
        );
        let r: Request = serde_json::from_str(r#"{"verb":"stats"}"#).unwrap();
        assert_eq!(r, Request::Stats {});
        assert!(serde_json::from_str::<Request>(r#"{"verb":"stats","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"verb":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"verb":"add_user","jid":"a@b"}"#).is_err());
    }
}
