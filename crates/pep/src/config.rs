//! Node configuration (XEP-0060 §8.2, `pubsub#node_config`) and publish-options
//! preconditions (XEP-0060 §7.1.5, XEP-0223).
//!
//! The fields this service knows are the ones it acts on; any other field in a configuration
//! or a precondition is refused (`bad-request` + `invalid-options`), as §7.1.5 requires of
//! preconditions ("MUST reject the publication upon encountering unknown fields"), so a client
//! never believes a setting took effect that did not. A precondition is met when the node's
//! value equals the requested one after normalisation (`max_items` `max` is the server's
//! limit, booleans `1`/`true`), which is what lets OMEMO's `pubsub#max_items=max` match a node
//! created by the same request.

use serde::{Deserialize, Serialize};
use xmppd_proto::data_form::{DataForm, FORM_TYPE, Field, FieldType, FormType};
use xmppd_proto::payload::parse_bool;
use xmppd_proto::pubsub::{NS_NODE_CONFIG, PubSubCondition};
use xmppd_proto::{DefinedCondition, StanzaError};

/// Who may retrieve items and receive notifications (XEP-0060 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    /// Anyone.
    Open,
    /// Contacts subscribed to the owner's presence (the PEP default, XEP-0163 §5).
    Presence,
    /// Such contacts in one of the allowed roster groups.
    Roster,
    /// Only entities on the whitelist; with no affiliations here, only the owner.
    Whitelist,
}

impl AccessModel {
    /// The form value.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "open" => Some(AccessModel::Open),
            "presence" => Some(AccessModel::Presence),
            "roster" => Some(AccessModel::Roster),
            "whitelist" => Some(AccessModel::Whitelist),
            _ => None,
        }
    }
}

/// When the last item goes to a subscriber (XEP-0060 §12.9; XEP-0163 §4.3.4 default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendLast {
    /// Never.
    Never,
    /// When a subscription is made.
    OnSub,
    /// When a subscription is made and when a subscriber's resource becomes available.
    OnSubAndPresence,
}

impl SendLast {
    fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value {
            "never" => Some(SendLast::Never),
            "on_sub" => Some(SendLast::OnSub),
            "on_sub_and_presence" => Some(SendLast::OnSubAndPresence),
            _ => None,
        }
    }
}

/// Items a node keeps: a number, or `max` (the server's limit, XEP-0060 §8.2 "integer-or-max").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaxItems {
    /// At most this many.
    Count(u32),
    /// As many as the server allows.
    Max,
}

impl MaxItems {
    /// The number of items kept, given the server's limit.
    pub fn limit(self, server_max: u32) -> u32 {
        match self {
            MaxItems::Count(n) => n.min(server_max),
            MaxItems::Max => server_max,
        }
    }

    fn to_value(self) -> String {
        match self {
            MaxItems::Count(n) => n.to_string(),
            MaxItems::Max => "max".to_owned(),
        }
    }

    fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "max" => Some(MaxItems::Max),
            n => n.parse().ok().map(MaxItems::Count),
        }
    }
}

/// A node's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// `pubsub#access_model`.
    pub access_model: AccessModel,
    /// `pubsub#roster_groups_allowed`, for [`AccessModel::Roster`].
    pub roster_groups_allowed: Vec<String>,
    /// `pubsub#max_items`.
    pub max_items: MaxItems,
    /// `pubsub#persist_items`: without it, only the last item is kept (to send it on
    /// presence, XEP-0163 §4.3.4).
    pub persist_items: bool,
    /// `pubsub#send_last_published_item`.
    pub send_last: SendLast,
    /// `pubsub#notify_retract`.
    pub notify_retract: bool,
    /// `pubsub#deliver_payloads`: notifications carry the item (else only its id).
    pub deliver_payloads: bool,
}

impl NodeConfig {
    /// The configuration of a node created without options: XEP-0163 §5's defaults, with the
    /// operator's access model and item count.
    pub fn default_with(access_model: AccessModel, max_items: MaxItems) -> Self {
        NodeConfig {
            access_model,
            roster_groups_allowed: Vec::new(),
            max_items,
            persist_items: true,
            send_last: SendLast::OnSubAndPresence,
            notify_retract: true,
            deliver_payloads: true,
        }
    }

