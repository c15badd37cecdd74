//! XEP-0215: External Service Discovery — the STUN and TURN servers clients should use for
//! calls, with short-term TURN credentials.
//!
//! The services are configured (`[[modules.external_services.services]]`). A restricted
//! service (TURN by default) gets credentials made as the "TURN REST API" that coturn's
//! `use-auth-secret` / `static-auth-secret` checks: the username is `EXPIRY:USER`, EXPIRY the
//! Unix time the credential stops working and USER the requester's bare JID, and the password
//! is base64(HMAC-SHA1(secret, username)). The relay needs no call to us: it recomputes the
//! HMAC with the secret it shares and refuses a username whose time has passed. `expires`
//! carries the same instant as a XEP-0082 DateTime (§2: UTC).
//!
//! Who is answered: the local accounts of the addressed host, and nobody else (§2: "MAY
//! instead return … `forbidden` if the requesting entity does not have permission"), since
//! credentials hand out relay capacity. A `<services/>` answer lists the credentials of the
//! restricted services too, which is what clients (Conversations, Dino, Movim) rely on; a
//! `type` filter naming no configured type is an empty list (§3.2 defines no error for it).
//! `<credentials/>` (§3.3) answers each service named by `host` and `type` (and `port`, when
//! several share a host), `item-not-found` when no restricted service matches (a service
//! that needs no credentials has none to give), `bad-request` when none is named.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use jid::BareJid;
use serde::Deserialize;
use sha1::Sha1;
use xmppd_core::{
    IqHandler, IqRequest, IqTarget, IqType, Live, Module, ModuleError, Reconfigure, Registry,
};
use xmppd_proto::datetime::format_datetime;
use xmppd_proto::extdisco::{Credentials, NS_EXTDISCO, Service, Services};
use xmppd_proto::{DefinedCondition, StanzaError};
use xmppd_xml::Element;

/// The kinds of service this server can describe (the XMPP Registrar's names, §7.3, and
/// `turns`, TURN over TLS, RFC 7065).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// Session Traversal Utilities for NAT (RFC 5389).
    Stun,
    /// Traversal Using Relays around NAT (RFC 5766).
    Turn,
    /// TURN over TLS.
    Turns,
}

impl ServiceKind {
    /// The `type` attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceKind::Stun => "stun",
            ServiceKind::Turn => "turn",
            ServiceKind::Turns => "turns",
        }
    }
}

/// The transport protocol of a service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// UDP.
    Udp,
    /// TCP (or TLS over TCP for `turns`).
    Tcp,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// One `[[modules.external_services.services]]`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// `stun`, `turn` or `turns`.
    #[serde(rename = "type")]
    pub kind: ServiceKind,
    /// Host name or IP address clients connect to.
    pub host: String,
    /// The port (RECOMMENDED by §2).
    pub port: Option<u16>,
    /// `udp` or `tcp`.
    pub transport: Option<Transport>,
    /// Whether credentials are needed (default: true for TURN, false for STUN).
    pub restricted: Option<bool>,
    /// A human-readable name.
    pub name: Option<String>,
}

impl ServiceConfig {
    fn restricted(&self) -> bool {
        self.restricted.unwrap_or(self.kind != ServiceKind::Stun)
    }
}

/// `[modules.external_services]`, as read.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    services: Vec<ServiceConfig>,
    turn_secret: Option<String>,
    turn_secret_file: Option<PathBuf>,
    credential_ttl_secs: Option<u64>,
}

/// `[modules.external_services]` (documented with its defaults in the README).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawSettings")]
pub struct ExternalServicesSettings {
    /// The services, in the order they are listed.
    pub services: Vec<ServiceConfig>,
    /// Where the shared secret comes from, if any restricted service needs one.
    pub secret: Option<SecretSource>,
    /// How long a credential stays valid (default 86400 s, a day: a call may be long).
    pub credential_ttl: Duration,
}

/// The secret shared with the TURN server (coturn's `static-auth-secret`).
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Written in the configuration.
    Inline(String),
    /// Read from this file when the server starts (surrounding white space removed).
    File(PathBuf),
}

