//! In-band registration before authentication (XEP-0077 §3.1.1).
//!
//! A client that has no account yet may, on a host open to registration, send
//! `jabber:iq:register` iqs in place of SASL: a get asks which fields to fill in, a set
//! creates the account, after which the client authenticates on the same stream as usual.
//! Everything else a client sends before authenticating still ends the stream.
//!
//! The negotiation only recognises the iq and answers what needs no account database:
//! `service-unavailable` on a host that is not open (§3.1: "If the host does not support
//! In-Band Registration, it MUST return a service-unavailable error"), `not-authorized` on an
//! open host before TLS (registration is offered only under TLS, §11) and `bad-request` for a
//! malformed iq. The rest — the fields, the rules, the rate limits by address, creating the
//! account — is the caller's [`C2sOutput::Register`], answered through
//! [`C2sResponder::registered`], exactly as SASL's credential lookups are. A failed set
//! counts as a failed authentication attempt, so one stream cannot try usernames forever.
//!
//! On a host that accepts invitations, a `<preauth xmlns='urn:xmpp:pars:0' token='…'/>` iq
//! set (XEP-0445 §4) takes the same path: a refused token counts as a failed attempt too, so
//! a stream cannot guess tokens either.

use xmppd_proto::pars::NS_PARS;
use xmppd_proto::register::NS_REGISTER;
use xmppd_proto::{DefinedCondition, StanzaError, StreamErrorCondition as Cond, ns};
use xmppd_xml::Element;

use super::{C2sOutput, C2sResponder, bytes_of, iq_error};

impl C2sResponder {
    /// Whether the addressed host lets clients register before authenticating.
    fn host_open(&self) -> bool {
        self.host()
            .is_some_and(|host| self.policy.registration.contains(host))
    }

    /// Whether registration is offered on this stream: on an open host, and only under TLS,
    /// required or not, since the password travels in the clear inside the stream (XEP-0077
    /// §11: not "unless the channel … has been secured").
    pub(super) fn registration_open(&self) -> bool {
        self.tls && self.host_open()
    }

    /// Whether the addressed host takes invitation tokens (XEP-0445).
    pub(super) fn invites_accepted(&self) -> bool {
        self.host()
            .is_some_and(|host| self.policy.invites.contains(host))
    }

    /// An iq request for the server whose payload is a `jabber:iq:register` query.
    pub(super) fn is_register_iq(&self, el: &Element) -> bool {
        let to_us = match el.attr("to") {
            None => true,
            Some(to) => Some(to) == self.host(),
        };
        let kind = el.attr("type");
        el.is("iq", ns::CLIENT)
            && to_us
            && el.children().any(|c| {
                (c.is("query", NS_REGISTER) && matches!(kind, Some("get" | "set")))
                    || (c.is("preauth", NS_PARS) && kind == Some("set"))
            })
    }

    pub(super) fn on_register(&mut self, iq: Element, out: &mut Vec<C2sOutput>) {
        let iq_id = iq.attr("id").unwrap_or_default().to_owned();
        let set = iq.attr("type") == Some("set");
        if iq_id.is_empty() || iq.children().count() != 1 {
            // RFC 6120 §8.2.3: an iq has an id and exactly one payload.
            let error = StanzaError::bad_request("an iq needs an id and exactly one payload");
            return self.registered(&iq_id, set, Err(error), out);
        }
        let preauth = iq.children().any(|c| c.is("preauth", NS_PARS));
        let open = self.registration_open() && (!preauth || self.invites_accepted());
        let (true, Some(host)) = (open, self.host.clone()) else {
            let error = if self.host_open() && (!preauth || self.invites_accepted()) {
                StanzaError::new(DefinedCondition::NotAuthorized)
                    .with_text("register over TLS: negotiate STARTTLS first")
            } else {
                StanzaError::service_unavailable()
                    .with_text("this server does not offer in-band registration")
            };
            return self.registered(&iq_id, set, Err(error), out);
        };
        let Some(query) = iq.children().next().cloned() else {
            return;
        };
        out.push(C2sOutput::Register {
            host,
            iq_id,
            set,
            query,
        });
    }

    /// Answers the registration iq `iq_id` (a `set`, or a get) with the result's payload or
    /// the error. A set that failed counts as a failed attempt: at the limit the stream ends.
    pub fn registered(
        &mut self,
        iq_id: &str,
        set: bool,
        answer: Result<Option<Element>, StanzaError>,
        out: &mut Vec<C2sOutput>,
    ) {
        match answer {
            Ok(payload) => {
                let mut result = Element::new("iq", ns::CLIENT)
                    .with_attr("type", "result")
                    .with_attr("id", iq_id);
                if let Some(payload) = payload {
                    result.push_child(payload);
                }
                out.push(C2sOutput::Send(bytes_of(&result)));
            }
            Err(error) => {
                out.push(C2sOutput::Send(bytes_of(&iq_error(iq_id, &error))));
                if !set {
                    return;
                }
                self.failures += 1;
                if self.failures >= self.policy.max_auth_failures {
                    self.close(
                        Cond::PolicyViolation,
                        "too many failed registration or authentication attempts",
                        out,
                    );
                }
            }
        }
    }
}