    /// Applies the fields of a submitted configuration or publish-options form; an unknown
    /// field or a value this service does not accept is `invalid-options`.
    pub fn apply(&mut self, form: &DataForm) -> Result<(), StanzaError> {
        for field in form.fields.iter() {
            let Some(var) = field.var.as_deref() else {
                continue;
            };
            self.set(var, field)?;
        }
        Ok(())
    }

    fn set(&mut self, var: &str, field: &Field) -> Result<(), StanzaError> {
        let value = field.value().unwrap_or("");
        let invalid = || invalid_options(format!("'{value}' is not a valid {var}"));
        let boolean = || parse_bool(value).ok_or_else(invalid);
        match var {
            FORM_TYPE => {}
            "pubsub#access_model" => {
                self.access_model = AccessModel::parse(value).ok_or_else(invalid)?;
            }
            "pubsub#roster_groups_allowed" => self.roster_groups_allowed = field.values.clone(),
            "pubsub#max_items" => self.max_items = MaxItems::parse(value).ok_or_else(invalid)?,
            "pubsub#persist_items" => self.persist_items = boolean()?,
            "pubsub#send_last_published_item" => {
                self.send_last = SendLast::parse(value).ok_or_else(invalid)?;
            }
            "pubsub#notify_retract" => self.notify_retract = boolean()?,
            "pubsub#deliver_payloads" => self.deliver_payloads = boolean()?,
            // XEP-0060 §8.2 fields whose only value here is the one we act on.
            "pubsub#deliver_notifications" | "pubsub#presence_based_delivery" if boolean()? => {}
            other => return Err(invalid_options(format!("unsupported option {other}"))),
        }
        Ok(())
    }

    /// Applies a configuration another server exported (XEP-0227 §pep-config): the fields
    /// this service knows are taken, and every other field — another server's extensions,
    /// titles, descriptions, `pubsub#publish_model` (only the owner publishes here) — is left
    /// out and named in the result, since the XEP asks importers to ignore options they do not
    /// recognise rather than refuse the node. A known field with a value this service does
    /// not take keeps the default and is named too, except the access model: an unknown one
    /// (`authorize`, a custom model) becomes `whitelist`, the owner alone, because the
    /// access model protects the node's contents and a node must never come over more
    /// readable than it was (the XEP's exception for fields "critical to protect the node's
    /// security"). A field without a value says nothing and changes nothing: Prosody 0.12
    /// exports every field of its form, empty where the node keeps its default.
    pub fn import(&mut self, form: &DataForm) -> Vec<String> {
        let mut ignored = Vec::new();
        for field in &form.fields {
            let Some(var) = field.var.as_deref() else {
                continue;
            };
            if field.values.iter().all(String::is_empty) {
                continue;
            }
            if self.set(var, field).is_ok() {
                continue;
            }
            if var == "pubsub#access_model" {
                self.access_model = AccessModel::Whitelist;
            }
            ignored.push(var.to_owned());
        }
        ignored
    }

    /// Whether every precondition of a publish-options form holds for this configuration
    /// (XEP-0060 §7.1.5); an unknown field is `invalid-options`.
    pub fn satisfies(&self, options: &DataForm) -> Result<bool, StanzaError> {
        let mut wanted = self.clone();
        wanted.apply(options)?;
        Ok(wanted == *self)
    }

    /// The configuration as a form: `form` to ask for changes (§8.2.1), or `result`.
    pub fn to_form(&self, kind: FormType) -> DataForm {
        let single =
            |var: &str, kind: FieldType, value: &str| Field::new(var, kind).with_value(value);
        let boolean =
            |var: &str, v: bool| single(var, FieldType::Boolean, if v { "1" } else { "0" });
        let mut groups = Field::new("pubsub#roster_groups_allowed", FieldType::ListMulti);
        groups.values = self.roster_groups_allowed.clone();
        DataForm::new(kind)
            .with_field(Field::form_type(NS_NODE_CONFIG))
            .with_field(single(
                "pubsub#access_model",
                FieldType::ListSingle,
                self.access_model.as_str(),
            ))
            .with_field(groups)
            .with_field(single(
                "pubsub#max_items",
                FieldType::TextSingle,
                &self.max_items.to_value(),
            ))
            .with_field(boolean("pubsub#persist_items", self.persist_items))
            .with_field(single(
                "pubsub#send_last_published_item",
                FieldType::ListSingle,
                self.send_last.as_str(),
            ))
            .with_field(boolean("pubsub#notify_retract", self.notify_retract))
            .with_field(boolean("pubsub#deliver_payloads", self.deliver_payloads))
            .with_field(boolean("pubsub#deliver_notifications", true))
            .with_field(boolean("pubsub#presence_based_delivery", true))
    }
}

