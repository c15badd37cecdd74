//! XEP-0004: Data Forms.
//!
//! `<x xmlns='jabber:x:data' type='form|submit|cancel|result'>` with an optional title,
//! instructions, fields, and for results a `<reported/>` header with `<item/>` rows (§3.4).
//!
//! Points where the XEP is subtle:
//! - A field's `type` may be absent: in a form that means `text-single`, in a submission or
//!   result the type is implied by context (§3.2). We keep "absent" as `None`
//!   ([`Field::kind`] gives the effective type). An unknown type is read as `text-single`, as
//!   §3.3 requires of a receiver.
//! - `var` is required for every field except `fixed` ones (§3.2), and for the fields of
//!   `<reported/>` and `<item/>`, which are matched by it.
//! - A boolean is `1`/`true` or `0`/`false`, and a boolean field without a value is false
//!   (§3.3).
//! - The form's namespace is the value of a `FORM_TYPE` field (XEP-0068): it counts only when
//!   hidden in forms and results, but in a submission the type may be left out (XEP-0068 §5).
//! - Older senders put `<item/>` before `<reported/>` or mix them with top-level fields
//!   (§3.4 note); we accept any order and write `<reported/>` first.

use jid::Jid;
use xmppd_xml::Element;

use crate::ns;
use crate::payload::{PayloadError, expect, into_element, parse_bool, required_attr};

/// The var of the field naming a form's namespace (XEP-0068).
pub const FORM_TYPE: &str = "FORM_TYPE";

/// The `type` of a form (§3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FormType {
    /// The processing entity asks for the form to be completed.
    Form,
    /// The submitting entity sends its data.
    Submit,
    /// The submitting entity gives up.
    Cancel,
    /// The processing entity returns data.
    Result,
}

impl FormType {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            FormType::Form => "form",
            FormType::Submit => "submit",
            FormType::Cancel => "cancel",
            FormType::Result => "result",
        }
    }

    /// The type with this attribute value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "form" => Some(FormType::Form),
            "submit" => Some(FormType::Submit),
            "cancel" => Some(FormType::Cancel),
            "result" => Some(FormType::Result),
            _ => None,
        }
    }
}

macro_rules! field_types {
    ($($variant:ident => $name:literal,)*) => {
        /// The `type` of a field (§3.3).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum FieldType {
            $(
                #[doc = concat!("`", $name, "`")]
                $variant,
            )*
        }

        impl FieldType {
            /// The attribute value.
            pub fn as_str(self) -> &'static str {
                match self { $(FieldType::$variant => $name,)* }
            }

            /// The type with this attribute value.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(FieldType::$variant),)* _ => None }
            }
        }
    };
}

field_types! {
    Boolean => "boolean",
    Fixed => "fixed",
    Hidden => "hidden",
    JidMulti => "jid-multi",
    JidSingle => "jid-single",
    ListMulti => "list-multi",
    ListSingle => "list-single",
    TextMulti => "text-multi",
    TextPrivate => "text-private",
    TextSingle => "text-single",
}

/// One `<option/>` of a list field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldOption {
    /// Its human-readable name.
    pub label: Option<String>,
    /// The value chosen with it.
    pub value: String,
}

/// A `<field/>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// The variable name (absent only on `fixed` fields).
    pub var: Option<String>,
    /// The `type` attribute as sent; `None` when absent (see [`Field::kind`]).
    pub field_type: Option<FieldType>,
    /// The human-readable name.
    pub label: Option<String>,
    /// The `<desc/>`: a longer human-readable description.
    pub desc: Option<String>,
    /// `<required/>`: the form is not valid without this field.
    pub required: bool,
    /// The `<value/>`s, in order.
    pub values: Vec<String>,
    /// The `<option/>`s of a list field.
    pub options: Vec<FieldOption>,
}

impl Field {
    /// A field `var` of `field_type` with no value.
    pub fn new(var: impl Into<String>, field_type: FieldType) -> Self {
        Field {
            var: Some(var.into()),
            field_type: Some(field_type),
            label: None,
            desc: None,
            required: false,
            values: Vec::new(),
            options: Vec::new(),
        }
    }

