//! Where a remote XMPP domain is served (RFC 6120 §3.2, XEP-0368, RFC 2782).
//!
//! Both `_xmpps-server._tcp` (TLS from the first byte, XEP-0368) and `_xmpp-server._tcp`
//! (STARTTLS) are looked up and merged into one list: lowest priority first and, within a
//! priority, in the weighted random order of RFC 2782, so load is spread as the domain's
//! owner asked. A single record whose target is `.` means the service is decidedly not offered
//! (RFC 2782), and nothing is tried. Only when neither service has records does RFC 6120
//! §3.2.2 fall back to the domain's own A/AAAA records on port 5269. Host names go through the
//! system resolver configuration, `/etc/hosts` included.

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ResolveHosts, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;

/// The port of RFC 6120 §3.2.2's fallback.
pub const DEFAULT_PORT: u16 = 5269;

/// How to start TLS on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// TLS from the first byte (`_xmpps-server`, XEP-0368).
    DirectTls,
    /// Plain TCP, then STARTTLS (`_xmpp-server`, or the fallback).
    StartTls,
}

/// One place to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SrvTarget {
    /// Host name (without the trailing dot).
    pub host: String,
    /// Port.
    pub port: u16,
    /// SRV priority (0 for the fallback).
    pub priority: u16,
    /// SRV weight (0 for the fallback).
    pub weight: u16,
    /// How TLS starts.
    pub transport: Transport,
}

/// What was found for a domain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    /// `_xmpps-server._tcp` records as published.
    pub xmpps_records: Vec<SrvTarget>,
    /// `_xmpp-server._tcp` records as published.
    pub xmpp_records: Vec<SrvTarget>,
    /// Whether a `.` target said the service is not offered.
    pub service_refused: bool,
    /// Where to connect, in order (SRV order, or the A/AAAA fallback).
    pub targets: Vec<SrvTarget>,
}

/// A lookup failure other than "no such records".
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The system resolver configuration could not be read.
    #[error("cannot read the system DNS configuration: {0}")]
    Config(String),
    /// The DNS query failed (timeout, server failure).
    #[error("DNS lookup of {name} failed: {reason}")]
    Lookup {
        /// The name queried.
        name: String,
        /// The resolver's reason.
        reason: String,
    },
}

/// Resolves XMPP server domains.
#[derive(Clone, Debug)]
pub struct S2sResolver {
    resolver: TokioResolver,
}

