//! In-process services on their own domains (`conference.example.org`,
//! `upload.example.org`): a routing target beside hosts, external components and remote
//! domains.
//!
//! Everything addressed to a service's domain, or to any JID at it, goes to the service, from
//! local sessions and from other servers alike (federation accepts the service's domain as one
//! of ours, and what the service sends is routed out like any local domain's stanzas). The
//! service is listed in its host's disco#items.

use async_trait::async_trait;
use xmppd_proto::Stanza;

use crate::completion::Completion;
use crate::router::Router;

/// What became of a stanza given to a service.
#[derive(Debug)]
pub enum Routed {
    /// Handled; a stanza to route next (typically an error bounce), if any.
    Done(Option<Stanza>),
    /// Taken, and finished later by the service, which delivers it or bounces it itself
    /// (see [`crate::completion`]).
    Later(Completion),
}

/// A service owning a domain.
#[async_trait]
pub trait Service: Send + Sync + 'static {
    /// Handles one stanza addressed to the service's domain (`to` is set, `from` vouched
    /// for); returns a stanza to route next, typically an error bounce. Replies and
    /// broadcasts go through [`Router::route`].
    async fn handle(&self, router: &Router, stanza: Stanza) -> Option<Stanza>;

    /// [`Service::handle`] for a stanza a local client session sent, which reads on while a
    /// service that commits before it delivers (a room's archive) finishes the stanza. The
    /// session counts it as handled only once the returned completion is done.
    async fn handle_from_session(&self, router: &Router, stanza: Stanza) -> Routed {
        Routed::Done(self.handle(router, stanza).await)
    }
}
