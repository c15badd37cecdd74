//! XEP-0357: Push Notifications — the payloads.
//!
//! What a client sends its server: `<enable jid='…' node='…'/>`, optionally with a
//! `publish-options` data form (§5), and `<disable jid='…' node='…'?/>` (§6). What the server
//! sends the push service (§7): a XEP-0060 publish of one `<notification/>` holding the
//! `urn:xmpp:push:summary` form, with the stored publish options.
//!
//! §5 only says `node` SHOULD be present; a registration without a node could never be
//! published to (XEP-0060 publishes name their node), so it is refused as a bad request.

use jid::Jid;
use xmppd_xml::Element;

use crate::data_form::{DataForm, FORM_TYPE, Field, FieldType, FormType};

/// A field with values and no `type` (a submitted form's fields need none, XEP-0004 §3.2).
fn untyped(var: &str, values: &[&str]) -> Field {
    let mut field = Field::new(var, FieldType::TextSingle);
    field.field_type = None;
    field.values = values.iter().map(|v| (*v).to_owned()).collect();
    field
}
use crate::ns;
use crate::payload::{PayloadError, required_jid_attr};

/// `urn:xmpp:push:0`.
pub const NS_PUSH: &str = "urn:xmpp:push:0";
/// The `FORM_TYPE` of the notification's summary (§7).
pub const NS_SUMMARY: &str = "urn:xmpp:push:summary";
pub use crate::pubsub::{NS_PUBLISH_OPTIONS, NS_PUBSUB};

/// `<enable/>`: publish notifications for this account to `node` at `jid` (§5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enable {
    /// The push service.
    pub jid: Jid,
    /// The node at the push service, provisioned for this device by the app server.
    pub node: String,
    /// The publish options to send with every notification (credentials, typically).
    pub publish_options: Option<DataForm>,
}

/// `<disable/>`: stop publishing to `jid` — only to `node` when given, else to all its nodes
/// (§6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disable {
    /// The push service.
    pub jid: Jid,
    /// The one node to stop, if given.
    pub node: Option<String>,
}

/// A `node` attribute that is present and not empty.
fn node_attr(el: &Element) -> Option<String> {
    el.attr("node").filter(|n| !n.is_empty()).map(str::to_owned)
}

impl TryFrom<&Element> for Enable {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("enable", NS_PUSH) {
            return Err(PayloadError::Mismatch);
        }
        let jid = required_jid_attr(el, "jid")?;
        let node = node_attr(el)
            .ok_or_else(|| PayloadError::invalid("<enable/> needs a non-empty 'node' attribute"))?;
        let publish_options = match el.child("x", ns::DATA_FORMS) {
            None => None,
            Some(x) => {
                let form = DataForm::try_from(x)?;
                if form.form_type() != Some(NS_PUBLISH_OPTIONS) {
                    return Err(PayloadError::invalid(format!(
                        "the form of <enable/> must have the FORM_TYPE {NS_PUBLISH_OPTIONS}"
                    )));
                }
                Some(form)
            }
        };
        Ok(Enable {
            jid,
            node,
            publish_options,
        })
    }
}

impl Enable {
    /// The `<enable/>` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("enable", NS_PUSH)
            .with_attr("jid", self.jid.as_str())
            .with_attr("node", self.node.as_str());
        if let Some(form) = &self.publish_options {
            el.push_child(form.to_element());
        }
        el
    }
}

impl TryFrom<&Element> for Disable {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("disable", NS_PUSH) {
            return Err(PayloadError::Mismatch);
        }
        Ok(Disable {
            jid: required_jid_attr(el, "jid")?,
            node: node_attr(el),
        })
    }
}

impl Disable {
    /// The `<disable/>` element.
    pub fn to_element(&self) -> Element {
        let el = Element::new("disable", NS_PUSH).with_attr("jid", self.jid.as_str());
        match &self.node {
            Some(node) => el.with_attr("node", node.as_str()),
            None => el,
        }
    }
}

