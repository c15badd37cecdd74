//! XEP-0050: Ad-Hoc Commands — the `<command/>` element.
//!
//! A request carries `node` (required), an optional `sessionid` and `action` (§3.4: absent
//! means `execute`), and perhaps a data form (XEP-0004). A response carries `node`,
//! `sessionid`, `status` (`executing`, `completed`, `canceled`), the `<actions/>` the
//! requester may take next, `<note/>`s and the form.
//!
//! Points where the XEP is subtle:
//! - An `action` value outside §4.6's list is not a parse error here: [`CommandRequest::action`]
//!   keeps it as [`Action::Unknown`] so the command module can answer `bad-request` with the
//!   specific `<malformed-action/>` condition (§4.6), which only it knows it owes.
//! - The errors of §4.6 are a general stanza condition plus a specific one in this namespace
//!   ([`specific_condition`]).

use xmppd_xml::Element;

use crate::data_form::DataForm;
use crate::ns;
use crate::payload::{PayloadError, expect, into_element, required_attr};

/// `http://jabber.org/protocol/commands`.
pub const NS_COMMANDS: &str = "http://jabber.org/protocol/commands";

/// What the requester asks of a command (§3.4, §4.6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start the command, or go on with the default action of a session.
    Execute,
    /// Abandon the session.
    Cancel,
    /// Go back a stage.
    Prev,
    /// Go on to the next stage.
    Next,
    /// Finish with what was given.
    Complete,
    /// A value §4.6 does not define (answered `malformed-action`).
    Unknown(String),
}

impl Action {
    /// The attribute's value.
    pub fn as_str(&self) -> &str {
        match self {
            Action::Execute => "execute",
            Action::Cancel => "cancel",
            Action::Prev => "prev",
            Action::Next => "next",
            Action::Complete => "complete",
            Action::Unknown(other) => other,
        }
    }

    fn from_name(name: &str) -> Self {
        match name {
            "execute" => Action::Execute,
            "cancel" => Action::Cancel,
            "prev" => Action::Prev,
            "next" => Action::Next,
            "complete" => Action::Complete,
            other => Action::Unknown(other.to_owned()),
        }
    }
}

/// Where a command session stands (§4.6, `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Waiting for the requester.
    Executing,
    /// Done.
    Completed,
    /// Abandoned.
    Canceled,
}

impl Status {
    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Executing => "executing",
            Status::Completed => "completed",
            Status::Canceled => "canceled",
        }
    }
}

/// The kind of a `<note/>` (§4.6: `info` when absent).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteType {
    /// Information.
    Info,
    /// A warning.
    Warn,
    /// An error.
    Error,
}

/// A `<command/>` from the requester.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandRequest {
    /// The command.
    pub node: String,
    /// The session it continues, if any.
    pub sessionid: Option<String>,
    /// What to do (absent: execute).
    pub action: Action,
    /// The data form it carries (a submission or a cancel).
    pub form: Option<DataForm>,
}

impl TryFrom<&Element> for CommandRequest {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "command", NS_COMMANDS)?;
        let node = required_attr(el, "node")?.to_owned();
        let form = match el.child("x", ns::DATA_FORMS) {
            Some(x) => Some(DataForm::try_from(x)?),
            None => None,
        };
        Ok(CommandRequest {
            node,
            sessionid: el.attr("sessionid").map(str::to_owned),
            action: el.attr("action").map_or(Action::Execute, Action::from_name),
            form,
        })
    }
}

impl CommandRequest {
    /// The `<command/>` element (for tests and clients).
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("command", NS_COMMANDS)
            .with_attr("node", self.node.as_str())
            .with_attr("action", self.action.as_str());
        if let Some(id) = &self.sessionid {
            el.set_attr("sessionid", id.as_str());
        }
        if let Some(form) = &self.form {
            el.push_child(form.to_element());
        }
        el
    }
}

/// A `<command/>` answered by the responder.
#[derive(Clone, Debug, PartialEq)]
pub struct CommandResponse {
    /// The command.
    pub node: String,
    /// The session.
    pub sessionid: String,
    /// Where it stands.
    pub status: Status,
    /// While executing: the actions allowed next and the default one (§3.4).
    pub actions: Vec<Action>,
    /// Notes for the requester.
    pub notes: Vec<(NoteType, String)>,
    /// The form to fill in, or the result.
    pub form: Option<DataForm>,
}

