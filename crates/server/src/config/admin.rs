//! `[general] admins` and `[admin]`: who administers the server over XMPP (XEP-0133), where
//! the local admin socket is, and the tokens of the HTTP admin API.

use std::path::{Path, PathBuf};

use jid::BareJid;
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

/// Tokens shorter than this are refused: a token is the whole credential.
const MIN_TOKEN_CHARS: usize = 32;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    socket: Option<Spanned<PathBuf>>,
    socket_group: Option<Spanned<u32>>,
    api_tokens: Option<Vec<Spanned<String>>>,
}

/// The validated `[admin]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdminConfig {
    /// The local admin socket (`None`: none); a relative path is under the data dir (see
    /// [`super::Config::admin_socket`]).
    pub socket: Option<PathBuf>,
    /// The group given access to the socket (mode 0660); without it the mode is 0600.
    pub socket_group: Option<u32>,
    /// Bearer tokens of the HTTP admin API; empty: the API is off.
    pub api_tokens: Vec<String>,
}

/// The socket's default name in the data dir.
pub const DEFAULT_SOCKET: &str = "xmppd.sock";

impl Validator<'_> {
    /// `[general] admins`: bare JIDs of accounts.
    pub(super) fn admins(&self, list: &[Spanned<String>]) -> Result<Vec<BareJid>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, value)| match BareJid::new(value.get_ref()) {
                Ok(j) if j.node().is_some() => Ok(j),
                _ => Err(self.invalid(
                    value.span(),
                    &format!("general.admins[{i}]"),
                    format!(
                        "'{}' is not an account's JID (user@domain)",
                        value.get_ref()
                    ),
                )),
            })
            .collect()
    }

    pub(super) fn admin(&self, raw: RawAdmin, data_dir: &Path) -> Result<AdminConfig, ConfigError> {
        let socket = match raw.socket {
            None => Some(PathBuf::from(DEFAULT_SOCKET)),
            Some(p) if p.get_ref().as_os_str().is_empty() => None,
            Some(p) => {
                let path = data_dir.join(p.get_ref());
                // sockaddr_un holds 108 bytes with the terminating NUL.
                if path.as_os_str().len() > 107 {
                    let msg = format!(
                        "{} is longer than a Unix socket path may be (107 bytes)",
                        path.display()
                    );
                    return Err(self.invalid(p.span(), "admin.socket", msg));
                }
                Some(p.into_inner())
            }
        };
        let mut tokens = Vec::new();
        for (i, t) in raw.api_tokens.iter().flatten().enumerate() {
            let token = t.get_ref();
            if token.chars().count() < MIN_TOKEN_CHARS
                || !token.chars().all(|c| c.is_ascii_graphic())
            {
                let msg = format!(
                    "a token needs at least {MIN_TOKEN_CHARS} printable ASCII characters \
                     without spaces (e.g. `openssl rand -hex 32`)"
                );
                return Err(self.invalid(t.span(), &format!("admin.api_tokens[{i}]"), msg));
            }
            tokens.push(token.clone());
        }
        Ok(AdminConfig {
            socket,
            socket_group: raw.socket_group.map(Spanned::into_inner),
            api_tokens: tokens,
        })
    }
}
