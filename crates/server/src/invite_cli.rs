//! `xmppd invite create|list|revoke` (XEP-0401 invitations): the verbs and their output;
//! the work is `xmppd::invites`.

use clap::Subcommand;
use xmppd::config::Config;

/// The `invite` verbs.
#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Issue a single-use invitation: by default to create an account on HOST (needed when
    /// the server has several hosts).
    Create {
        /// The host.
        host: Option<String>,
        /// The new account's username, reserved for the invitee while the invitation lasts
        /// (XEP-0401 §4.2); without it the invitee chooses.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["reset", "contact"])]
        username: Option<String>,
        /// Instead, let this existing account (user or user@host) set a new password.
        #[arg(long, value_name = "USER", conflicts_with = "contact")]
        reset: Option<String>,
        /// Instead, invite to become this account's contact (user@host): an account
        /// registered with it, or an existing one presenting it, is subscribed both ways.
        #[arg(long, value_name = "JID")]
        contact: Option<String>,
        /// How long it is valid: 7d, 12h, 30m … (default [invites] expiry, 7 days).
        #[arg(long, value_name = "DURATION", value_parser = xmppd::config::parse_duration)]
        expires: Option<u64>,
    },
    /// List the invitations not used nor expired (of HOST, or of every host).
    List {
        /// The host.
        host: Option<String>,
    },
    /// Revoke an invitation, by its token or its id from `invite list`.
    Revoke {
        /// The token, or the id (at least 8 of its first digits).
        id: String,
        /// The host (default: whichever has it).
        #[arg(long)]
        host: Option<String>,
    },
}

/// Carries out one `invite` verb.
pub async fn run(
    config: &Config,
    storage: &xmppd_core::storage::Storage,
    what: InviteCommand,
) -> anyhow::Result<()> {
    use xmppd::invites::{self, InviteRequest};
    match what {
        InviteCommand::Create {
            host,
            username,
            reset,
            contact,
            expires,
        } => {
            let request = match (username, reset, contact) {
                (Some(name), _, _) => InviteRequest::NamedAccount(name),
                (None, Some(user), _) => InviteRequest::Reset(user),
                (None, None, Some(jid)) => InviteRequest::Contact(jid),
                (None, None, None) => InviteRequest::Account,
            };
            let issued =
                invites::create(config, storage, host.as_deref(), &request, expires).await?;
            println!(
                "invitation for {}, valid until {}",
                invites::describe(&issued.invite, &issued.host),
                utc_time(issued.invite.expires)
            );
            println!("{}", issued.uri);
            match issued.landing_page {
                Some(url) => println!("{url}"),
                None => println!(
                    "(no landing page: configure an http or https [[listen]], or \
                     [invites] landing_page_url)"
                ),
            }
        }
        InviteCommand::List { host } => {
            for (host, id, invite) in invites::list(config, storage, host.as_deref()).await? {
                println!(
                    "{}  {}  until {}",
                    id.get(..16).unwrap_or(&id),
                    invites::describe(&invite, &host),
                    utc_time(invite.expires)
                );
            }
        }
        InviteCommand::Revoke { id, host } => {
            let host = invites::revoke(config, storage, host.as_deref(), &id).await?;
            println!("revoked the invitation on {host}");
        }
    }
    Ok(())
}

/// A Unix time in UTC, to the minute.
fn utc_time(unix: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).unwrap_or(i64::MAX)) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02} UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => format!("@{unix}"),
    }
}