impl CommandResponse {
    /// A response without actions, notes or form.
    pub fn new(node: impl Into<String>, sessionid: impl Into<String>, status: Status) -> Self {
        CommandResponse {
            node: node.into(),
            sessionid: sessionid.into(),
            status,
            actions: Vec::new(),
            notes: Vec::new(),
            form: None,
        }
    }

    /// The element: `<actions/>` (its `execute` naming the first action, the default),
    /// then notes, then the form.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("command", NS_COMMANDS)
            .with_attr("node", self.node.as_str())
            .with_attr("sessionid", self.sessionid.as_str())
            .with_attr("status", self.status.as_str());
        if let Some(default) = self.actions.first() {
            let mut actions =
                Element::new("actions", NS_COMMANDS).with_attr("execute", default.as_str());
            for a in &self.actions {
                actions.push_child(Element::new(a.as_str(), NS_COMMANDS));
            }
            el.push_child(actions);
        }
        for (kind, text) in &self.notes {
            let kind = match kind {
                NoteType::Info => "info",
                NoteType::Warn => "warn",
                NoteType::Error => "error",
            };
            el.push_child(
                Element::new("note", NS_COMMANDS)
                    .with_attr("type", kind)
                    .with_text(text.as_str()),
            );
        }
        if let Some(form) = &self.form {
            el.push_child(form.to_element());
        }
        el
    }
}

/// A specific error condition of §4.6 (`malformed-action`, `bad-action`, `bad-payload`,
/// `bad-sessionid`, `session-expired`), to go beside the general one.
pub fn specific_condition(name: &'static str) -> Element {
    Element::new(name, NS_COMMANDS)
}

into_element!(CommandRequest, CommandResponse);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_form::FormType;
    use crate::test_util::element;

    #[test]
    fn a_request_without_action_executes() {
        let el = element(
            "<command xmlns='http://jabber.org/protocol/commands' node='n'><unknown/></command>",
        );
        let r = CommandRequest::try_from(&el).unwrap();
        assert_eq!(r.node, "n");
        assert_eq!(r.action, Action::Execute);
        assert_eq!(r.sessionid, None);
        assert_eq!(r.form, None);
    }

    #[test]
    fn an_unknown_action_is_kept_for_the_module_to_refuse() {
        let el = element(
            "<command xmlns='http://jabber.org/protocol/commands' node='n' sessionid='s' \
             action='jump'/>",
        );
        let r = CommandRequest::try_from(&el).unwrap();
        assert_eq!(r.action, Action::Unknown("jump".into()));
        assert_eq!(r.sessionid.as_deref(), Some("s"));
    }

    #[test]
    fn a_missing_node_is_invalid_and_another_element_a_mismatch() {
        let el = element("<command xmlns='http://jabber.org/protocol/commands'/>");
        assert!(matches!(
            CommandRequest::try_from(&el),
            Err(PayloadError::Invalid(_))
        ));
        let el = element("<query xmlns='http://jabber.org/protocol/commands' node='n'/>");
        assert!(CommandRequest::try_from(&el).unwrap_err().is_mismatch());
    }

    #[test]
    fn a_request_round_trips_with_its_form() {
        let r = CommandRequest {
            node: "n".into(),
            sessionid: Some("s".into()),
            action: Action::Complete,
            form: Some(DataForm::new(FormType::Submit)),
        };
        assert_eq!(CommandRequest::try_from(&r.to_element()).unwrap(), r);
    }

    #[test]
    fn a_response_is_written_exactly() {
        let mut r = CommandResponse::new("n", "s", Status::Executing);
        r.actions = vec![Action::Complete];
        r.notes.push((NoteType::Info, "hi".into()));
        let xml = String::from_utf8(r.to_element().to_bytes()).unwrap();
        assert_eq!(
            xml,
            "<command xmlns=\"http://jabber.org/protocol/commands\" node=\"n\" sessionid=\"s\" \
             status=\"executing\"><actions execute=\"complete\"><complete/></actions>\
             <note type=\"info\">hi</note></command>"
        );
    }
}
