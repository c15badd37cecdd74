use xmppd_proto::DefinedCondition;
use xmppd_proto::data_form::{DataForm, Field, FieldType, FormType};

use super::*;

const LIMITS: ConfigLimits = ConfigLimits {
    max_users: 500,
    max_history: 50,
};

fn submit(fields: &[(&str, &str)]) -> DataForm {
    let mut form = DataForm::new(FormType::Submit).with_field(Field::form_type(FORM_ROOMCONFIG));
    for (var, value) in fields {
        form = form.with_field(Field::new(*var, FieldType::TextSingle).with_value(*value));
    }
    form
}

#[test]
fn a_form_changes_only_the_fields_it_carries() {
    let mut c = RoomConfig::default();
    let lists = c
        .apply(
            &submit(&[
                (NAME, "Coven"),
                (PERSISTENT, "1"),
                (WHOIS, "anyone"),
                (MAX_USERS, "30"),
                (HISTORY_LENGTH, "5"),
                (ALLOW_PM, "moderators"),
                ("x-unknown#field", "whatever"),
            ]),
            LIMITS,
        )
        .unwrap();
    assert_eq!(lists, FormLists::default());
    assert_eq!(c.name, "Coven");
    assert!(c.persistent && c.public);
    assert_eq!(c.whois, Whois::Anyone);
    assert_eq!((c.max_users, c.history_length), (30, 5));
    assert_eq!(c.allow_pm, AllowPm::Moderators);
    assert!(c.features().contains(&"muc_nonanonymous"));
}

#[test]
fn wrong_values_refuse_the_whole_form() {
    for (var, value) in [
        (PERSISTENT, "yes"),
        (MAX_USERS, "many"),
        (MAX_USERS, "501"),
        (HISTORY_LENGTH, "-1"),
        (WHOIS, "everybody"),
        (ALLOW_PM, "all"),
        (PASSWORD_PROTECTED, "1"),
    ] {
        let mut c = RoomConfig::default();
        let e = c
            .apply(&submit(&[(NAME, "changed"), (var, value)]), LIMITS)
            .unwrap_err();
        assert_eq!(
            e.condition,
            DefinedCondition::NotAcceptable,
            "{var}={value}"
        );
        assert_eq!(c, RoomConfig::default(), "{var}={value} changed the room");
    }
    let mut c = RoomConfig::default();
    let mut form = submit(&[]);
    form.fields.push(Field::new(OWNERS, FieldType::JidMulti));
    assert_eq!(
        c.apply(&form, LIMITS).unwrap_err().condition,
        DefinedCondition::Conflict
    );
}

#[test]
fn passwords_and_lists_are_read() {
    let mut c = RoomConfig::default();
    let mut form = submit(&[(PASSWORD_PROTECTED, "1"), (SECRET, "pw")]);
    let mut owners = Field::new(OWNERS, FieldType::JidMulti);
    owners.values = vec!["a@x".into(), "b@x/res".into()];
    form.fields.push(owners);
    let lists = c.apply(&form, LIMITS).unwrap();
    assert_eq!(c.password.as_deref(), Some("pw"));
    let owners: Vec<String> = lists
        .owners
        .unwrap()
        .iter()
        .map(|j| j.to_string())
        .collect();
    assert_eq!(owners, ["a@x", "b@x"]);
    c.apply(&submit(&[(PASSWORD_PROTECTED, "0")]), LIMITS)
        .unwrap();
    assert_eq!(c.password, None);
    let form = c.to_form(&[], &[], LIMITS);
    assert_eq!(form.form_type(), Some(FORM_ROOMCONFIG));
    assert_eq!(form.value(PASSWORD_PROTECTED), Some("0"));
}
