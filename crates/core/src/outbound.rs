//! What travels from the router to a session's task.

use std::sync::Arc;

use bytes::Bytes;
use xmppd_proto::Stanza;

/// What travels to a session task: a stanza serialised once for every recipient, and the
/// stanza itself for routing again if the session ends before writing it.
#[derive(Clone, Debug)]
pub struct Outbound {
    /// The stanza serialised in the `jabber:client` namespace.
    pub bytes: Bytes,
    /// The routed stanza, shared between recipients. A session that ends with this still
    /// queued hands it back to the router, which then treats the resource as gone
    /// (RFC 6121 §8.5.3.2): a message goes to the account's other resources or is bounced,
    /// an iq is answered with an error. `None` for replayed presence, which is simply dropped.
    pub reroute: Option<Arc<Stanza>>,
}
