//! `[modules.register]`: who may create accounts in band, how fast, and which usernames and
//! passwords are acceptable.
//!
//! Every check that needs no server is done while the configuration is read, with toml's
//! line and key: a network that is not `ADDRESS/PREFIX`, limits of zero, a minimum above its
//! maximum.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// `[modules.register]`, as read (checked into [`RegisterSettings`]).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    enabled: bool,
    max_per_ip: u32,
    window_secs: u64,
    max_tracked_addresses: usize,
    allow: Option<Vec<IpNetwork>>,
    username_min_length: usize,
    username_max_length: usize,
    password_min_length: usize,
    password_max_length: usize,
    instructions: String,
    invites: bool,
    max_token_failures_per_ip: u32,
}

impl Default for RawSettings {
    fn default() -> Self {
        let s = RegisterSettings::default();
        RawSettings {
            enabled: s.enabled,
            max_per_ip: s.max_per_ip,
            window_secs: s.window_secs,
            max_tracked_addresses: s.max_tracked_addresses,
            allow: s.allow,
            username_min_length: s.username_min_length,
            username_max_length: s.username_max_length,
            password_min_length: s.password_min_length,
            password_max_length: s.password_max_length,
            instructions: s.instructions,
            invites: s.invites,
            max_token_failures_per_ip: s.max_token_failures_per_ip,
        }
    }
}

/// `[modules.register]` (documented with its defaults in the README).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSettings")]
pub struct RegisterSettings {
    /// Whether clients may create accounts before authenticating (default false). Password
    /// changes and account removal by the account itself are always available.
    pub enabled: bool,
    /// Accounts one address may create per window (default 1). IPv6 addresses count per
    /// /64, the block one subscriber usually has.
    pub max_per_ip: u32,
    /// The window of `max_per_ip`, in seconds (default 600, as ejabberd's `registration_timeout`).
    pub window_secs: u64,
    /// Addresses whose recent registrations are remembered at once (default 100000); past
    /// it, registrations from new addresses are refused until the oldest expire, so the
    /// memory the limit takes stays bounded.
    pub max_tracked_addresses: usize,
    /// When set, only clients from these networks may register.
    pub allow: Option<Vec<IpNetwork>>,
    /// Shortest username, in characters after preparation (default 1).
    pub username_min_length: usize,
    /// Longest username, in characters after preparation (default 64).
    pub username_max_length: usize,
    /// Shortest password, in characters (default 8).
    pub password_min_length: usize,
    /// Longest password, in characters (default 1024).
    pub password_max_length: usize,
    /// The `<instructions/>` of the registration form.
    pub instructions: String,
    /// Whether invitation tokens (`xmppd invite create`, XEP-0401/XEP-0445) let clients
    /// register, reset a password or become a user's contact (default true) — also when
    /// `enabled` is false, which makes the host invitation-only.
    pub invites: bool,
    /// Refused invitation tokens one address may present per `window_secs` (default 10;
    /// IPv6 per /64); past it, `resource-constraint` until the window passes.
    pub max_token_failures_per_ip: u32,
}

impl Default for RegisterSettings {
    fn default() -> Self {
        RegisterSettings {
            enabled: false,
            max_per_ip: 1,
            window_secs: 600,
            max_tracked_addresses: 100_000,
            allow: None,
            username_min_length: 1,
            username_max_length: 64,
            password_min_length: 8,
            password_max_length: 1024,
            instructions: "Choose a username and password to register with this server.".into(),
            invites: true,
            max_token_failures_per_ip: 10,
        }
    }
}

impl TryFrom<RawSettings> for RegisterSettings {
    type Error = String;

    fn try_from(raw: RawSettings) -> Result<Self, String> {
        for (key, value) in [
            ("max_per_ip", u64::from(raw.max_per_ip)),
            ("window_secs", raw.window_secs),
            ("max_tracked_addresses", raw.max_tracked_addresses as u64),
            ("username_min_length", raw.username_min_length as u64),
            ("password_min_length", raw.password_min_length as u64),
            (
                "max_token_failures_per_ip",
                u64::from(raw.max_token_failures_per_ip),
            ),
        ] {
            if value == 0 {
                return Err(format!("`{key}` must be at least 1"));
            }
        }
        for (what, min, max) in [
            ("username", raw.username_min_length, raw.username_max_length),
            ("password", raw.password_min_length, raw.password_max_length),
        ] {
            if min > max {
                return Err(format!(
                    "`{what}_min_length` ({min}) is above `{what}_max_length` ({max}); \
                     lower the one or raise the other"
                ));
            }
        }
        if raw.allow.as_ref().is_some_and(Vec::is_empty) {
            return Err(
                "`allow` is empty, so nobody could register: list networks, or set \
                        `enabled = false`"
                    .into(),
            );
        }
        Ok(RegisterSettings {
            enabled: raw.enabled,
            max_per_ip: raw.max_per_ip,
            window_secs: raw.window_secs,
            max_tracked_addresses: raw.max_tracked_addresses,
            allow: raw.allow,
            username_min_length: raw.username_min_length,
            username_max_length: raw.username_max_length,
            password_min_length: raw.password_min_length,
            password_max_length: raw.password_max_length,
            instructions: raw.instructions,
            invites: raw.invites,
            max_token_failures_per_ip: raw.max_token_failures_per_ip,
        })
    }
}

impl RegisterSettings {
    /// Whether a client at `peer` may register: anyone when there is no `allow` list,
    /// otherwise only addresses inside it (an unknown address is not).
    pub fn allows(&self, peer: Option<IpAddr>) -> bool {
        match (&self.allow, peer) {
            (None, _) => true,
            (Some(networks), Some(ip)) => networks.iter().any(|n| n.0.contains(&ip)),
            (Some(_), None) => false,
        }
    }
}

/// An IP network written `ADDRESS/PREFIX` (CIDR), e.g. `10.0.0.0/8` or `2001:db8::/32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNetwork(pub IpNet);

impl FromStr for IpNetwork {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        IpNet::from_str(s).map(IpNetwork).map_err(|_| {
            format!(
                "'{s}' is not an IP network; write ADDRESS/PREFIX, e.g. 192.0.2.0/24, \
                 2001:db8::/32, or 192.0.2.7/32 for one address"
            )
        })
    }
}

impl<'de> Deserialize<'de> for IpNetwork {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Network;
        impl Visitor<'_> for Network {
            type Value = IpNetwork;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an IP network such as \"10.0.0.0/8\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IpNetwork, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_str(Network)
    }
}
