//! XEP-0157: Contact Addresses for XMPP Services.
//!
//! The addresses configured in `[modules.contact_info]` are published in the server's
//! disco#info as a XEP-0128 form with the `FORM_TYPE` `http://jabber.org/network/serverinfo`,
//! one field per role (`abuse-addresses`, `admin-addresses` …, §3 and the Registrar's list in
//! §7.1). Being part of the disco#info answer, they are part of the server's entity
//! capabilities hash (XEP-0115 §5.4 hashes extended forms).
//!
//! §3: values of `status-addresses` MUST and the others SHOULD be URIs; we require all of them
//! to be absolute URIs (`mailto:`, `xmpp:`, `https:` …) when the configuration is read, since
//! a bare address such as `abuse@example.org` is useless to a client that must decide how
//! to reach it. Roles without addresses are left out of the form, and without any address
//! there is no form.

use std::fmt;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use xmppd_core::{Module, Reconfigure, Registry};
use xmppd_proto::data_form::{DataForm, Field, FieldType, FormType};

/// The `FORM_TYPE` of server information (XEP-0128, XEP-0157).
pub const NS_SERVERINFO: &str = "http://jabber.org/network/serverinfo";

/// An absolute URI (with its scheme).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactUri(pub String);

impl<'de> Deserialize<'de> for ContactUri {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Uri;
        impl Visitor<'_> for Uri {
            type Value = ContactUri;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URI such as \"mailto:abuse@example.org\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ContactUri, E> {
                match url::Url::parse(v) {
                    Ok(_) if v.trim() == v => Ok(ContactUri(v.to_owned())),
                    _ => Err(E::custom(format!(
                        "'{v}' is not a URI; write it with its scheme, e.g. \
                         mailto:admin@example.org, xmpp:admin@example.org or \
                         https://example.org/contact"
                    ))),
                }
            }
        }
        d.deserialize_str(Uri)
    }
}

/// `[modules.contact_info]`: the addresses of each role (none by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactInfoSettings {
    /// Reports of abusive traffic.
    pub abuse: Vec<ContactUri>,
    /// The service administrators.
    pub admin: Vec<ContactUri>,
    /// Customer feedback.
    pub feedback: Vec<ContactUri>,
    /// Sales and marketing.
    pub sales: Vec<ContactUri>,
    /// Security concerns.
    pub security: Vec<ContactUri>,
    /// Service status.
    pub status: Vec<ContactUri>,
    /// Customer support.
    pub support: Vec<ContactUri>,
}

impl ContactInfoSettings {
    /// The serverinfo form, `None` without any address.
    pub fn form(&self) -> Option<DataForm> {
        let roles = [
            ("abuse-addresses", &self.abuse),
            ("admin-addresses", &self.admin),
            ("feedback-addresses", &self.feedback),
            ("sales-addresses", &self.sales),
            ("security-addresses", &self.security),
            ("status-addresses", &self.status),
            ("support-addresses", &self.support),
        ];
        let mut form = DataForm::new(FormType::Result).with_field(Field::form_type(NS_SERVERINFO));
        for (var, uris) in roles {
            if uris.is_empty() {
                continue;
            }
            let mut field = Field::new(var, FieldType::ListMulti);
            // A result's fields need no type (XEP-0004 §3.2), and XEP-0157's example has none.
            field.field_type = None;
            field.values = uris.iter().map(|u| u.0.clone()).collect();
            form.fields.push(field);
        }
        (form.fields.len() > 1).then_some(form)
    }
}

/// The contact addresses module.
#[derive(Debug)]
pub struct ContactInfo {
    form: Option<DataForm>,
    /// The addresses registered at startup, to tell a reload which of them it cannot change.
    running: ContactInfoSettings,
}

impl ContactInfo {
    /// The module publishing these addresses.
    pub fn new(settings: &ContactInfoSettings) -> Self {
        ContactInfo {
            form: settings.form(),
            running: settings.clone(),
        }
    }
}

