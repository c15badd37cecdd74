//! Resource binding (RFC 6120 §7) and the elements of a bound stream that the negotiation
//! still answers itself (the legacy session iq, a second bind).

use jid::FullJid;
use xmppd_proto::{DefinedCondition, StanzaError, StreamErrorCondition as Cond, ns};
use xmppd_xml::Element;

use super::{C2sOutput, C2sResponder, Phase, bytes_of};
use crate::header::new_stream_id;

impl C2sResponder {
    pub(super) fn on_bind(&mut self, iq: &Element, out: &mut Vec<C2sOutput>) {
        let id = iq.attr("id").unwrap_or_default().to_owned();
        let bind = iq.child("bind", ns::BIND);
        let (Some(bind), Some("set"), Some(user)) = (bind, iq.attr("type"), self.user.as_ref())
        else {
            return self.close(Cond::NotAuthorized, "bind a resource first", out);
        };
        let requested = bind.child("resource", ns::BIND).map(Element::text);
        let jid = match requested
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            Some(resource) => match user.with_resource_str(resource) {
                Ok(jid) => jid,
                Err(e) => {
                    let error = StanzaError::bad_request(format!("invalid resource: {e}"));
                    out.push(C2sOutput::Send(bytes_of(&iq_error(&id, &error))));
                    return;
                }
            },
            None => match user.with_resource_str(&new_stream_id()[..12]) {
                Ok(jid) => jid,
                Err(_) => {
                    let error = StanzaError::new(DefinedCondition::InternalServerError);
                    out.push(C2sOutput::Send(bytes_of(&iq_error(&id, &error))));
                    return;
                }
            },
        };
        out.push(C2sOutput::Bind { iq_id: id, jid });
    }

    /// Completes a bind: the session is registered under `jid`; returns the result iq.
    pub fn bound(&mut self, iq_id: &str, jid: &FullJid) -> Vec<u8> {
        self.phase = Phase::Bound;
        let result = Element::new("iq", ns::CLIENT)
            .with_attr("type", "result")
            .with_attr("id", iq_id)
            .with_child(
                Element::new("bind", ns::BIND)
                    .with_child(Element::new("jid", ns::BIND).with_text(jid.as_str())),
            );
        bytes_of(&result)
    }

    /// Marks the stream as carrying a session that already exists (moved here from another
    /// stream, as stream management resumption does) instead of binding a new one.
    pub fn attached(&mut self) {
        self.phase = Phase::Bound;
    }

    pub(super) fn on_bound_element(&mut self, el: Element, out: &mut Vec<C2sOutput>) {
        if el.ns() == ns::SM {
            out.push(C2sOutput::StreamManagement(el));
            return;
        }
        if el.is("iq", ns::CLIENT) {
            let id = el.attr("id").unwrap_or_default();
            let single = el.children().count() == 1;
            if single && el.attr("type") == Some("set") && el.has_child("session", ns::SESSION) {
                // RFC 3921 session establishment is a no-op kept for old clients.
                let result = Element::new("iq", ns::CLIENT)
                    .with_attr("type", "result")
                    .with_attr("id", id);
                out.push(C2sOutput::Send(bytes_of(&result)));
                return;
            }
            if single && el.attr("type") == Some("set") && el.has_child("bind", ns::BIND) {
                let error = StanzaError::new(DefinedCondition::NotAllowed)
                    .with_text("a resource is already bound on this stream");
                out.push(C2sOutput::Send(bytes_of(&iq_error(id, &error))));
                return;
            }
        }
        out.push(C2sOutput::Stanza(el));
    }
}

/// An iq error answering `id`.
pub(super) fn iq_error(id: &str, error: &StanzaError) -> Element {
    Element::new("iq", ns::CLIENT)
        .with_attr("type", "error")
        .with_attr("id", id)
        .with_child(error.to_element(ns::CLIENT))
}
