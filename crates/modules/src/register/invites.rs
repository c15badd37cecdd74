//! Registration with an invitation: XEP-0445 (Pre-Authenticated In-Band Registration) for
//! the tokens of XEP-0401 (Easy User Onboarding), which `xmppd invite create` issues.
//!
//! A client presents the token before registering (XEP-0445 §4):
//! `<iq type='set'><preauth xmlns='urn:xmpp:pars:0' token='…'/></iq>`. A token that is
//! unknown, used, revoked or expired is `item-not-found` (§4, Example 3), and counts against
//! the address ([`RegisterSettings::max_token_failures_per_ip`], then `resource-constraint`)
//! and against the stream's failed attempts. An accepted one is remembered by the stream,
//! and expiry is not checked again (§4: later steps "MUST NOT be rejected due to token
//! expiry").
//!
//! The XEP-0077 set that follows then does what the invitation is for, and uses it up
//! only once that succeeded (§4: "single-use tokens MUST NOT be considered used until the
//! actual registration has succeeded"): taken from the store atomically first, so that two
//! streams with one token cannot both succeed (the loser gets `item-not-found`), and put
//! back when the account work fails (a taken username is `conflict`, and the invitation
//! still works for another).
//!
//! - An account invitation creates an account of the name chosen.
//! - A contact invitation (XEP-0401 §3.1, `ibr=y`) creates one and makes it and the inviter
//!   mutually subscribed, pushing the inviter's new item (§3.5).
//! - A password reset invitation sets a new password for its account, whose name the
//!   username must be (`forbidden` otherwise).
//!
//! Invited registrations do not count towards `max_per_ip`: the invitation is the admission.
//!
//! [`RegisterSettings::max_token_failures_per_ip`]: super::RegisterSettings::max_token_failures_per_ip

use std::net::IpAddr;
use std::time::Instant;

use jid::BareJid;
use tracing::{info, warn};
use xmppd_core::{AccountError, InviteKind, Router};
use xmppd_proto::{DefinedCondition, StanzaError};

use super::{Rules, internal, not_acceptable};

fn unknown_token() -> StanzaError {
    StanzaError::new(DefinedCondition::ItemNotFound)
        .with_text("the invitation is unknown, used or expired")
}

impl Rules {
    /// XEP-0445 §4: whether `token` may be used on `host` now, for a client at `peer`.
    pub(super) async fn check_token(
        &self,
        host: &str,
        peer: Option<IpAddr>,
        token: &str,
    ) -> Result<(), StanzaError> {
        self.token_failures
            .acquire(peer, Instant::now())
            .map_err(|refusal| {
                StanzaError::new(DefinedCondition::ResourceConstraint)
                    .with_text(refusal.to_string())
            })?;
        match self.invites.valid(host, token).await {
            Ok(Some(_)) => {
                // Only refused tokens count.
                self.token_failures.release(peer);
                Ok(())
            }
            Ok(None) => {
                info!(peer = ?peer, "invitation token refused");
                Err(unknown_token())
            }
            Err(e) => {
                self.token_failures.release(peer);
                Err(internal(e))
            }
        }
    }

    /// Registers `jid` with `password` (or sets it, for a reset) with the invitation of
    /// `token`, using it up.
    pub(super) async fn redeem(
        &self,
        router: &Router,
        host: &str,
        jid: &BareJid,
        password: &str,
        token: &str,
    ) -> Result<(), StanzaError> {
        let username = jid.node().map_or("", |n| n.as_str());
        let invite = match self.invites.get(host, token).await {
            Ok(Some(invite)) => invite,
            Ok(None) => return Err(unknown_token()),
            Err(e) => return Err(internal(e)),
        };
        match &invite.kind {
            InviteKind::Reset { user } if user != username => {
                return Err(StanzaError::new(DefinedCondition::Forbidden)
                    .with_text("this invitation resets the password of another account"));
            }
            InviteKind::NamedAccount {
                username: named, ..
            } if named != username => {
                return Err(StanzaError::new(DefinedCondition::Forbidden)
                    .with_text(format!("this invitation creates the account {named}")));
            }
            InviteKind::Account | InviteKind::Contact { .. } => {
                let key = xmppd_core::invites::token_key(token);
                self.refuse_reserved(host, username, Some(&key)).await?;
            }
            _ => {}
        }
        let invite = match self.invites.consume(host, token).await {
            Ok(Some(invite)) => invite,
            Ok(None) => return Err(unknown_token()),
            Err(e) => return Err(internal(e)),
        };
        let done = match &invite.kind {
            InviteKind::Reset { .. } => router.accounts().set_password(jid, password).await,
            InviteKind::Account | InviteKind::NamedAccount { .. } | InviteKind::Contact { .. } => {
                router.accounts().create(jid, password).await
            }
        };
        if let Err(e) = done {
            if let Err(e) = self.invites.restore(host, token, &invite).await {
                warn!(error = %e, "could not put an unused invitation back");
            }
            return Err(match e {
                AccountError::Exists(_) => {
                    StanzaError::new(DefinedCondition::Conflict).with_text("that username is taken")
                }
                AccountError::NotFound(_) => StanzaError::new(DefinedCondition::ItemNotFound)
                    .with_text("the account of this invitation no longer exists"),
                AccountError::BadPassword(text) | AccountError::NotAnAccount(text) => {
                    not_acceptable(text)
                }
                other => internal(other),
            });
        }
        match &invite.kind {
            InviteKind::Reset { .. } => info!(%jid, "password reset with an invitation"),
            InviteKind::Account => info!(%jid, "account registered with an invitation"),
            InviteKind::NamedAccount { inviter, .. } => {
                info!(%jid, "account registered with an invitation naming it");
                if let Some(inviter) = inviter {
                    self.befriend(router, host, jid, inviter).await;
                }
            }
            InviteKind::Contact { inviter } => {
                info!(%jid, %inviter, "account registered with a contact invitation");
                self.befriend(router, host, jid, inviter).await;
            }
        }
        Ok(())
    }

    /// XEP-0401 §4.2: `conflict` when a valid invitation (other than the one of token key
    /// `except`) reserves `username` for its invitee.
    pub(super) async fn refuse_reserved(
        &self,
        host: &str,
        username: &str,
        except: Option<&str>,
    ) -> Result<(), StanzaError> {
        match self.invites.reserved(host, username, except).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(StanzaError::new(DefinedCondition::Conflict)
                .with_text("that username is reserved by an invitation")),
            Err(e) => Err(internal(e)),
        }
    }

    /// XEP-0401 §3.3.2, §3.5: the new account and its inviter subscribe to each other.
    async fn befriend(&self, router: &Router, host: &str, jid: &BareJid, inviter: &str) {
        let Ok(inviter) = BareJid::new(&format!("{inviter}@{host}")) else {
            return;
        };
        match router
            .accounts()
            .exists(host, inviter.node().map_or("", |n| n.as_str()))
            .await
        {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => {
                warn!(error = %e, "could not look the inviter up");
                return;
            }
        }
        if let Err(e) = xmppd_im::befriend(router, &self.roster, &inviter, jid).await {
            warn!(%jid, %inviter, error = %e, "could not subscribe the invitee and inviter");
        }
    }
}