impl S2sResolver {
    /// A resolver using the system configuration (`/etc/resolv.conf`, `/etc/hosts`).
    pub fn from_system() -> Result<Self, ResolveError> {
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| ResolveError::Config(e.to_string()))?;
        let opts = builder.options_mut();
        opts.use_hosts_file = ResolveHosts::Always;
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        Ok(S2sResolver {
            resolver: builder.build(),
        })
    }

    /// A resolver with an explicit configuration (tests, custom name servers).
    pub fn with_config(config: ResolverConfig) -> Self {
        let mut builder =
            TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
        builder.options_mut().use_hosts_file = ResolveHosts::Always;
        S2sResolver {
            resolver: builder.build(),
        }
    }

    async fn srv(
        &self,
        service: &str,
        domain: &str,
        transport: Transport,
    ) -> Result<Vec<SrvTarget>, ResolveError> {
        let name = format!("{service}.{domain}.");
        match self.resolver.srv_lookup(name.as_str()).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|srv| SrvTarget {
                    host: srv.target().to_utf8().trim_end_matches('.').to_owned(),
                    port: srv.port(),
                    priority: srv.priority(),
                    weight: srv.weight(),
                    transport,
                })
                .collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(ResolveError::Lookup {
                name,
                reason: e.to_string(),
            }),
        }
    }

    /// The SRV records of both services and the ordered connection targets.
    pub async fn resolve(&self, domain: &str) -> Result<Resolution, ResolveError> {
        let xmpps_records = self
            .srv("_xmpps-server._tcp", domain, Transport::DirectTls)
            .await?;
        let xmpp_records = self
            .srv("_xmpp-server._tcp", domain, Transport::StartTls)
            .await?;
        Ok(plan(domain, xmpps_records, xmpp_records, &mut random_u32))
    }

    /// The addresses of a host (A and AAAA, `/etc/hosts` first).
    pub async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        match self.resolver.lookup_ip(host).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) if e.is_no_records_found() || e.is_nx_domain() => Ok(Vec::new()),
            Err(e) => Err(ResolveError::Lookup {
                name: host.to_owned(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Combines the SRV records of both services into the connection plan.
fn plan(
    domain: &str,
    xmpps_records: Vec<SrvTarget>,
    xmpp_records: Vec<SrvTarget>,
    random: &mut dyn FnMut() -> u32,
) -> Resolution {
    let all: Vec<SrvTarget> = xmpps_records.iter().chain(&xmpp_records).cloned().collect();
    // RFC 2782: a target of "." says the service is decidedly not available.
    let service_refused = !all.is_empty() && all.iter().all(|t| t.host.is_empty());
    let usable: Vec<SrvTarget> = all.into_iter().filter(|t| !t.host.is_empty()).collect();
    let targets = if service_refused {
        Vec::new()
    } else if usable.is_empty() {
        vec![SrvTarget {
            host: domain.to_owned(),
            port: DEFAULT_PORT,
            priority: 0,
            weight: 0,
            transport: Transport::StartTls,
        }]
    } else {
        order_by_priority_and_weight(usable, random)
    };
    Resolution {
        xmpps_records,
        xmpp_records,
        service_refused,
        targets,
    }
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    // Without randomness, the order within a priority is merely less well spread.
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

/// RFC 2782 ordering: ascending priority; within a priority, repeatedly pick a record with
/// probability proportional to its weight (zero-weight records get a small chance, and come
/// first in the running-sum list as the RFC asks).
pub fn order_by_priority_and_weight(
    mut records: Vec<SrvTarget>,
    random: &mut dyn FnMut() -> u32,
) -> Vec<SrvTarget> {
    records.sort_by_key(|r| (r.priority, r.weight));
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].priority;
        let end = records
            .iter()
            .position(|r| r.priority != priority)
            .unwrap_or(records.len());
        let mut group: Vec<SrvTarget> = records.drain(..end).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                random() % (total + 1)
            };
            let mut running = 0u32;
            let index = group
                .iter()
                .position(|r| {
                    running += u32::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            ordered.push(group.remove(index));
        }
    }
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(host: &str, priority: u16, weight: u16) -> SrvTarget {
        SrvTarget {
            host: host.into(),
            port: 5269,
            priority,
            weight,
            transport: Transport::StartTls,
        }
    }

    #[test]
    fn lower_priority_always_comes_first() {
        let records = vec![rec("c", 20, 100), rec("a", 10, 0), rec("b", 10, 50)];
        for seed in 0..50u32 {
            let mut n = seed;
            let mut random = move || {
                n = n.wrapping_mul(1_103_515_245).wrapping_add(12345);
                n
            };
            let order = order_by_priority_and_weight(records.clone(), &mut random);
            assert_eq!(order.last().map(|r| r.host.as_str()), Some("c"));
            assert_eq!(order.len(), 3);
        }
    }

    #[test]
    fn weight_decides_the_share_within_a_priority() {
        let records = vec![rec("heavy", 10, 90), rec("light", 10, 10)];
        let mut n = 7u32;
        let mut random = move || {
            n = n.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            n >> 8
        };
        let heavy_first = (0..1000)
            .filter(|_| {
                order_by_priority_and_weight(records.clone(), &mut random)[0].host == "heavy"
            })
            .count();
        assert!(
            (800..=980).contains(&heavy_first),
            "heavy first {heavy_first} times of 1000"
        );
    }

    #[test]
    fn no_records_fall_back_to_the_domain_on_5269() {
        let r = plan("example.org", vec![], vec![], &mut || 0);
        assert_eq!(
            r.targets,
            vec![SrvTarget {
                host: "example.org".into(),
                port: 5269,
                priority: 0,
                weight: 0,
                transport: Transport::StartTls
            }]
        );
        assert!(!r.service_refused);
    }

    #[test]
    fn a_dot_target_refuses_the_service_without_fallback() {
        let r = plan("example.org", vec![], vec![rec("", 0, 0)], &mut || 0);
        assert!(r.service_refused && r.targets.is_empty());
        // One service refused, the other offered: the offered one is used.
        let mut direct = rec("xmpp.example.org", 5, 0);
        direct.transport = Transport::DirectTls;
        let r = plan(
            "example.org",
            vec![direct.clone()],
            vec![rec("", 0, 0)],
            &mut || 0,
        );
        assert_eq!(r.targets, vec![direct]);
    }

    #[test]
    fn both_services_are_merged_by_priority() {
        let mut direct = rec("tls.example.org", 5, 0);
        direct.transport = Transport::DirectTls;
        let r = plan(
            "example.org",
            vec![direct],
            vec![rec("plain.example.org", 1, 0)],
            &mut || 0,
        );
        let hosts: Vec<_> = r
            .targets
            .iter()
            .map(|t| (t.host.as_str(), t.transport))
            .collect();
        assert_eq!(
            hosts,
            [
                ("plain.example.org", Transport::StartTls),
                ("tls.example.org", Transport::DirectTls)
            ]
        );
    }

    #[tokio::test]
    async fn hosts_file_names_resolve() {
        let resolver = S2sResolver::from_system().unwrap();
        let addrs = resolver.addresses("localhost").await.unwrap();
        assert!(addrs.iter().any(|a| a.is_loopback()), "{addrs:?}");
    }
}
