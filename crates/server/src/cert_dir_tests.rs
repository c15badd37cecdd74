use std::os::unix::fs::PermissionsExt as _;

use super::*;

/// A self-signed certificate for `names` and its key, as PEM; `expired` puts its validity
/// in the past.
fn pair(names: &[&str], expired: bool) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    if expired {
        params.not_before = time::OffsetDateTime::from_unix_timestamp(1_000_000_000).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(1_100_000_000).unwrap();
    }
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn certbot_dir(live: &Path, name: &str, (cert, key): &(String, String)) {
    let dir = live.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("fullchain.pem"), cert).unwrap();
    std::fs::write(dir.join("privkey.pem"), key).unwrap();
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn both_layouts_are_found_and_half_a_pair_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = pair(&["a.test"], false);
    std::fs::write(dir.path().join("a.test.crt"), &cert).unwrap();
    std::fs::write(dir.path().join("a.test.key"), &key).unwrap();
    certbot_dir(dir.path(), "b.test", &(cert.clone(), key));
    std::fs::write(dir.path().join("c.test.crt"), &cert).unwrap();

    let (c, k) = find_pair(dir.path(), "a.test").unwrap();
    assert!(c.ends_with("a.test.crt") && k.ends_with("a.test.key"));
    let (c, k) = find_pair(dir.path(), "b.test").unwrap();
    assert!(c.ends_with("b.test/fullchain.pem") && k.ends_with("b.test/privkey.pem"));
    assert!(find_pair(dir.path(), "c.test").is_none());
    assert!(find_pair(dir.path(), "d.test").is_none());
}

#[test]
fn import_copies_each_hosts_pair_with_private_modes() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let target = dir.path().join("certs");
    let org = pair(&["example.org"], false);
    // certbot names a certificate for several domains after the first one only.
    let multi = pair(&["example.com", "example.net"], false);
    certbot_dir(&live, "example.org", &org);
    certbot_dir(&live, "example.com", &multi);
    let hosts = ["example.org", "example.net", "missing.test"].map(String::from);

    let outcomes = import(&hosts, std::slice::from_ref(&live), &target).unwrap();
    assert!(
        matches!(&outcomes[0].1, ImportOutcome::Imported { from, .. } if from.ends_with("example.org/fullchain.pem")),
        "{outcomes:?}"
    );
    assert!(
        matches!(&outcomes[1].1, ImportOutcome::Imported { from, .. } if from.ends_with("example.com/fullchain.pem")),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2].1, ImportOutcome::NotFound),
        "{outcomes:?}"
    );

    let read = |name: &str| std::fs::read_to_string(target.join(name)).unwrap();
    assert_eq!(read("example.org.crt"), org.0);
    assert_eq!(read("example.org.key"), org.1);
    assert_eq!(read("example.net.key"), multi.1);
    assert_eq!(mode(&target.join("example.org.key")), 0o640);
    assert_eq!(mode(&target.join("example.org.crt")), 0o644);
    assert_eq!(mode(&target), 0o750);
    // Only the finished files: nothing half written is left beside them.
    let mut names: Vec<String> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "example.net.crt",
            "example.net.key",
            "example.org.crt",
            "example.org.key"
        ]
    );
    // What was imported is what the server then finds.
    assert_eq!(
        find_pair(&target, "example.net").unwrap().0,
        target.join("example.net.crt")
    );
}

#[test]
fn an_expired_certificate_or_a_foreign_key_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let target = dir.path().join("certs");
    certbot_dir(&live, "old.test", &pair(&["old.test"], true));
    let (cert, _) = pair(&["mixed.test"], false);
    let (_, other_key) = pair(&["mixed.test"], false);
    certbot_dir(&live, "mixed.test", &(cert, other_key));
    let hosts = ["old.test", "mixed.test"].map(String::from);

    let outcomes = import(&hosts, &[live], &target).unwrap();
    let problems = |i: usize| match &outcomes[i].1 {
        ImportOutcome::Refused { problems, .. } => problems.join("; "),
        other => panic!("{other:?}"),
    };
    assert!(problems(0).contains("not valid now"), "{}", problems(0));
    assert!(
        problems(1).contains("does not belong to the certificate"),
        "{}",
        problems(1)
    );
    assert!(!target.join("old.test.crt").exists());
    assert!(!target.join("mixed.test.key").exists());
}

#[test]
fn the_first_source_with_a_usable_pair_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("one"), dir.path().join("two"));
    let target = dir.path().join("certs");
    std::fs::create_dir_all(&first).unwrap();
    let flat = pair(&["x.test"], false);
    std::fs::write(first.join("x.test.crt"), &flat.0).unwrap();
    std::fs::write(first.join("x.test.key"), &flat.1).unwrap();
    certbot_dir(&second, "x.test", &pair(&["x.test"], false));

    let outcomes = import(&["x.test".to_owned()], &[first, second], &target).unwrap();
    assert!(matches!(&outcomes[0].1, ImportOutcome::Imported { .. }));
    assert_eq!(
        std::fs::read_to_string(target.join("x.test.crt")).unwrap(),
        flat.0
    );
}