    /// The hidden `FORM_TYPE` field giving a form's namespace (XEP-0068).
    pub fn form_type(namespace: impl Into<String>) -> Self {
        Field::new(FORM_TYPE, FieldType::Hidden).with_value(namespace)
    }

    /// Adds a value.
    pub fn with_value(mut self, value: impl Into<String>) -> Self {
        self.values.push(value.into());
        self
    }

    /// Sets the label.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// The effective type: as sent, or `text-single` when absent (§3.2).
    pub fn kind(&self) -> FieldType {
        self.field_type.unwrap_or(FieldType::TextSingle)
    }

    /// The value of a single-valued field: the first `<value/>` (a second one breaks §3.2 and
    /// is ignored).
    pub fn value(&self) -> Option<&str> {
        self.values.first().map(String::as_str)
    }

    /// The value as a boolean (§3.3): `1`/`true`, `0`/`false`, and false when there is no
    /// value; anything else is invalid.
    pub fn bool(&self) -> Result<bool, PayloadError> {
        match self.value() {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| {
                PayloadError::invalid(format!(
                    "field '{}' must be a boolean, not '{v}'",
                    self.var.as_deref().unwrap_or_default()
                ))
            }),
        }
    }

    /// The values as JIDs, duplicates dropped as §3.3 requires for `jid-multi`.
    pub fn jids(&self) -> Result<Vec<Jid>, PayloadError> {
        let mut jids: Vec<Jid> = Vec::with_capacity(self.values.len());
        for v in &self.values {
            let jid = Jid::new(v.trim()).map_err(|e| {
                PayloadError::JidMalformed(format!(
                    "field '{}' holds '{v}', not a JID: {e}",
                    self.var.as_deref().unwrap_or_default()
                ))
            })?;
            if !jids.contains(&jid) {
                jids.push(jid);
            }
        }
        Ok(jids)
    }

    /// The `<field/>` element, children in the schema's order.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("field", ns::DATA_FORMS);
        if let Some(var) = &self.var {
            el.set_attr("var", var.as_str());
        }
        if let Some(t) = self.field_type {
            el.set_attr("type", t.as_str());
        }
        if let Some(label) = &self.label {
            el.set_attr("label", label.as_str());
        }
        if let Some(desc) = &self.desc {
            el.push_child(text_element("desc", desc));
        }
        if self.required {
            el.push_child(Element::new("required", ns::DATA_FORMS));
        }
        for v in &self.values {
            el.push_child(text_element("value", v));
        }
        for o in &self.options {
            let mut option = Element::new("option", ns::DATA_FORMS);
            if let Some(label) = &o.label {
                option.set_attr("label", label.as_str());
            }
            el.push_child(option.with_child(text_element("value", &o.value)));
        }
        el
    }
}

fn text_element(name: &str, text: &str) -> Element {
    Element::new(name, ns::DATA_FORMS).with_text(text)
}

fn child_text(el: &Element, name: &str) -> Option<String> {
    el.child(name, ns::DATA_FORMS).map(Element::text)
}

impl TryFrom<&Element> for Field {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "field", ns::DATA_FORMS)?;
        let field_type = el
            .attr("type")
            .map(|t| FieldType::from_name(t).unwrap_or(FieldType::TextSingle));
        let var = el.attr("var").map(str::to_owned);
        if var.is_none() && field_type != Some(FieldType::Fixed) {
            required_attr(el, "var")?;
        }
        let mut options = Vec::new();
        for option in el.children().filter(|c| c.is("option", ns::DATA_FORMS)) {
            let value = child_text(option, "value").ok_or_else(|| {
                PayloadError::invalid(format!(
                    "an <option/> of field '{}' has no <value/>",
                    var.as_deref().unwrap_or_default()
                ))
            })?;
            options.push(FieldOption {
                label: option.attr("label").map(str::to_owned),
                value,
            });
        }
        Ok(Field {
            var,
            field_type,
            label: el.attr("label").map(str::to_owned),
            desc: child_text(el, "desc"),
            required: el.has_child("required", ns::DATA_FORMS),
            values: el
                .children()
                .filter(|c| c.is("value", ns::DATA_FORMS))
                .map(Element::text)
                .collect(),
            options,
        })
    }
}

