//! A second, independent client library against our server: tokio-xmpp (xmpp-rs) logs in
//! and chats with a testkit client in both directions.
//!
//! tokio-xmpp's own STARTTLS connector trusts only the system roots (or webpki-roots) and
//! resolves the domain through DNS; its documented extension point is the
//! [`ServerConnector`] trait. [`TestCaStartTls`] implements it with tokio-xmpp's own stream
//! layer (`initiate_stream`, its `<starttls/>` nonza): it dials the test listener on
//! 127.0.0.1, negotiates STARTTLS, and runs the handshake with a rustls configuration that
//! trusts only the test CA. Authentication, binding and stanza handling are tokio-xmpp's
//! unmodified code, which picks SCRAM-SHA-256-PLUS with `tls-exporter` channel binding.

use crate::common;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use rustls::pki_types::ServerName;
use sasl::common::{ChannelBinding, Credentials};
use tokio::io::BufStream;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_xmpp::connect::ServerConnector;
use tokio_xmpp::error::AuthError;
use tokio_xmpp::jid::{FullJid, Jid};
use tokio_xmpp::parsers::message::{Lang, Message, MessageType};
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::sasl::DefinedCondition;
use tokio_xmpp::parsers::starttls;
use tokio_xmpp::xmlstream::{
    PendingFeaturesRecv, ReadError, StreamHeader, Timeouts, XmppStreamElement, initiate_stream,
};
use tokio_xmpp::{Client, Event, Stanza};

use common::{add_users, expect_message, online};
use xmppd_testkit::TestServer;

/// STARTTLS to a fixed loopback address, trusting a given rustls configuration.
#[derive(Clone)]
struct TestCaStartTls {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    /// Replaces the real `tls-exporter` value (to check the server verifies it).
    forged_binding: Option<Vec<u8>>,
}

impl std::fmt::Debug for TestCaStartTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCaStartTls")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn io_error(e: impl std::fmt::Display) -> tokio_xmpp::Error {
    std::io::Error::other(e.to_string()).into()
}

impl ServerConnector for TestCaStartTls {
    type Stream = BufStream<TlsStream<TcpStream>>;

    async fn connect(
        &self,
        jid: &Jid,
        ns: &'static str,
        timeouts: Timeouts,
    ) -> Result<(PendingFeaturesRecv<Self::Stream>, ChannelBinding), tokio_xmpp::Error> {
        let domain = jid.domain().as_str().to_owned();
        let header = || StreamHeader {
            to: Some(Cow::Owned(domain.clone())),
            from: None,
            id: None,
        };
        let tcp = TcpStream::connect(self.addr).await?;
        let plain = initiate_stream(BufStream::new(tcp), ns, header(), timeouts).await?;
        let (features, mut stream) = plain.recv_features::<XmppStreamElement>().await?;
        if !features.can_starttls() {
            return Err(io_error("the server does not offer STARTTLS"));
        }
        stream
            .send(&XmppStreamElement::Starttls(starttls::Nonza::Request(
                starttls::Request,
            )))
            .await?;
        // Bounded: the stream's own timeouts end a silent server.
        loop {
            match stream.next().await {
                Some(Ok(XmppStreamElement::Starttls(starttls::Nonza::Proceed(_)))) => break,
                Some(Ok(other)) => return Err(io_error(format!("expected <proceed/>: {other:?}"))),
                Some(Err(ReadError::SoftTimeout)) => continue,
                Some(Err(e)) => return Err(io_error(format!("{e:?}"))),
                None => return Err(tokio_xmpp::Error::Disconnected),
            }
        }
        let tcp = stream.into_inner().into_inner();
        let name = ServerName::try_from(domain.clone()).map_err(io_error)?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?;
        // RFC 9266 channel binding, as tokio-xmpp's own connector computes it.
        let exporter = tls
            .get_ref()
            .1
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .map_err(io_error)?;
        let binding = self
            .forged_binding
            .clone()
            .unwrap_or_else(|| exporter.to_vec());
        let stream = initiate_stream(BufStream::new(tls), ns, header(), timeouts).await?;
        Ok((stream, ChannelBinding::TlsExporter(binding)))
    }
}

/// The next event of the tokio-xmpp client, within the testkit's timeout.
async fn next_event(client: &mut Client) -> anyhow::Result<Event> {
    tokio::time::timeout(xmppd_testkit::EXPECT_TIMEOUT, client.next())
        .await
        .map_err(|_| anyhow::anyhow!("tokio-xmpp: no event in time"))?
        .ok_or_else(|| anyhow::anyhow!("tokio-xmpp: the client ended"))
}

/// A tokio-xmpp client for `jid` (password from [`common::password`]) through
/// [`TestCaStartTls`].
fn tokio_xmpp_client(server: &TestServer, jid: &str) -> anyhow::Result<Client> {
    let jid = FullJid::from_str(jid)?;
    let password = common::password(jid.node().map(|n| n.as_str()).unwrap_or_default());
    let connector = TestCaStartTls {
        addr: server.starttls_addr(),
        tls: server.tls_client_config(),
        forged_binding: None,
    };
    let timeouts = Timeouts {
        read_timeout: Duration::from_secs(10),
        response_timeout: Duration::from_secs(10),
    };
    Ok(Client::new_with_connector(
        jid, password, connector, timeouts,
    ))
}

