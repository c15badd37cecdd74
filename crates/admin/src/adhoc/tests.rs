use super::*;

#[test]
fn every_command_is_found_by_its_node_and_its_form_has_the_admin_form_type() {
    for command in Command::ALL {
        assert_eq!(Command::from_node(command.node()), Some(command));
        let form = command.form();
        assert_eq!(form.kind, FormType::Form);
        assert_eq!(form.form_type(), Some(commands::NS_ADMIN));
    }
    assert_eq!(
        Command::from_node("http://jabber.org/protocol/admin#shutdown"),
        None
    );
}

#[test]
fn administrators_are_matched_by_their_bare_jid() {
    let admins = Admins::new(vec![BareJid::new("alice@localhost").unwrap()]);
    assert!(admins.contains(&Jid::new("alice@localhost/phone").unwrap()));
    assert!(admins.contains(&Jid::new("alice@localhost").unwrap()));
    assert!(!admins.contains(&Jid::new("bob@localhost/phone").unwrap()));
    assert!(!admins.contains(&Jid::new("localhost").unwrap()));
}