/// An `<x xmlns='jabber:x:data'/>` form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataForm {
    /// The form's `type` attribute (not its `FORM_TYPE`, see [`DataForm::form_type`]).
    pub kind: FormType,
    /// The `<title/>`.
    pub title: Option<String>,
    /// The `<instructions/>`, one per element.
    pub instructions: Vec<String>,
    /// The top-level fields, in order.
    pub fields: Vec<Field>,
    /// The `<reported/>` header of a multi-item result (§3.4).
    pub reported: Option<Vec<Field>>,
    /// The `<item/>` rows of a multi-item result, each its fields.
    pub items: Vec<Vec<Field>>,
}

impl DataForm {
    /// An empty form of this type.
    pub fn new(kind: FormType) -> Self {
        DataForm {
            kind,
            title: None,
            instructions: Vec::new(),
            fields: Vec::new(),
            reported: None,
            items: Vec::new(),
        }
    }

    /// Adds a top-level field.
    pub fn with_field(mut self, field: Field) -> Self {
        self.fields.push(field);
        self
    }

    /// The first top-level field named `var`.
    pub fn field(&self, var: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.var.as_deref() == Some(var))
    }

    /// The single value of field `var` ([`Field::value`]).
    pub fn value(&self, var: &str) -> Option<&str> {
        self.field(var).and_then(Field::value)
    }

    /// The values of field `var`; none when there is no such field.
    pub fn values(&self, var: &str) -> &[String] {
        self.field(var).map_or(&[], |f| f.values.as_slice())
    }

    /// Field `var` as a boolean ([`Field::bool`]); `None` when there is no such field.
    pub fn bool(&self, var: &str) -> Result<Option<bool>, PayloadError> {
        self.field(var).map(Field::bool).transpose()
    }

    /// The form's namespace, from its `FORM_TYPE` field (XEP-0068): a hidden one in a form or
    /// result; in a submission (or cancel) also one without, or with another, type.
    pub fn form_type(&self) -> Option<&str> {
        let field = self.field(FORM_TYPE)?;
        let counts = match self.kind {
            FormType::Form | FormType::Result => field.field_type == Some(FieldType::Hidden),
            FormType::Submit | FormType::Cancel => true,
        };
        if counts { field.value() } else { None }
    }

    /// The `<x/>` element: title, instructions, fields, reported, items.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("x", ns::DATA_FORMS).with_attr("type", self.kind.as_str());
        if let Some(title) = &self.title {
            el.push_child(text_element("title", title));
        }
        for i in &self.instructions {
            el.push_child(text_element("instructions", i));
        }
        for f in &self.fields {
            el.push_child(f.to_element());
        }
        let rows = self.reported.iter().map(|r| ("reported", r));
        for (name, fields) in rows.chain(self.items.iter().map(|i| ("item", i))) {
            let mut row = Element::new(name, ns::DATA_FORMS);
            for f in fields {
                row.push_child(f.to_element());
            }
            el.push_child(row);
        }
        el
    }
}

/// The fields of a `<reported/>` or `<item/>`, each of which needs a `var`.
fn row_fields(row: &Element) -> Result<Vec<Field>, PayloadError> {
    row.children()
        .filter(|c| c.is("field", ns::DATA_FORMS))
        .map(|c| {
            if c.attr("var").is_none() {
                return Err(PayloadError::invalid(format!(
                    "a field of <{}/> needs a 'var' attribute",
                    row.name()
                )));
            }
            Field::try_from(c)
        })
        .collect()
}