impl fmt::Debug for ExternalServicesSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret itself.
        f.debug_struct("ExternalServicesSettings")
            .field("services", &self.services)
            .field("credential_ttl", &self.credential_ttl)
            .finish_non_exhaustive()
    }
}

impl Default for ExternalServicesSettings {
    fn default() -> Self {
        ExternalServicesSettings {
            services: Vec::new(),
            secret: None,
            credential_ttl: Duration::from_secs(86_400),
        }
    }
}

impl TryFrom<RawSettings> for ExternalServicesSettings {
    type Error = String;

    fn try_from(raw: RawSettings) -> Result<Self, String> {
        let secret = match (raw.turn_secret, raw.turn_secret_file) {
            (Some(_), Some(_)) => {
                return Err("set `turn_secret` or `turn_secret_file`, not both".into());
            }
            (Some(s), None) if s.trim().is_empty() => {
                return Err("`turn_secret` is empty; use the value of coturn's \
                            `static-auth-secret`"
                    .into());
            }
            (Some(s), None) => Some(SecretSource::Inline(s)),
            (None, Some(path)) => Some(SecretSource::File(path)),
            (None, None) => None,
        };
        if let Some(service) = raw.services.iter().find(|s| s.restricted())
            && secret.is_none()
        {
            return Err(format!(
                "the restricted {} service {} needs credentials: set `turn_secret` (or \
                 `turn_secret_file`) to coturn's `static-auth-secret`, or mark the service \
                 `restricted = false`",
                service.kind.as_str(),
                service.host
            ));
        }
        if let Some(service) = raw.services.iter().find(|s| s.host.trim().is_empty()) {
            return Err(format!(
                "a {} service has an empty `host`",
                service.kind.as_str()
            ));
        }
        let ttl = raw.credential_ttl_secs.unwrap_or(86_400);
        if ttl == 0 {
            return Err("`credential_ttl_secs` must be at least 1".into());
        }
        Ok(ExternalServicesSettings {
            services: raw.services,
            secret,
            credential_ttl: Duration::from_secs(ttl),
        })
    }
}

/// TURN REST API credentials: `(username, password)` for `user`, valid until `expiry`
/// (Unix seconds).
pub fn turn_credentials(secret: &[u8], expiry: u64, user: &str) -> (String, String) {
    let username = format!("{expiry}:{user}");
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let password = match Hmac::<Sha1>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            BASE64.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, password)
}

/// The external services module.
pub struct ExternalServices {
    /// Replaced whole by a reload; one request reads one snapshot.
    current: Live<Current>,
}

/// The services and the secret in force.
struct Current {
    services: Vec<ServiceConfig>,
    secret: Option<Vec<u8>>,
    ttl: Duration,
}

impl fmt::Debug for ExternalServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExternalServices")
            .field("services", &self.current.get().services)
            .finish_non_exhaustive()
    }
}

/// The secret itself: a secret file is read now, and a missing or empty one is an error
/// naming it.
fn read_secret(source: Option<&SecretSource>) -> Result<Option<Vec<u8>>, String> {
    match source {
        None => Ok(None),
        Some(SecretSource::Inline(s)) => Ok(Some(s.clone().into_bytes())),
        Some(SecretSource::File(path)) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("turn_secret_file {}: cannot read it: {e}", path.display()))?;
            let secret = text.trim();
            if secret.is_empty() {
                return Err(format!(
                    "turn_secret_file {} is empty; write coturn's static-auth-secret in it",
                    path.display()
                ));
            }
            Ok(Some(secret.as_bytes().to_vec()))
        }
    }
}

impl Current {
    /// What `settings` describe, their secret already read ([`read_secret`]).
    fn new(settings: ExternalServicesSettings, secret: Option<Vec<u8>>) -> Self {
        Current {
            services: settings.services,
            secret,
            ttl: settings.credential_ttl,
        }
    }
}

impl ExternalServices {
    /// The module; a secret file is read now, and a missing or empty one is an error naming
    /// it.
    pub fn new(settings: ExternalServicesSettings) -> Result<Self, ModuleError> {
        let secret =
            read_secret(settings.secret.as_ref()).map_err(|message| ModuleError::Invalid {
                module: "external_services".into(),
                message,
            })?;
        Ok(ExternalServices {
            current: Live::new(Current::new(settings, secret)),
        })
    }
}

