//! IQ handlers: dispatch by (target, type, payload namespace and name).

use async_trait::async_trait;
use jid::{BareJid, Jid};
use xmppd_proto::{Stanza, StanzaError};
use xmppd_xml::Element;

use crate::router::Router;

/// Whom an iq is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqTarget {
    /// The server itself (`to` is a hosted domain).
    Server,
    /// An account, answered by the server on the user's behalf (`to` is a bare JID, or
    /// absent: RFC 6120 §10.3.3).
    Account,
}

/// The request kinds of iq.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqType {
    /// `type='get'`
    Get,
    /// `type='set'`
    Set,
}

impl IqType {
    /// The `type` attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            IqType::Get => "get",
            IqType::Set => "set",
        }
    }
}

/// An iq request handed to a handler.
#[derive(Debug)]
pub struct IqRequest<'a> {
    /// The whole stanza (with the `from` the server stamped).
    pub stanza: &'a Stanza,
    /// Its single payload element.
    pub payload: &'a Element,
    /// The requester.
    pub from: &'a Jid,
    /// The addressed server domain (as a bare JID) or account.
    pub to: &'a BareJid,
    /// The router, for handlers whose answer has side effects (roster pushes).
    pub router: &'a Router,
}

/// Answers one kind of iq.
#[async_trait]
pub trait IqHandler: Send + Sync + 'static {
    /// The payload of the result (`None`: an empty result), or the error to return.
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError>;
}
