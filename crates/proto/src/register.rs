//! XEP-0077: In-Band Registration — the `jabber:iq:register` query.
//!
//! One `<query/>` serves every use case (§3): the fields a host asks for (a get's result,
//! empty elements such as `<username/>`), what an entity fills in (a set), the account on
//! file (`<registered/>`), a password change (§3.3: `<username/>` and `<password/>` from an
//! authenticated entity) and a cancellation (§3.2: `<remove/>`, which must be the only
//! child).
//!
//! Which of these a query is follows from who sends it and the iq type, so one type reads
//! them all, and the server decides. An empty `<password/>` reads as `Some("")`: §3.1 and
//! §3.3 treat it as missing information, not as a password. Fields of the schema other than
//! those the server asks for (`<email/>`, `<nick/>` …) and data forms are ignored (lenient
//! in); only a `<remove/>` beside them is remembered, because §3.2 makes that a bad request.

use xmppd_xml::Element;

use crate::payload::{PayloadError, into_element};

/// `jabber:iq:register`.
pub const NS_REGISTER: &str = "jabber:iq:register";
/// The stream feature `<register/>` (§8).
pub const NS_FEATURE: &str = "http://jabber.org/features/iq-register";

/// A `<query xmlns='jabber:iq:register'/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterQuery {
    /// `<instructions/>` for a human.
    pub instructions: Option<String>,
    /// `<registered/>`: the entity is registered already (a get's result).
    pub registered: bool,
    /// `<username/>`: `Some("")` when the element is empty (a field asked for).
    pub username: Option<String>,
    /// `<password/>`: `Some("")` when the element is empty.
    pub password: Option<String>,
    /// `<remove/>`: cancel the registration (§3.2).
    pub remove: bool,
    /// Children other than `<remove/>` in the query (§3.2: `<remove/>` must be alone).
    pub others: usize,
}

impl RegisterQuery {
    /// The fields a host asks an unregistered entity for: `<instructions/>`, `<username/>`,
    /// `<password/>` (§3.1, Example 2).
    pub fn form(instructions: impl Into<String>) -> Self {
        RegisterQuery {
            instructions: Some(instructions.into()),
            username: Some(String::new()),
            password: Some(String::new()),
            ..RegisterQuery::default()
        }
    }

    /// Whether the query asks for nothing but a cancellation (§3.2).
    pub fn is_lone_remove(&self) -> bool {
        self.remove && self.others == 0
    }

    /// The `<query/>`, children in the schema's order.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("query", NS_REGISTER);
        if self.registered {
            el.push_child(Element::new("registered", NS_REGISTER));
        }
        if let Some(text) = &self.instructions {
            el.push_child(Element::new("instructions", NS_REGISTER).with_text(text.as_str()));
        }
        for (name, value) in [("username", &self.username), ("password", &self.password)] {
            if let Some(value) = value {
                let mut child = Element::new(name, NS_REGISTER);
                if !value.is_empty() {
                    child.push_text(value.as_str());
                }
                el.push_child(child);
            }
        }
        if self.remove {
            el.push_child(Element::new("remove", NS_REGISTER));
        }
        el
    }
}

impl TryFrom<&Element> for RegisterQuery {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("query", NS_REGISTER) {
            return Err(PayloadError::Mismatch);
        }
        let mut query = RegisterQuery::default();
        for child in el.children() {
            if child.ns() != NS_REGISTER {
                query.others += 1;
                continue;
            }
            let once = |seen: bool| {
                if seen {
                    Err(PayloadError::invalid(format!(
                        "<{}/> appears twice in the query",
                        child.name()
                    )))
                } else {
                    Ok(())
                }
            };
            match child.name() {
                "remove" => {
                    once(query.remove)?;
                    query.remove = true;
                    continue;
                }
                "username" => {
                    once(query.username.is_some())?;
                    query.username = Some(child.text());
                }
                "password" => {
                    once(query.password.is_some())?;
                    query.password = Some(child.text());
                }
                "instructions" => query.instructions = Some(child.text()),
                "registered" => query.registered = true,
                _ => {}
            }
            query.others += 1;
        }
        Ok(query)
    }
}

into_element!(RegisterQuery);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    #[test]
    fn reads_a_registration_with_fields_it_does_not_ask_for() {
        // §3.1 Example 3.
        let q = RegisterQuery::try_from(&element(
            "<query xmlns='jabber:iq:register'><username>bill</username>\
             <password>Calliope</password><email>bard@shakespeare.lit</email></query>",
        ))
        .unwrap();
        assert_eq!(q.username.as_deref(), Some("bill"));
        assert_eq!(q.password.as_deref(), Some("Calliope"));
        assert!(!q.remove && !q.registered);
    }

    #[test]
    fn an_empty_password_is_present_but_empty() {
        let q = RegisterQuery::try_from(&element(
            "<query xmlns='jabber:iq:register'><username>bill</username><password/></query>",
        ))
        .unwrap();
        assert_eq!(q.password.as_deref(), Some(""));
        let q = RegisterQuery::try_from(&element(
            "<query xmlns='jabber:iq:register'><username>bill</username></query>",
        ))
        .unwrap();
        assert_eq!(q.password, None);
    }

    #[test]
    fn remove_must_be_alone() {
        let q = RegisterQuery::try_from(&element(
            "<query xmlns='jabber:iq:register'><remove/></query>",
        ))
        .unwrap();
        assert!(q.is_lone_remove());
        let q = RegisterQuery::try_from(&element(
            "<query xmlns='jabber:iq:register'><remove/><username>bill</username></query>",
        ))
        .unwrap();
        assert!(q.remove && !q.is_lone_remove());
        let q = RegisterQuery::try_from(&element(
            "<query xmlns='jabber:iq:register'><remove/><x xmlns='jabber:x:data' type='submit'/></query>",
        ))
        .unwrap();
        assert!(!q.is_lone_remove());
    }

    #[test]
    fn serialises_the_form_exactly_and_round_trips() {
        let form = RegisterQuery::form("Choose a username and password.");
        assert_eq!(
            form.to_element().to_string(),
            "<query xmlns=\"jabber:iq:register\"><instructions>Choose a username and \
             password.</instructions><username/><password/></query>"
        );
        assert_eq!(RegisterQuery::try_from(&form.to_element()), {
            let mut expected = form.clone();
            expected.others = 3;
            Ok(expected)
        });
        let on_file = RegisterQuery {
            registered: true,
            username: Some("juliet".into()),
            ..RegisterQuery::default()
        };
        assert_eq!(
            Element::from(&on_file).to_string(),
            "<query xmlns=\"jabber:iq:register\"><registered/><username>juliet</username></query>"
        );
    }

    #[test]
    fn unknown_children_are_ignored_and_duplicates_refused() {
        let q = RegisterQuery::try_from(&element(
            "<query xmlns='jabber:iq:register'><nick>b</nick><key>x</key>\
             <username>bill</username><password>p</password></query>",
        ))
        .unwrap();
        assert_eq!(q.username.as_deref(), Some("bill"));
        let twice = RegisterQuery::try_from(&element(
            "<query xmlns='jabber:iq:register'><username>a</username><username>b</username></query>",
        ));
        assert!(matches!(twice, Err(PayloadError::Invalid(t)) if t.contains("twice")));
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        let ping = element("<ping xmlns='urn:xmpp:ping'/>");
        assert_eq!(RegisterQuery::try_from(&ping), Err(PayloadError::Mismatch));
        let other = element("<query xmlns='jabber:iq:roster'/>");
        assert_eq!(RegisterQuery::try_from(&other), Err(PayloadError::Mismatch));
    }
}
