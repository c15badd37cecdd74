//! XEP-0215: External Service Discovery — the payloads.
//!
//! A client asks its server for the STUN/TURN servers it knows with `<services/>`
//! (optionally `type='turn'`, §3.2) and for short-term credentials at one of them with
//! `<credentials><service host='…' type='…'/></credentials>` (§3.3). Both answers are lists
//! of `<service/>` elements with the attributes of §2's table.
//!
//! The schema (§8) requires `host` and `type` on every `<service/>`; a `<credentials/>`
//! request naming neither cannot be answered and is invalid. `restricted` is an
//! `xs:boolean`, `port` an `xs:unsignedShort`. Extended information (§4, a data form inside
//! `<service/>`) is neither read nor written: nothing here needs it.

use xmppd_xml::Element;

use crate::payload::{PayloadError, into_element, number_attr, parse_bool, required_attr};

/// `urn:xmpp:extdisco:2`.
pub const NS_EXTDISCO: &str = "urn:xmpp:extdisco:2";

/// One external service (§2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    /// `action` of a push (`add`, `delete`, `modify`); `None` in answers to a query.
    pub action: Option<String>,
    /// When the credentials expire, in XEP-0082 format (UTC).
    pub expires: Option<String>,
    /// FQDN or IP address.
    pub host: String,
    /// A human-readable label.
    pub name: Option<String>,
    /// A password for the service.
    pub password: Option<String>,
    /// The port.
    pub port: Option<u16>,
    /// Whether credentials are required (and must be requested if not given).
    pub restricted: Option<bool>,
    /// `udp` or `tcp`.
    pub transport: Option<String>,
    /// The registered service type (`stun`, `turn`, `turns` …).
    pub kind: String,
    /// A username for the service.
    pub username: Option<String>,
}

impl Service {
    /// The `<service/>` element, attributes in the order of §2's table.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("service", NS_EXTDISCO);
        let port = self.port.map(|p| p.to_string());
        let restricted = self
            .restricted
            .map(|r| if r { "1" } else { "0" }.to_owned());
        let attrs = [
            ("action", self.action.as_ref()),
            ("expires", self.expires.as_ref()),
            ("host", Some(&self.host)),
            ("name", self.name.as_ref()),
            ("password", self.password.as_ref()),
            ("port", port.as_ref()),
            ("restricted", restricted.as_ref()),
            ("transport", self.transport.as_ref()),
            ("type", Some(&self.kind)),
            ("username", self.username.as_ref()),
        ];
        for (name, value) in attrs {
            if let Some(value) = value {
                el.set_attr(name, value.as_str());
            }
        }
        el
    }
}

impl TryFrom<&Element> for Service {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("service", NS_EXTDISCO) {
            return Err(PayloadError::Mismatch);
        }
        let owned = |name: &str| el.attr(name).map(str::to_owned);
        let restricted = match el.attr("restricted") {
            None => None,
            Some(v) => Some(parse_bool(v).ok_or_else(|| {
                PayloadError::invalid(format!("'restricted' must be a boolean, not '{v}'"))
            })?),
        };
        Ok(Service {
            action: owned("action"),
            expires: owned("expires"),
            host: required_attr(el, "host")?.to_owned(),
            name: owned("name"),
            password: owned("password"),
            port: number_attr(el, "port")?,
            restricted,
            transport: owned("transport"),
            kind: required_attr(el, "type")?.to_owned(),
            username: owned("username"),
        })
    }
}

/// `<services/>`: a request (empty, `kind` filtering by type, §3.2) or its answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Services {
    /// The `type` asked for (mirrored in the answer).
    pub kind: Option<String>,
    /// The services.
    pub services: Vec<Service>,
}

impl Services {
    /// The `<services/>` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("services", NS_EXTDISCO);
        if let Some(kind) = &self.kind {
            el.set_attr("type", kind.as_str());
        }
        for service in &self.services {
            el.push_child(service.to_element());
        }
        el
    }
}

impl TryFrom<&Element> for Services {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("services", NS_EXTDISCO) {
            return Err(PayloadError::Mismatch);
        }
        Ok(Services {
            kind: el.attr("type").map(str::to_owned),
            services: services_in(el)?,
        })
    }
}

/// `<credentials/>`: a request naming the service(s) wanted (§3.3), or its answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The services (with `host` and `type`, and `port` to tell apart several on one host).
    pub services: Vec<Service>,
}