/// `bad-request` + `invalid-options` with a text.
pub fn invalid_options(text: String) -> StanzaError {
    PubSubCondition::InvalidOptions
        .error(DefinedCondition::BadRequest)
        .with_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(fields: &[(&str, &str)]) -> DataForm {
        let mut form = DataForm::new(FormType::Submit);
        for (var, value) in fields {
            let mut f = Field::new(*var, FieldType::TextSingle).with_value(*value);
            f.field_type = None;
            form.fields.push(f);
        }
        form
    }

    fn default() -> NodeConfig {
        NodeConfig::default_with(AccessModel::Presence, MaxItems::Count(1))
    }

    #[test]
    fn options_become_the_configuration_of_a_new_node() {
        let mut config = default();
        config
            .apply(&options(&[
                ("pubsub#access_model", "open"),
                ("pubsub#max_items", "max"),
            ]))
            .unwrap();
        assert_eq!(config.access_model, AccessModel::Open);
        assert_eq!(config.max_items, MaxItems::Max);
        assert_eq!(config.max_items.limit(100), 100);
    }

    #[test]
    fn preconditions_compare_normalised_values() {
        let mut config = default();
        config.access_model = AccessModel::Open;
        let open = options(&[
            ("pubsub#access_model", "open"),
            ("pubsub#persist_items", "true"),
        ]);
        assert_eq!(config.satisfies(&open), Ok(true));
        let presence = options(&[("pubsub#access_model", "presence")]);
        assert_eq!(config.satisfies(&presence), Ok(false));
        let max = options(&[("pubsub#max_items", "max")]);
        assert_eq!(config.satisfies(&max), Ok(false));
    }

    #[test]
    fn unknown_fields_and_bad_values_are_invalid_options() {
        for form in [
            options(&[("pubsub#frobnicate", "1")]),
            options(&[("pubsub#access_model", "authorize")]),
            options(&[("pubsub#max_items", "many")]),
            options(&[("pubsub#deliver_notifications", "0")]),
        ] {
            let err = default().satisfies(&form).unwrap_err();
            assert_eq!(err.condition, DefinedCondition::BadRequest);
            assert_eq!(
                err.app.map(|a| a.name().to_owned()).as_deref(),
                Some("invalid-options")
            );
        }
    }

    #[test]
    fn an_imported_configuration_keeps_what_is_known_and_names_the_rest() {
        let mut config = default();
        let ignored = config.import(&options(&[
            ("FORM_TYPE", "http://jabber.org/protocol/pubsub#node_config"),
            ("pubsub#title", "My nick"),
            ("pubsub#max_items", "10"),
            ("pubsub#publish_model", "publishers"),
            ("pubsub#deliver_notifications", "0"),
            ("pubsub#persist_items", "true"),
        ]));
        assert_eq!(
            ignored,
            [
                "pubsub#title",
                "pubsub#publish_model",
                "pubsub#deliver_notifications"
            ]
        );
        assert_eq!(config.max_items, MaxItems::Count(10));
        assert_eq!(config.access_model, AccessModel::Presence);
        // An access model this service lacks never makes a node more readable.
        // Empty fields (as Prosody exports a node with its defaults) change nothing.
        let mut empty = options(&[("pubsub#access_model", ""), ("pubsub#title", "")]);
        for field in &mut empty.fields {
            field.values.clear();
        }
        assert!(config.import(&empty).is_empty());
        assert_eq!(config.access_model, AccessModel::Presence);
        let ignored = config.import(&options(&[("pubsub#access_model", "authorize")]));
        assert_eq!(ignored, ["pubsub#access_model"]);
        assert_eq!(config.access_model, AccessModel::Whitelist);
    }

    #[test]
    fn the_form_reads_back_as_the_same_configuration() {
        let mut config = default();
        config.access_model = AccessModel::Roster;
        config.roster_groups_allowed = vec!["friends".into()];
        config.notify_retract = false;
        let mut form = config.to_form(FormType::Submit);
        form.kind = FormType::Submit;
        let mut read = default();
        read.apply(&form).unwrap();
        assert_eq!(read, config);
    }
}