/// The summary of what arrived since the user was last online (§7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Messages since the user was last online.
    pub message_count: u64,
    /// The sender of the last one.
    pub last_sender: Option<Jid>,
    /// Its body, only where the operator allows bodies to leave the server (§9).
    pub last_body: Option<String>,
}

impl Summary {
    /// The `<notification/>` with its summary form.
    pub fn to_element(&self) -> Element {
        let mut form = DataForm::new(FormType::Submit)
            .with_field(untyped(FORM_TYPE, &[NS_SUMMARY]))
            .with_field(untyped("message-count", &[&self.message_count.to_string()]));
        if let Some(sender) = &self.last_sender {
            form = form.with_field(untyped("last-message-sender", &[sender.as_str()]));
        }
        if let Some(body) = &self.last_body {
            form = form.with_field(untyped("last-message-body", &[body]));
        }
        Element::new("notification", NS_PUSH).with_child(form.to_element())
    }

    /// Reads a `<notification/>` (what a push service receives; tests).
    pub fn from_notification(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("notification", NS_PUSH) {
            return Err(PayloadError::Mismatch);
        }
        let Some(form) = el.child("x", ns::DATA_FORMS) else {
            return Ok(Summary {
                message_count: 0,
                last_sender: None,
                last_body: None,
            });
        };
        let form = DataForm::try_from(form)?;
        let message_count = match form.value("message-count") {
            Some(v) => v.trim().parse().map_err(|_| {
                PayloadError::invalid(format!("message-count must be a number, not '{v}'"))
            })?,
            None => 0,
        };
        let sender = form
            .value("last-message-sender")
            .map(|v| Jid::new(v).map_err(|e| PayloadError::JidMalformed(format!("{v}: {e}"))))
            .transpose()?;
        Ok(Summary {
            message_count,
            last_sender: sender,
            last_body: form.value("last-message-body").map(str::to_owned),
        })
    }
}

/// The pubsub payload of the publish iq to the push service (§7): `summary` published as the
/// one item of `node`, with `options` as the publish options.
pub fn publish(node: &str, summary: &Summary, options: Option<&DataForm>) -> Element {
    let item = Element::new("item", NS_PUBSUB).with_child(summary.to_element());
    let mut pubsub = Element::new("pubsub", NS_PUBSUB).with_child(
        Element::new("publish", NS_PUBSUB)
            .with_attr("node", node)
            .with_child(item),
    );
    if let Some(options) = options {
        pubsub.push_child(
            Element::new("publish-options", NS_PUBSUB).with_child(options.to_element()),
        );
    }
    pubsub
}