/// tokio-xmpp's own SASL code (`client_login`) over [`TestCaStartTls`], up to the outcome.
async fn tokio_xmpp_sasl(
    server: &TestServer,
    user: &str,
    forged_binding: Option<Vec<u8>>,
) -> Result<(), tokio_xmpp::Error> {
    let connector = TestCaStartTls {
        addr: server.starttls_addr(),
        tls: server.tls_client_config(),
        forged_binding,
    };
    let jid = Jid::from_str(&format!("{user}@localhost"))?;
    let (stream, binding) = connector
        .connect(&jid, "jabber:client", Timeouts::default())
        .await?;
    let (features, stream) = stream.recv_features().await?;
    let credentials = Credentials::default()
        .with_username(user)
        .with_password(common::password(user))
        .with_channel_binding(binding);
    tokio_xmpp::client_login(stream, features.sasl_mechanisms, credentials).await?;
    Ok(())
}

#[tokio::test]
async fn tokio_xmpp_scram_plus_binding_is_checked_by_the_server() -> anyhow::Result<()> {
    // With channel-binding data tokio-xmpp chooses SCRAM-SHA-256-PLUS (tls-exporter). The
    // real value logs in; a forged one is refused with not-authorized.
    let server = TestServer::start().await?;
    add_users(&server, &["bob"]).await?;
    tokio_xmpp_sasl(&server, "bob", None).await?;
    match tokio_xmpp_sasl(&server, "bob", Some(vec![7u8; 32])).await {
        Err(tokio_xmpp::Error::Auth(AuthError::Fail(condition))) => {
            assert_eq!(condition, DefinedCondition::NotAuthorized)
        }
        other => anyhow::bail!("expected not-authorized, got {other:?}"),
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn tokio_xmpp_client_chats_with_a_testkit_client() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;

    // bob uses tokio-xmpp.
    let mut bob = tokio_xmpp_client(&server, "bob@localhost/xmpp-rs")?;
    let bound = match next_event(&mut bob).await? {
        Event::Online { bound_jid, .. } => bound_jid,
        other => anyhow::bail!("expected tokio-xmpp to come online, got {other:?}"),
    };
    assert_eq!(bound.to_string(), "bob@localhost/xmpp-rs");
    bob.send_stanza(Presence::new(PresenceType::None).into())
        .await?;
    // tokio-xmpp sees its own presence echoed.
    match next_event(&mut bob).await? {
        Event::Stanza(Stanza::Presence(p)) => {
            assert_eq!(
                p.from.map(|j| j.to_string()).as_deref(),
                Some("bob@localhost/xmpp-rs")
            )
        }
        other => anyhow::bail!("expected bob's own presence, got {other:?}"),
    }

    // testkit -> tokio-xmpp
    alice
        .send("<message to='bob@localhost/xmpp-rs' type='chat' id='a1'><body>hello from the testkit</body></message>")
        .await?;
    let message = match next_event(&mut bob).await? {
        Event::Stanza(Stanza::Message(m)) => m,
        other => anyhow::bail!("expected alice's message, got {other:?}"),
    };
    assert_eq!(
        message.from.as_ref().map(|j| j.to_string()).as_deref(),
        Some("alice@localhost/phone")
    );
    assert_eq!(message.type_, MessageType::Chat);
    // One body; its language is the stream's xml:lang (our header says `en`), which
    // xmpp-parsers applies to the body, so compare the texts.
    let bodies: Vec<&str> = message.bodies.values().map(String::as_str).collect();
    assert_eq!(bodies, ["hello from the testkit"]);

    // tokio-xmpp -> testkit
    let mut reply = Message::new(Some(Jid::from_str("alice@localhost/phone")?));
    reply.type_ = MessageType::Chat;
    reply
        .bodies
        .insert(Lang::default(), "hello from tokio-xmpp".to_owned());
    bob.send_stanza(reply.into()).await?;
    expect_message(
        &mut alice,
        "bob@localhost/xmpp-rs",
        "alice@localhost/phone",
        "hello from tokio-xmpp",
    )
    .await?;

    // bob leaves cleanly; alice has no presence subscription to him, so she hears nothing,
    // but the server must have unbound him: an iq to his full JID now bounces.
    bob.send_end().await?;
    anyhow::ensure!(
        common::unbound_within(&server, "bob@localhost/xmpp-rs", Duration::from_secs(10)).await?,
        "bob's session was not unbound after his stream ended"
    );
    alice
        .send(
            "<iq to='bob@localhost/xmpp-rs' type='get' id='a2'><ping xmlns='urn:xmpp:ping'/></iq>",
        )
        .await?;
    common::expect_error(
        &mut alice,
        "iq",
        "a2",
        "bob@localhost/xmpp-rs",
        "service-unavailable",
    )
    .await?;
    server.stop().await;
    Ok(())
}
