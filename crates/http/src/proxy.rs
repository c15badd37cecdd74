//! The real client behind a reverse proxy.
//!
//! `X-Forwarded-For` and `Forwarded` (RFC 7239) are believed only when the connection comes
//! from a configured proxy: anyone else could write them to spread their requests over
//! invented addresses and escape the per-address limits. Each proxy appends the address it
//! saw, so the list is read from the right, skipping the trusted proxies themselves; the
//! first address that is not one is the client. The scheme (`X-Forwarded-Proto`, or `proto=`
//! of `Forwarded`) and the host (`X-Forwarded-Host`, `host=`) tell which URL the client used,
//! for the addresses host-meta announces.

use std::net::IpAddr;
use std::str::FromStr;

use axum::http::HeaderMap;

/// An address range in CIDR notation (`10.0.0.0/8`, `::1/128`), or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A malformed address range.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an IP address or a range like 10.0.0.0/8 or fd00::/8")]
pub struct BadIpNet(pub String);

impl FromStr for IpNet {
    type Err = BadIpNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadIpNet(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(bad)?,
            None => max,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl IpNet {
    /// Whether `ip` is in the range (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The configured proxies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

/// Who a request is from, as far as we can trust the headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAddr {
    /// The client's address.
    pub ip: IpAddr,
    /// Whether the client's connection is encrypted (ours, or the proxy's `https`).
    pub secure: bool,
    /// The host (with port) the client addressed, as the proxy reports it.
    pub forwarded_host: Option<String>,
    /// Whether a trusted proxy stands between us and the client.
    pub via_proxy: bool,
}

impl TrustedProxies {
    /// Whether `ip` is a trusted proxy.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client of a request that reached us from `peer` over a connection that is
    /// encrypted or not (`tls`).
    pub fn client(&self, peer: IpAddr, tls: bool, headers: &HeaderMap) -> ClientAddr {
        let direct = ClientAddr {
            ip: canonical(peer),
            secure: tls,
            forwarded_host: None,
            via_proxy: false,
        };
        if !self.trusts(peer) {
            return direct;
        }
        let forwarded = forwarded(headers);
        let chain: Vec<IpAddr> = if forwarded.for_.is_empty() {
            header_values(headers, "x-forwarded-for")
                .flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>())
                .filter_map(|a| parse_node(&a))
                .collect()
        } else {
            forwarded
                .for_
                .iter()
                .filter_map(|a| parse_node(a))
                .collect()
        };
        let Some(ip) = chain
            .iter()
            .rev()
            .copied()
            .find(|ip| !self.trusts(*ip))
            .or_else(|| chain.first().copied())
        else {
            return direct;
        };
        let proto = forwarded
            .proto
            .or_else(|| last_value(headers, "x-forwarded-proto"));
        let secure = match proto {
            Some(p) => p.eq_ignore_ascii_case("https") || p.eq_ignore_ascii_case("wss"),
            None => tls,
        };
        ClientAddr {
            ip: canonical(ip),
            secure,
            forwarded_host: forwarded
                .host
                .or_else(|| last_value(headers, "x-forwarded-host")),
            via_proxy: true,
        }
    }
}

fn header_values<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
}

/// The last comma-separated value of a header (the one the nearest proxy wrote).
fn last_value(headers: &HeaderMap, name: &str) -> Option<String> {
    header_values(headers, name)
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .last()
        .map(str::to_owned)
}

#[derive(Default)]
struct Forwarded {
    for_: Vec<String>,
    proto: Option<String>,
    host: Option<String>,
}

/// RFC 7239 §4: `Forwarded: for=192.0.2.60;proto=https;host=example.com, for="[2001:db8::1]"`.
/// `proto` and `host` are taken from the last element (the nearest proxy's).
fn forwarded(headers: &HeaderMap) -> Forwarded {
    let mut out = Forwarded::default();
    for element in header_values(headers, "forwarded").flat_map(|v| v.split(',')) {
        let (mut proto, mut host) = (None, None);
        for pair in element.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_owned();
            match key.trim().to_ascii_lowercase().as_str() {
                "for" => out.for_.push(value),
                "proto" => proto = Some(value),
                "host" => host = Some(value),
                _ => {}
            }
        }
        out.proto = proto.or(out.proto);
        out.host = host.or(out.host);
    }
    out
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711`,
/// `2001:db8::1`; `unknown` and obfuscated identifiers are not addresses.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    node.rsplit_once(':')?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies(list.iter().map(|s| s.parse().unwrap()).collect())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges() {
        let net: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains(ip("10.1.2.3")));
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        assert!(!net.contains(ip("11.0.0.1")));
        let one: IpNet = "::1".parse().unwrap();
        assert!(one.contains(ip("::1")) && !one.contains(ip("::2")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        for bad in ["10.0.0.0/33", "example.com", "10.0.0/8", "::/129"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_are_ignored_from_untrusted_peers() {
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "https"),
        ]);
        let c = proxies(&["10.0.0.1"]).client(ip("192.0.2.1"), false, &h);
        assert_eq!(c.ip, ip("192.0.2.1"));
        assert!(!c.secure && !c.via_proxy);
    }

    #[test]
    fn the_rightmost_untrusted_address_is_the_client() {
        // The client forged the first entry; the trusted proxies appended the rest.
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.1, 203.0.113.7"),
            ("x-forwarded-for", "10.0.0.2"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "chat.example.org"),
        ]);
        let c = proxies(&["10.0.0.0/8"]).client(ip("10.0.0.1"), false, &h);
        assert_eq!(c.ip, ip("203.0.113.7"));
        assert!(c.secure && c.via_proxy);
        assert_eq!(c.forwarded_host.as_deref(), Some("chat.example.org"));
    }

    #[test]
    fn rfc7239_forwarded() {
        let h = headers(&[(
            "forwarded",
            "for=198.51.100.1, for=\"[2001:db8::7]:4711\";proto=https;host=example.org",
        )]);
        let c = proxies(&["127.0.0.1"]).client(ip("127.0.0.1"), false, &h);
        assert_eq!(c.ip, ip("2001:db8::7"));
        assert!(c.secure);
        assert_eq!(c.forwarded_host.as_deref(), Some("example.org"));
        // A trusted proxy that sends nothing is the client itself.
        let c = proxies(&["127.0.0.1"]).client(ip("127.0.0.1"), true, &HeaderMap::new());
        assert_eq!(c.ip, ip("127.0.0.1"));
        assert!(c.secure);
    }
}