/// The form is part of the server's disco#info, which the registry fixes at startup: every
/// changed address waits for the next restart.
impl Reconfigure for ContactInfo {
    type Settings = ContactInfoSettings;

    fn check(&self, new: &mut ContactInfoSettings) -> Result<Vec<&'static str>, String> {
        let (old, new) = (&self.running, &*new);
        let roles = [
            ("abuse", &old.abuse, &new.abuse),
            ("admin", &old.admin, &new.admin),
            ("feedback", &old.feedback, &new.feedback),
            ("sales", &old.sales, &new.sales),
            ("security", &old.security, &new.security),
            ("status", &old.status, &new.status),
            ("support", &old.support, &new.support),
        ];
        Ok(roles
            .into_iter()
            .filter(|(_, old, new)| old != new)
            .map(|(key, _, _)| key)
            .collect())
    }

    fn reconfigure(&self, _new: ContactInfoSettings) {}
}

impl Module for ContactInfo {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        if let Some(form) = &self.form {
            registry.server_form(form.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<ContactInfoSettings, String> {
        #[derive(Deserialize)]
        struct Doc {
            contact_info: ContactInfoSettings,
        }
        toml::from_str::<Doc>(&format!("[contact_info]\n{text}"))
            .map(|d| d.contact_info)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn builds_the_serverinfo_form_of_the_roles_given() {
        let s = settings(
            "abuse = [\"mailto:abuse@shakespeare.lit\", \"xmpp:abuse@shakespeare.lit\"]\n\
             status = [\"https://status.shakespeare.lit\"]",
        )
        .unwrap();
        let form = s.form().unwrap();
        assert_eq!(form.form_type(), Some(NS_SERVERINFO));
        assert_eq!(
            form.values("abuse-addresses"),
            ["mailto:abuse@shakespeare.lit", "xmpp:abuse@shakespeare.lit"]
        );
        assert_eq!(
            form.values("status-addresses"),
            ["https://status.shakespeare.lit"]
        );
        assert!(form.field("admin-addresses").is_none());
        assert_eq!(
            form.to_element().to_string(),
            "<x xmlns=\"jabber:x:data\" type=\"result\"><field var=\"FORM_TYPE\" \
             type=\"hidden\"><value>http://jabber.org/network/serverinfo</value></field>\
             <field var=\"abuse-addresses\"><value>mailto:abuse@shakespeare.lit</value>\
             <value>xmpp:abuse@shakespeare.lit</value></field><field var=\"status-addresses\">\
             <value>https://status.shakespeare.lit</value></field></x>"
        );
        assert_eq!(settings("").unwrap().form(), None);
    }

    #[test]
    fn a_reload_names_the_changed_roles_for_a_restart() {
        let running = ContactInfo::new(&settings("abuse = [\"mailto:a@b.lit\"]").unwrap());
        let mut same = settings("abuse = [\"mailto:a@b.lit\"]").unwrap();
        assert_eq!(running.check(&mut same), Ok(Vec::new()));
        let mut changed = settings("admin = [\"mailto:c@b.lit\"]").unwrap();
        assert_eq!(running.check(&mut changed), Ok(vec!["abuse", "admin"]));
    }

    #[test]
    fn addresses_must_be_uris() {
        let e = settings("admin = [\"xmpp:admin@example.org\"]\nabuse = [\"abuse@example.org\"]")
            .unwrap_err();
        assert!(
            e.contains("line 3") && e.contains("'abuse@example.org' is not a URI"),
            "{e}"
        );
        let e = settings("abuse = \"mailto:abuse@example.org\"").unwrap_err();
        assert!(e.contains("a sequence"), "{e}");
        let e = settings("phone = [\"tel:+1\"]").unwrap_err();
        assert!(e.contains("unknown field `phone`"), "{e}");
    }
}
