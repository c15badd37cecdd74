use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::*;

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

fn settings(toml_text: &str) -> Result<RegisterSettings, String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        register: RegisterSettings,
    }
    toml::from_str::<Doc>(&format!("[register]\n{toml_text}"))
        .map(|d| d.register)
        .map_err(|e| e.to_string())
}

#[test]
fn the_limit_counts_per_address_within_the_window() {
    let limiter = AddressLimiter::new(2, Duration::from_secs(60), 100);
    let t0 = Instant::now();
    assert_eq!(limiter.acquire(ip("192.0.2.1"), t0), Ok(()));
    assert_eq!(limiter.acquire(ip("192.0.2.1"), t0), Ok(()));
    assert_eq!(
        limiter.acquire(ip("192.0.2.1"), t0 + Duration::from_secs(59)),
        Err(Refusal::TooMany)
    );
    assert_eq!(
        limiter.acquire(ip("192.0.2.2"), t0),
        Ok(()),
        "another address"
    );
    assert_eq!(
        limiter.acquire(ip("192.0.2.1"), t0 + Duration::from_secs(60)),
        Ok(()),
        "the window slid past the first two"
    );
}

#[test]
fn a_failed_registration_gives_its_place_back() {
    let limiter = AddressLimiter::new(1, Duration::from_secs(60), 100);
    let t0 = Instant::now();
    assert_eq!(limiter.acquire(ip("192.0.2.1"), t0), Ok(()));
    limiter.release(ip("192.0.2.1"));
    assert_eq!(limiter.tracked(), 0);
    assert_eq!(limiter.acquire(ip("192.0.2.1"), t0), Ok(()));
}

#[test]
fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
    let limiter = AddressLimiter::new(1, Duration::from_secs(60), 100);
    let t0 = Instant::now();
    assert_eq!(limiter.acquire(ip("2001:db8:1:2::1"), t0), Ok(()));
    assert_eq!(
        limiter.acquire(ip("2001:db8:1:2:ffff::9"), t0),
        Err(Refusal::TooMany)
    );
    assert_eq!(limiter.acquire(ip("2001:db8:1:3::1"), t0), Ok(()));
    assert_eq!(limiter.acquire(ip("192.0.2.1"), t0), Ok(()));
    assert_eq!(
        limiter.acquire(ip("::ffff:192.0.2.1"), t0),
        Err(Refusal::TooMany)
    );
}

#[test]
fn the_map_stays_bounded() {
    let limiter = AddressLimiter::new(1, Duration::from_secs(60), 2);
    let t0 = Instant::now();
    assert_eq!(limiter.acquire(ip("192.0.2.1"), t0), Ok(()));
    assert_eq!(limiter.acquire(ip("192.0.2.2"), t0), Ok(()));
    assert_eq!(limiter.acquire(ip("192.0.2.3"), t0), Err(Refusal::Busy));
    // Once the first two have expired there is room again.
    let later = t0 + Duration::from_secs(60);
    assert_eq!(limiter.acquire(ip("192.0.2.3"), later), Ok(()));
    assert_eq!(limiter.tracked(), 1);
}

#[test]
fn settings_have_documented_defaults_and_checks() {
    let s = settings("").unwrap();
    assert_eq!(s, RegisterSettings::default());
    assert!(!s.enabled);
    assert_eq!((s.max_per_ip, s.window_secs), (1, 600));
    let s = settings("enabled = true\nallow = [\"10.0.0.0/8\", \"2001:db8::/32\"]").unwrap();
    assert!(s.allows(ip("10.1.2.3")));
    assert!(s.allows(ip("2001:db8::5")));
    assert!(!s.allows(ip("127.0.0.1")));
    assert!(!s.allows(None));
    assert!(RegisterSettings::default().allows(None));

    let e = settings("allow = [\"10.0.0/8\"]").unwrap_err();
    assert!(e.contains("line 2") && e.contains("ADDRESS/PREFIX"), "{e}");
    let e = settings("max_per_ip = 0").unwrap_err();
    assert!(e.contains("`max_per_ip` must be at least 1"), "{e}");
    let e = settings("password_min_length = 20\npassword_max_length = 10").unwrap_err();
    assert!(e.contains("password_min_length"), "{e}");
    let e = settings("allow = []").unwrap_err();
    assert!(e.contains("`allow` is empty"), "{e}");
    let e = settings("enable = true").unwrap_err();
    assert!(e.contains("unknown field `enable`"), "{e}");
}

#[test]
fn usernames_are_prepared_and_measured() {
    let settings = RegisterSettings {
        username_max_length: 5,
        ..RegisterSettings::default()
    };
    let account = |name: &str, host: &str| account_of(&settings, name, host);
    let jid = account("Bill", "example.org").unwrap();
    assert_eq!(jid.as_str(), "bill@example.org", "nodeprep folds case");
    for bad in ["", "toolong", "a@b", "a/b", "a b", "a\"b"] {
        let e = account(bad, "example.org").unwrap_err();
        assert_eq!(e.condition, DefinedCondition::NotAcceptable, "{bad:?}");
    }
    assert!(password_check(&settings, "12345678").is_ok());
    assert_eq!(
        password_check(&settings, "1234567").unwrap_err().condition,
        DefinedCondition::NotAcceptable
    );
}

#[tokio::test]
async fn a_reload_keeps_the_limiters_and_what_was_registered_at_startup() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = xmppd_storage::StorageConfig::Sqlite {
        path: dir.path().join("register.db"),
    };
    let storage = xmppd_storage::open(&config).await.expect("storage");
    let closed = settings("invites = false").unwrap();
    let register = Register::new(&storage, closed);
    let mut new = settings("enabled = true\nmax_per_ip = 5\npassword_min_length = 12").unwrap();
    // `invites` is on by default: switched on from off, like `enabled`.
    assert_eq!(
        register.check(&mut new),
        Ok(vec!["max_per_ip", "enabled", "invites"])
    );
    register.reconfigure(new);
    let now = register.rules.settings.get();
    assert!(
        !now.enabled && !now.invites,
        "no handler was registered for them"
    );
    assert_eq!(
        now.max_per_ip, 1,
        "the limiter counts with its startup budget"
    );
    assert_eq!(now.password_min_length, 12);
    // With registration open at startup, it can be closed and opened in place.
    let open = Register::new(&storage, settings("enabled = true").unwrap());
    let mut closing = settings("enabled = false").unwrap();
    assert_eq!(open.check(&mut closing), Ok(Vec::new()));
    open.reconfigure(closing);
    assert!(!open.rules.settings.get().enabled);
}