impl TryFrom<&Element> for DataForm {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "x", ns::DATA_FORMS)?;
        let kind = required_attr(el, "type")?;
        let kind = FormType::from_name(kind).ok_or_else(|| {
            PayloadError::invalid(format!(
                "a data form's type is form, submit, cancel or result, not '{kind}'"
            ))
        })?;
        let mut form = DataForm::new(kind);
        for child in el.children().filter(|c| c.ns() == ns::DATA_FORMS) {
            match child.name() {
                "title" if form.title.is_none() => form.title = Some(child.text()),
                "instructions" => form.instructions.push(child.text()),
                "field" => form.fields.push(Field::try_from(child)?),
                "reported" if form.reported.is_none() => form.reported = Some(row_fields(child)?),
                "item" => form.items.push(row_fields(child)?),
                _ => {}
            }
        }
        Ok(form)
    }
}

into_element!(Field, DataForm);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    fn parse(xml: &str) -> Result<DataForm, PayloadError> {
        DataForm::try_from(&element(xml))
    }

    // Abridged from XEP-0004 Example 2.
    const CONFIG: &str = "<x xmlns='jabber:x:data' type='form'>\
        <title>Bot Configuration</title>\
        <instructions>Fill out this form to configure your new bot!</instructions>\
        <field type='hidden' var='FORM_TYPE'><value>jabber:bot</value></field>\
        <field type='fixed'><value>Section 1: Bot Info</value></field>\
        <field type='text-single' label='The name of your bot' var='botname'/>\
        <field type='boolean' label='Public bot?' var='public'><required/>\
          <desc>Whether anyone may use it</desc><value>0</value></field>\
        <field type='list-multi' label='What features will the bot support?' var='features'>\
          <option label='Contests'><value>contests</value></option>\
          <option label='News'><value>news</value></option>\
          <value>news</value><value>contests</value></field>\
        <field type='jid-multi' label='People to invite' var='invitelist'>\
          <value>Juliet@Capulet.lit</value><value>juliet@capulet.lit</value>\
          <value>romeo@montague.lit</value></field>\
      </x>";

    #[test]
    fn parses_a_form() {
        let form = parse(CONFIG).unwrap();
        assert_eq!(form.kind, FormType::Form);
        assert_eq!(form.title.as_deref(), Some("Bot Configuration"));
        assert_eq!(form.instructions.len(), 1);
        assert_eq!(form.form_type(), Some("jabber:bot"));
        assert_eq!(form.fields[1].var, None);
        assert_eq!(form.fields[1].kind(), FieldType::Fixed);
        assert_eq!(form.value("botname"), None);
        let public = form.field("public").unwrap();
        assert!(public.required);
        assert_eq!(public.desc.as_deref(), Some("Whether anyone may use it"));
        assert_eq!(form.bool("public"), Ok(Some(false)));
        assert_eq!(form.bool("nonexistent"), Ok(None));
        assert_eq!(form.values("features"), ["news", "contests"]);
        let features = form.field("features").unwrap();
        assert_eq!(features.options[1].label.as_deref(), Some("News"));
        assert_eq!(features.options[1].value, "news");
        let invitees = form.field("invitelist").unwrap().jids().unwrap();
        assert_eq!(invitees.len(), 2, "duplicate JIDs are ignored");
    }

    #[test]
    fn booleans_types_and_form_type_follow_the_rules() {
        let submit = parse(
            "<x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>jabber:bot</value></field>\
             <field var='a'><value>1</value></field><field var='b'><value>true</value></field>\
             <field var='c'/><field var='d'><value>yes</value></field>\
             <field var='e' type='future-type'/></x>",
        )
        .unwrap();
        // XEP-0068: an untyped FORM_TYPE counts in a submission …
        assert_eq!(submit.form_type(), Some("jabber:bot"));
        assert_eq!(submit.bool("a"), Ok(Some(true)));
        assert_eq!(submit.bool("b"), Ok(Some(true)));
        assert_eq!(submit.bool("c"), Ok(Some(false)), "no value is false");
        assert!(matches!(submit.bool("d"), Err(PayloadError::Invalid(t)) if t.contains("'d'")));
        assert_eq!(
            submit.field("c").map(Field::kind),
            Some(FieldType::TextSingle)
        );
        assert_eq!(submit.field("c").unwrap().field_type, None);
        assert_eq!(
            submit.field("e").unwrap().field_type,
            Some(FieldType::TextSingle)
        );
        // … but not in a form.
        let form = parse(
            "<x xmlns='jabber:x:data' type='form'>\
             <field var='FORM_TYPE'><value>jabber:bot</value></field></x>",
        )
        .unwrap();
        assert_eq!(form.form_type(), None);
    }

    #[test]
    fn serialises_exactly_and_round_trips() {
        let form = parse(CONFIG).unwrap();
        assert_eq!(DataForm::try_from(&form.to_element()).as_ref(), Ok(&form));
        let built = DataForm::new(FormType::Result)
            .with_field(Field::form_type("urn:xmpp:dataforms:softwareinfo"))
            .with_field(Field::new("os", FieldType::TextSingle).with_value("Linux"));
        assert_eq!(
            Element::from(&built).to_string(),
            "<x xmlns=\"jabber:x:data\" type=\"result\">\
             <field var=\"FORM_TYPE\" type=\"hidden\">\
             <value>urn:xmpp:dataforms:softwareinfo</value></field>\
             <field var=\"os\" type=\"text-single\"><value>Linux</value></field></x>"
        );
        assert_eq!(DataForm::try_from(&Element::from(&built)), Ok(built));
    }

    #[test]
    fn multi_item_results_are_read_in_any_order() {
        // XEP-0004 §3.4, with an item before the header as older senders do.
        let result = parse(
            "<x xmlns='jabber:x:data' type='result'>\
             <item><field var='jid'><value>a@b</value></field></item>\
             <reported><field var='jid' type='jid-single' label='JID'/></reported>\
             <item><field var='jid'><value>c@d</value></field></item></x>",
        )
        .unwrap();
        let reported = result.reported.as_ref().unwrap();
        assert_eq!(reported[0].label.as_deref(), Some("JID"));
        assert_eq!(result.items.len(), 2);
        assert_eq!(result.items[1][0].value(), Some("c@d"));
        let el = result.to_element();
        let names: Vec<&str> = el.children().map(Element::name).collect();
        assert_eq!(names, ["reported", "item", "item"]);
        assert_eq!(DataForm::try_from(&el), Ok(result));
    }

    #[test]
    fn unknown_children_and_attributes_are_ignored() {
        let form = parse(
            "<x xmlns='jabber:x:data' type='submit' extra='1'>\
             <media xmlns='urn:xmpp:media-element'/><unknown/>\
             <field var='a' extra='2'><value>v</value><validate xmlns='http://jabber.org/protocol/xdata-validate'/></field>\
             </x>",
        )
        .unwrap();
        assert_eq!(form.fields.len(), 1);
        assert_eq!(form.value("a"), Some("v"));
    }

    #[test]
    fn missing_required_parts_are_refused() {
        for (xml, what) in [
            ("<x xmlns='jabber:x:data'/>", "'type'"),
            ("<x xmlns='jabber:x:data' type='draft'/>", "'draft'"),
            (
                "<x xmlns='jabber:x:data' type='form'><field type='text-single'/></x>",
                "'var'",
            ),
            (
                "<x xmlns='jabber:x:data' type='submit'><field/></x>",
                "'var'",
            ),
            (
                "<x xmlns='jabber:x:data' type='form'><field var='l' type='list-single'>\
                 <option label='x'/></field></x>",
                "<value/>",
            ),
            (
                "<x xmlns='jabber:x:data' type='result'><reported><field type='fixed'/>\
                 </reported></x>",
                "<reported/>",
            ),
        ] {
            assert!(
                matches!(parse(xml), Err(PayloadError::Invalid(t)) if t.contains(what)),
                "{xml}"
            );
        }
        let field = Field::new("j", FieldType::JidSingle).with_value("a@b@c");
        assert!(matches!(field.jids(), Err(PayloadError::JidMalformed(_))));
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        assert_eq!(
            parse("<x xmlns='jabber:x:oob' type='form'/>"),
            Err(PayloadError::Mismatch)
        );
        assert_eq!(
            parse("<form xmlns='jabber:x:data' type='form'/>"),
            Err(PayloadError::Mismatch)
        );
    }
}
