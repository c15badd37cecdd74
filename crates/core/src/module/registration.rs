//! Account creation before authentication (XEP-0077 §3.1.1): the seam between the sans-IO
//! negotiation, which recognises a `jabber:iq:register` iq on a stream that has no account
//! yet, and the module that decides on it.
//!
//! Such an iq cannot take the router's path: it has no sender to stamp, and nothing may be
//! routed for a client that has not authenticated. So the stream hands the query to the one
//! [`InBandRegistration`] a module declared ([`Registry::in_band_registration`]), with the
//! address the connection comes from, which policies on who may create accounts need.
//! Hosts without one (the module is not enabled there, or registration is off) are not
//! offered the stream feature and answer `service-unavailable` (§3.1).
//!
//! [`Registry::in_band_registration`]: super::Registry::in_band_registration

use std::net::IpAddr;

use async_trait::async_trait;
use xmppd_proto::StanzaError;
use xmppd_xml::Element;

use super::IqType;
use crate::router::Router;

/// A registration iq from a client that has not authenticated.
#[derive(Debug)]
pub struct RegistrationRequest<'a> {
    /// The host the client's stream is addressed to.
    pub host: &'a str,
    /// The address the connection comes from (`None` when the transport cannot tell).
    pub peer: Option<IpAddr>,
    /// `get` (which fields to fill in) or `set` (create the account, or present a token).
    pub iq_type: IqType,
    /// The `<query xmlns='jabber:iq:register'/>`, or a `<preauth xmlns='urn:xmpp:pars:0'/>`
    /// on a host that accepts invitations.
    pub query: &'a Element,
    /// The router (for the account store).
    pub router: &'a Router,
    /// The invitation token the stream presented earlier and the handler accepted (XEP-0445
    /// §4): the handler sets it when it accepts a `<preauth/>` and reads it at the
    /// registration that follows; it lives as long as the stream.
    pub preauth: &'a mut Option<String>,
}

/// Creates accounts for clients that have not authenticated.
#[async_trait]
pub trait InBandRegistration: Send + Sync + 'static {
    /// The payload of the result (`None`: an empty result), or the error to return.
    async fn handle(
        &self,
        request: RegistrationRequest<'_>,
    ) -> Result<Option<Element>, StanzaError>;

    /// Whether it takes invitation tokens (XEP-0445: `<preauth/>` iqs, and the
    /// `urn:xmpp:ibr-token:0` stream feature).
    fn accepts_invites(&self) -> bool {
        false
    }
}