impl Reconfigure for ExternalServices {
    type Settings = ExternalServicesSettings;

    /// Reads a secret file now, so that applying cannot fail: the secret read is kept inline.
    fn check(&self, new: &mut ExternalServicesSettings) -> Result<Vec<&'static str>, String> {
        let secret = read_secret(new.secret.as_ref())?;
        new.secret = secret
            .map(|s| String::from_utf8(s).map(SecretSource::Inline))
            .transpose()
            .map_err(|_| "turn_secret_file is not UTF-8".to_owned())?;
        Ok(Vec::new())
    }

    fn reconfigure(&self, new: ExternalServicesSettings) {
        let secret = match &new.secret {
            Some(SecretSource::Inline(s)) => Some(s.clone().into_bytes()),
            _ => None,
        };
        self.current.set(Current::new(new, secret));
    }
}

impl Current {
    /// The `<service/>` for `config`, with credentials for `user` when it is restricted.
    fn describe(&self, config: &ServiceConfig, user: &BareJid, now: SystemTime) -> Service {
        let mut service = Service {
            host: config.host.clone(),
            name: config.name.clone(),
            port: config.port,
            transport: config.transport.map(|t| t.as_str().to_owned()),
            kind: config.kind.as_str().to_owned(),
            ..Service::default()
        };
        if config.restricted() {
            service.restricted = Some(true);
            if let Some(secret) = &self.secret {
                let expiry = now + self.ttl;
                let unix = expiry.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let (username, password) = turn_credentials(secret, unix, user.as_str());
                service.username = Some(username);
                service.password = Some(password);
                service.expires = Some(format_datetime(UNIX_EPOCH + Duration::from_secs(unix)));
            }
        }
        service
    }

    fn services(&self, query: &Services, user: &BareJid, now: SystemTime) -> Services {
        Services {
            kind: query.kind.clone(),
            services: self
                .services
                .iter()
                .filter(|s| query.kind.as_deref().is_none_or(|k| k == s.kind.as_str()))
                .map(|s| self.describe(s, user, now))
                .collect(),
        }
    }

    fn credentials(
        &self,
        query: &Credentials,
        user: &BareJid,
        now: SystemTime,
    ) -> Result<Credentials, StanzaError> {
        if query.services.is_empty() {
            return Err(StanzaError::bad_request(
                "name the service: <service host='…' type='…'/>",
            ));
        }
        let services: Vec<Service> = self
            .services
            .iter()
            .filter(|s| s.restricted())
            .filter(|s| {
                query.services.iter().any(|q| {
                    q.host == s.host
                        && q.kind == s.kind.as_str()
                        && q.port.is_none_or(|p| Some(p) == s.port)
                })
            })
            .map(|s| self.describe(s, user, now))
            .collect();
        if services.is_empty() {
            return Err(StanzaError::new(DefinedCondition::ItemNotFound)
                .with_text("no service here gives credentials for that host and type"));
        }
        Ok(Credentials { services })
    }
}

#[async_trait]
impl IqHandler for ExternalServices {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let user = request.from.to_bare();
        if user.node().is_none() || user.domain() != request.to.domain() {
            return Err(StanzaError::new(DefinedCondition::Forbidden)
                .with_text("external services are for this server's own users"));
        }
        let now = SystemTime::now();
        let current = self.current.get();
        if request.payload.name() == "services" {
            let query = Services::try_from(request.payload)?;
            return Ok(Some(current.services(&query, &user, now).to_element()));
        }
        let query = Credentials::try_from(request.payload)?;
        Ok(Some(current.credentials(&query, &user, now)?.to_element()))
    }
}

impl Module for ExternalServices {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        for name in ["services", "credentials"] {
            registry.iq(
                IqTarget::Server,
                IqType::Get,
                NS_EXTDISCO,
                name,
                self.clone(),
            );
        }
        registry.server_feature(NS_EXTDISCO);
    }
}

#[cfg(test)]
#[path = "external_services_tests.rs"]
mod tests;
