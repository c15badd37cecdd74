//! XEP-0379 (Pre-Authenticated Roster Subscription) done by the inviter's server, as
//! XEP-0401 §3.1 and §3.3 describe: a user's contact invitation carries a token the server
//! issued ([`xmppd_core::Invites`], kind `Contact`), and the server approves for the user.
//!
//! - An account registered with the token ([`befriend`], called by in-band registration)
//!   and the inviter become mutually subscribed at once, and the inviter's interested
//!   resources get the roster push of XEP-0401 §3.5 (`subscription='both'`).
//! - An existing account's `<presence type='subscribe'/>` to the inviter with
//!   `<preauth xmlns='urn:xmpp:pars:0' token='…'/>` (XEP-0379 §3.4) uses the token up and is
//!   approved on the inviter's behalf — as a pre-approval (RFC 6121 §3.4) applied just
//!   before the request, so the state machine answers `subscribed` — and the inviter asks
//!   for the contact's presence in return (§3.5), which the contact's server approves when
//!   the contact's client pre-approved the inviter (§3.4).
//!
//! A token that is unknown, expired, used, of another kind or another inviter is ignored
//! (XEP-0379 §4.1: "act as if no preauth token was contained"): the request takes the
//! manual path.

use jid::{BareJid, Jid};
use tracing::{info, warn};
use xmppd_core::storage::StorageResult;
use xmppd_core::{InviteKind, Router, Subscription, SubscriptionKind};
use xmppd_proto::Stanza;
use xmppd_proto::pars::Preauth;

use crate::roster::RosterItem;
use crate::roster_iq::push;
use crate::state::Sub;
use crate::subscription::view;
use crate::{Im, RosterStore, presence, send_presence_of};

/// Makes `a` and `b`, two local accounts, subscribed to each other (`both`, nothing pending),
/// pushes the changed items to their interested resources and sends each one's current
/// presence to the other.
pub async fn befriend(
    router: &Router,
    roster: &RosterStore,
    a: &BareJid,
    b: &BareJid,
) -> StorageResult<()> {
    for (user, contact) in [(a, b), (b, a)] {
        let pending_in = roster.has_pending(user, contact).await?;
        let mut item = roster
            .item(user, contact)
            .await?
            .unwrap_or_else(|| RosterItem::new(contact));
        let old = item.state(pending_in);
        item.subscription = Sub::Both;
        item.ask = false;
        item.approved = false;
        roster.put(user, &item).await?;
        if pending_in {
            roster.clear_pending(user, contact).await?;
        }
        let ver = roster.bump_version(user).await?;
        push(router, user, ver, item.to_element()).await;
        let both = Subscription {
            from: true,
            to: true,
        };
        router
            .subscription_changed(user, contact, view(&old), both)
            .await;
    }
    send_presence_of(router, a, &Jid::from(b.clone())).await;
    send_presence_of(router, b, &Jid::from(a.clone())).await;
    Ok(())
}

impl Im {
    /// Before an inbound `subscribe` from `contact` to `user` is applied: when it carries a
    /// token of `user`'s contact invitation, uses the token up and pre-approves `contact` on
    /// `user`'s behalf. Returns whether it did (the caller then asks `contact` in return).
    pub(crate) async fn redeem_contact_token(
        &self,
        router: &Router,
        stanza: &Stanza,
        contact: &BareJid,
        user: &BareJid,
    ) -> bool {
        let Some(preauth) = Preauth::of(stanza.element()) else {
            return false;
        };
        let (host, Some(node)) = (user.domain().as_str(), user.node()) else {
            return false;
        };
        if contact == user {
            return false;
        }
        let ours = |kind: &InviteKind| matches!(kind, InviteKind::Contact { inviter } if inviter == node.as_str());
        match self.invites.valid(host, &preauth.token).await {
            Ok(Some(invite)) if ours(&invite.kind) => {}
            Ok(_) => return false,
            Err(e) => {
                warn!(%user, error = %e, "invite lookup failed");
                return false;
            }
        }
        match self.invites.consume(host, &preauth.token).await {
            Ok(Some(_)) => {}
            Ok(None) => return false,
            Err(e) => {
                warn!(%user, error = %e, "invite lookup failed");
                return false;
            }
        }
        let approval = presence(
            Some("subscribed"),
            Jid::from(user.clone()),
            Jid::from(contact.clone()),
        );
        self.outbound_subscription(router, SubscriptionKind::Subscribed, approval, user)
            .await;
        info!(%user, %contact, "contact invitation redeemed");
        true
    }

    /// After a redeemed invitation: `user` asks for `contact`'s presence (XEP-0379 §3.5),
    /// unless it already sees it or asked.
    pub(crate) async fn subscribe_back(&self, router: &Router, contact: &BareJid, user: &BareJid) {
        let state = match self.roster.item(user, contact).await {
            Ok(item) => item.map(|i| i.state(false)),
            Err(e) => {
                warn!(%user, error = %e, "roster read failed");
                return;
            }
        };
        if state.is_some_and(|s| s.sub.to() || s.pending_out) {
            return;
        }
        let request = presence(
            Some("subscribe"),
            Jid::from(user.clone()),
            Jid::from(contact.clone()),
        );
        self.outbound_subscription(router, SubscriptionKind::Subscribe, request, user)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state;

    #[test]
    fn a_pre_approved_request_is_answered_for_the_user() {
        // What redeeming relies on: outbound `subscribed` in state None pre-approves, and
        // the request that follows is then approved with a `subscribed` reply (§3.4).
        let pre = state::outbound(state::SubState::NONE, SubscriptionKind::Subscribed);
        assert!(pre.new.approved && !pre.forward);
        let request = state::inbound(pre.new, SubscriptionKind::Subscribe);
        assert_eq!(request.reply, Some(SubscriptionKind::Subscribed));
        assert!(request.new.sub.from() && !request.forward);
    }
}
