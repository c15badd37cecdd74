//! Administration of xmppd: the verbs (list, add and delete users, change passwords, list
//! and end sessions, statistics, announcements), implemented once in [`Admin`], and the ways
//! in that live here: XEP-0050 ad-hoc commands with XEP-0133's service administration set
//! ([`adhoc`]) and the local Unix socket the `xmppd` CLI talks to ([`socket`]). The HTTP
//! admin API (in `xmppd-http`) runs the same [`request::dispatch`] as the socket.

pub mod adhoc;
pub mod request;
pub mod socket;
mod verbs;

pub use verbs::{Admin, AdminError, HostStats, SessionInfo, Stats, UserStats, account, local};