impl Credentials {
    /// The `<credentials/>` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("credentials", NS_EXTDISCO);
        for service in &self.services {
            el.push_child(service.to_element());
        }
        el
    }
}

impl TryFrom<&Element> for Credentials {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("credentials", NS_EXTDISCO) {
            return Err(PayloadError::Mismatch);
        }
        Ok(Credentials {
            services: services_in(el)?,
        })
    }
}

fn services_in(el: &Element) -> Result<Vec<Service>, PayloadError> {
    el.children()
        .filter(|c| c.is("service", NS_EXTDISCO))
        .map(Service::try_from)
        .collect()
}

into_element!(Service, Services, Credentials);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    #[test]
    fn reads_a_list_of_services() {
        // §3.1 Example 2, abridged.
        let s = Services::try_from(&element(
            "<services xmlns='urn:xmpp:extdisco:2'>\
               <service host='stun.shakespeare.lit' port='9998' transport='udp' type='stun'/>\
               <service host='relay.shakespeare.lit' password='jj929jkj5sadjfj93v3n' port='9999' \
                 transport='udp' type='turn' username='nb78932lkjlskjfdb7g8'/>\
             </services>",
        ))
        .unwrap();
        assert_eq!(s.kind, None);
        assert_eq!(s.services.len(), 2);
        assert_eq!(s.services[0].port, Some(9998));
        assert_eq!(s.services[1].kind, "turn");
        assert_eq!(
            s.services[1].username.as_deref(),
            Some("nb78932lkjlskjfdb7g8")
        );
    }

    #[test]
    fn serialises_exactly_and_round_trips() {
        let answer = Services {
            kind: Some("turn".into()),
            services: vec![Service {
                expires: Some("2026-12-08T00:00:00Z".into()),
                host: "127.0.0.1".into(),
                password: Some("pw".into()),
                port: Some(3478),
                restricted: Some(true),
                transport: Some("udp".into()),
                kind: "turn".into(),
                username: Some("1796688000:alice@localhost".into()),
                ..Service::default()
            }],
        };
        assert_eq!(
            answer.to_element().to_string(),
            "<services xmlns=\"urn:xmpp:extdisco:2\" type=\"turn\"><service \
             expires=\"2026-12-08T00:00:00Z\" host=\"127.0.0.1\" password=\"pw\" port=\"3478\" \
             restricted=\"1\" transport=\"udp\" type=\"turn\" \
             username=\"1796688000:alice@localhost\"/></services>"
        );
        assert_eq!(Services::try_from(&Element::from(&answer)), Ok(answer));
        let creds = Credentials {
            services: vec![Service {
                host: "turn.example".into(),
                kind: "turn".into(),
                ..Service::default()
            }],
        };
        assert_eq!(Credentials::try_from(&creds.to_element()), Ok(creds));
    }

    #[test]
    fn reads_a_credentials_request_ignoring_unknown_children() {
        // §3.3 Example 6.
        let c = Credentials::try_from(&element(
            "<credentials xmlns='urn:xmpp:extdisco:2'><other/>\
               <service host='turn.shakespeare.lit' type='turn' extra='x'/></credentials>",
        ))
        .unwrap();
        assert_eq!(c.services.len(), 1);
        assert_eq!(c.services[0].host, "turn.shakespeare.lit");
        assert_eq!(c.services[0].port, None);
    }

    #[test]
    fn missing_or_malformed_attributes_are_refused() {
        for (service, what) in [
            ("<service type='turn'/>", "'host'"),
            ("<service host='h'/>", "'type'"),
            ("<service host='h' type='turn' port='70000'/>", "'port'"),
            (
                "<service host='h' type='turn' restricted='yes'/>",
                "'restricted'",
            ),
        ] {
            let el = element(&format!(
                "<credentials xmlns='urn:xmpp:extdisco:2'>{service}</credentials>"
            ));
            assert!(
                matches!(Credentials::try_from(&el), Err(PayloadError::Invalid(t)) if t.contains(what)),
                "{service}"
            );
        }
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        let ping = element("<ping xmlns='urn:xmpp:ping'/>");
        assert_eq!(Services::try_from(&ping), Err(PayloadError::Mismatch));
        assert_eq!(Credentials::try_from(&ping), Err(PayloadError::Mismatch));
        assert_eq!(Service::try_from(&ping), Err(PayloadError::Mismatch));
    }
}
