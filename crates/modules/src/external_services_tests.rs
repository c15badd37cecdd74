use std::time::{Duration, UNIX_EPOCH};

use super::*;

fn settings(toml_text: &str) -> Result<ExternalServicesSettings, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        external_services: ExternalServicesSettings,
    }
    toml::from_str::<Doc>(&format!("[external_services]\n{toml_text}"))
        .map(|d| d.external_services)
        .map_err(|e| e.to_string())
}

const CONFIG: &str = r#"
turn_secret = "north"
credential_ttl_secs = 600
[[external_services.services]]
type = "stun"
host = "stun.example.org"
port = 3478
transport = "udp"
[[external_services.services]]
type = "turn"
host = "turn.example.org"
port = 3478
transport = "udp"
name = "Relay"
[[external_services.services]]
type = "turns"
host = "turn.example.org"
port = 5349
transport = "tcp"
"#;

fn module() -> ExternalServices {
    ExternalServices::new(settings(CONFIG).unwrap()).unwrap()
}

fn alice() -> BareJid {
    BareJid::new("alice@example.org").unwrap()
}

#[test]
fn credentials_match_the_turn_rest_api() {
    // Independently: python3 -c "import hmac,hashlib,base64; print(base64.b64encode(
    //   hmac.new(b'north', b'1700000000:alice@example.org', hashlib.sha1).digest()).decode())"
    let (username, password) = turn_credentials(b"north", 1_700_000_000, "alice@example.org");
    assert_eq!(username, "1700000000:alice@example.org");
    assert_eq!(password, "PZI+z4ibN1IQ7v4pzuL4fO8lnhI=");
}

#[test]
fn services_carry_credentials_for_the_restricted_ones() {
    let now = UNIX_EPOCH + Duration::from_secs(1_699_999_400);
    let list = module()
        .current
        .get()
        .services(&Services::default(), &alice(), now);
    assert_eq!(list.services.len(), 3);
    let stun = &list.services[0];
    assert_eq!((stun.kind.as_str(), stun.port), ("stun", Some(3478)));
    assert_eq!((stun.username.as_ref(), stun.restricted), (None, None));
    let turn = &list.services[1];
    assert_eq!(turn.restricted, Some(true));
    assert_eq!(turn.name.as_deref(), Some("Relay"));
    assert_eq!(
        turn.username.as_deref(),
        Some("1700000000:alice@example.org")
    );
    assert_eq!(
        turn.password.as_deref(),
        Some("PZI+z4ibN1IQ7v4pzuL4fO8lnhI=")
    );
    assert_eq!(turn.expires.as_deref(), Some("2023-11-14T22:13:20.000Z"));
}

#[test]
fn a_type_filter_selects_and_an_unknown_type_is_empty() {
    let now = SystemTime::now();
    let turn = Services {
        kind: Some("turn".into()),
        services: Vec::new(),
    };
    let list = module().current.get().services(&turn, &alice(), now);
    assert_eq!(list.kind.as_deref(), Some("turn"));
    assert_eq!(list.services.len(), 1);
    let ftp = Services {
        kind: Some("ftp".into()),
        services: Vec::new(),
    };
    assert!(
        module()
            .current
            .get()
            .services(&ftp, &alice(), now)
            .services
            .is_empty()
    );
}

#[test]
fn credentials_are_given_for_the_services_named() {
    let now = SystemTime::now();
    let named = |host: &str, kind: &str, port: Option<u16>| Credentials {
        services: vec![Service {
            host: host.into(),
            kind: kind.into(),
            port,
            ..Service::default()
        }],
    };
    let m = module().current.get();
    let c = m
        .credentials(&named("turn.example.org", "turns", None), &alice(), now)
        .unwrap();
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.services[0].port, Some(5349));
    assert!(c.services[0].password.is_some());
    let c = m
        .credentials(
            &named("turn.example.org", "turn", Some(3478)),
            &alice(),
            now,
        )
        .unwrap();
    assert_eq!(c.services[0].kind, "turn");
    for (host, kind, port) in [
        ("turn.example.org", "turn", Some(9999)),
        ("other.example.org", "turn", None),
        ("stun.example.org", "stun", None),
    ] {
        let e = m
            .credentials(&named(host, kind, port), &alice(), now)
            .unwrap_err();
        assert_eq!(e.condition, DefinedCondition::ItemNotFound, "{host} {kind}");
    }
    let e = m
        .credentials(&Credentials::default(), &alice(), now)
        .unwrap_err();
    assert_eq!(e.condition, DefinedCondition::BadRequest);
}

#[test]
fn configuration_errors_say_what_to_do() {
    let e = settings("[[external_services.services]]\ntype = \"turm\"\nhost = \"h\"").unwrap_err();
    assert!(
        e.contains("line 3") && e.contains("unknown variant `turm`"),
        "{e}"
    );
    let e = settings("[[external_services.services]]\ntype = \"turn\"\nhost = \"h\"").unwrap_err();
    assert!(e.contains("static-auth-secret"), "{e}");
    let e = settings("turn_secret = \"a\"\nturn_secret_file = \"/f\"").unwrap_err();
    assert!(e.contains("not both"), "{e}");
    let e = settings("turn_secret = \"a\"\ncredential_ttl_secs = 0").unwrap_err();
    assert!(e.contains("credential_ttl_secs"), "{e}");
    let e = settings("[[external_services.services]]\ntype = \"stun\"\nhost = \"h\"\nport = 70000")
        .unwrap_err();
    assert!(e.contains("port"), "{e}");
    let ok = settings(
        "[[external_services.services]]\ntype = \"turn\"\nhost = \"h\"\nrestricted = false",
    )
    .unwrap();
    assert!(ok.secret.is_none());
    assert_eq!(ok.credential_ttl, Duration::from_secs(86_400));
}

#[test]
fn a_secret_file_is_read_and_an_empty_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "north\n").unwrap();
    let mut s = settings(CONFIG).unwrap();
    s.secret = Some(SecretSource::File(path.clone()));
    let m = ExternalServices::new(s.clone()).unwrap();
    assert_eq!(m.current.get().secret.as_deref(), Some(&b"north"[..]));
    std::fs::write(&path, "south\n").unwrap();
    let mut reloaded = s.clone();
    assert_eq!(m.check(&mut reloaded), Ok(Vec::new()));
    m.reconfigure(reloaded);
    assert_eq!(m.current.get().secret.as_deref(), Some(&b"south"[..]));
    std::fs::write(&path, "\n").unwrap();
    let e = m.check(&mut s.clone()).unwrap_err();
    assert!(e.contains("is empty"), "{e}");
    assert_eq!(m.current.get().secret.as_deref(), Some(&b"south"[..]));
    let e = ExternalServices::new(s.clone()).unwrap_err();
    assert!(e.to_string().contains("is empty"), "{e}");
    s.secret = Some(SecretSource::File(dir.path().join("missing")));
    let e = ExternalServices::new(s).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
}