/// A `publish-options` form of these fields (besides `FORM_TYPE`).
pub fn publish_options(fields: &[(String, Vec<String>)]) -> DataForm {
    let mut form =
        DataForm::new(FormType::Submit).with_field(untyped(FORM_TYPE, &[NS_PUBLISH_OPTIONS]));
    for (var, values) in fields {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        form = form.with_field(untyped(var, &values));
    }
    form
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    const SERVICE: &str = "push-5.client.example";

    #[test]
    fn enable_with_options_parses_and_round_trips() {
        let el = element(&format!(
            "<enable xmlns='{NS_PUSH}' jid='{SERVICE}' node='yxs32uqsflafdk3iuqo'>\
               <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>{NS_PUBLISH_OPTIONS}</value></field>\
                 <field var='secret'><value>eruio234vzxc2kla-91</value></field>\
               </x><unknown xmlns='urn:example'/></enable>"
        ));
        let enable = Enable::try_from(&el).expect("an enable");
        assert_eq!(enable.jid.as_str(), SERVICE);
        assert_eq!(enable.node, "yxs32uqsflafdk3iuqo");
        let form = enable.publish_options.as_ref().expect("options");
        assert_eq!(form.value("secret"), Some("eruio234vzxc2kla-91"));
        assert_eq!(Enable::try_from(&enable.to_element()), Ok(enable));
    }

    #[test]
    fn enable_needs_jid_and_node_and_a_valid_jid() {
        for xml in [
            format!("<enable xmlns='{NS_PUSH}' node='n'/>"),
            format!("<enable xmlns='{NS_PUSH}' jid='{SERVICE}'/>"),
            format!("<enable xmlns='{NS_PUSH}' jid='{SERVICE}' node=''/>"),
        ] {
            let err = Enable::try_from(&element(&xml)).unwrap_err();
            assert!(matches!(err, PayloadError::Invalid(_)), "{xml}: {err:?}");
        }
        let err = Enable::try_from(&element(&format!(
            "<enable xmlns='{NS_PUSH}' jid='a@@b' node='n'/>"
        )))
        .unwrap_err();
        assert!(matches!(err, PayloadError::JidMalformed(_)), "{err:?}");
    }

    #[test]
    fn enable_refuses_a_form_of_another_type() {
        let el = element(&format!(
            "<enable xmlns='{NS_PUSH}' jid='{SERVICE}' node='n'>\
               <x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>urn:example</value></field></x></enable>"
        ));
        assert!(matches!(
            Enable::try_from(&el),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn disable_with_and_without_node() {
        let el = element(&format!("<disable xmlns='{NS_PUSH}' jid='{SERVICE}'/>"));
        let all = Disable::try_from(&el).expect("a disable");
        assert_eq!(all.node, None);
        let one = Disable {
            jid: Jid::new(SERVICE).unwrap(),
            node: Some("n".into()),
        };
        assert_eq!(Disable::try_from(&one.to_element()), Ok(one));
        let missing = element(&format!("<disable xmlns='{NS_PUSH}'/>"));
        assert!(matches!(
            Disable::try_from(&missing),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn other_elements_are_not_mine() {
        for xml in [
            "<enable xmlns='urn:xmpp:sm:3'/>".to_owned(),
            format!("<other xmlns='{NS_PUSH}'/>"),
        ] {
            let el = element(&xml);
            assert_eq!(Enable::try_from(&el), Err(PayloadError::Mismatch));
            assert_eq!(Disable::try_from(&el), Err(PayloadError::Mismatch));
        }
    }

    #[test]
    fn the_publish_carries_the_summary_and_the_options() {
        let summary = Summary {
            message_count: 3,
            last_sender: Some(Jid::new("juliet@capulet.example/balcony").unwrap()),
            last_body: None,
        };
        let options = publish_options(&[("secret".into(), vec!["s3".into()])]);
        let pubsub = publish("node-1", &summary, Some(&options));
        let publish = pubsub.child("publish", NS_PUBSUB).expect("publish");
        assert_eq!(publish.attr("node"), Some("node-1"));
        let notification = publish
            .child("item", NS_PUBSUB)
            .and_then(|i| i.child("notification", NS_PUSH))
            .expect("notification");
        assert_eq!(
            Summary::from_notification(notification),
            Ok(summary.clone())
        );
        let form = notification.child("x", ns::DATA_FORMS).expect("form");
        assert_eq!(form.attr("type"), Some("submit"));
        let vars: Vec<_> = form.children().filter_map(|f| f.attr("var")).collect();
        assert_eq!(vars, [FORM_TYPE, "message-count", "last-message-sender"]);
        let sent = pubsub
            .child("publish-options", NS_PUBSUB)
            .and_then(|o| o.child("x", ns::DATA_FORMS))
            .expect("options");
        let sent = DataForm::try_from(sent).expect("a form");
        assert_eq!(sent.form_type(), Some(NS_PUBLISH_OPTIONS));
        assert_eq!(sent.value("secret"), Some("s3"));
        // Without options, no element for them.
        assert!(
            publish_none(&summary)
                .child("publish-options", NS_PUBSUB)
                .is_none()
        );
    }

    fn publish_none(summary: &Summary) -> Element {
        publish("n", summary, None)
    }
}
