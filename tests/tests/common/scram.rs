//! SCRAM-SHA-256 driven by hand, for tests that look at (or tamper with) each message.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use xmppd_stream::sasl::{ClientChannelBinding, ScramClient, ScramHash};
use xmppd_testkit::TestClient;
use xmppd_xml::Element;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// A SCRAM exchange up to the client-final message, which is not sent yet.
pub struct Scram {
    /// The server's `<challenge/>`.
    pub challenge: Element,
    /// Its decoded server-first message (`r=…,s=…,i=…`).
    pub server_first: String,
    /// The client-final message the client would send for its password.
    pub client_final: String,
}

/// Starts SCRAM-SHA-256 as `user` with `password` on `client`.
pub async fn start(client: &mut TestClient, user: &str, password: &str) -> anyhow::Result<Scram> {
    let mut scram = ScramClient::new(
        ScramHash::Sha256,
        user,
        password,
        ClientChannelBinding::None,
        None,
    )
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let first = BASE64.encode(scram.first_message());
    client
        .send(&format!(
            "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await?;
    let challenge = client.recv().await?;
    anyhow::ensure!(
        challenge.is("challenge", SASL),
        "expected a challenge, got {challenge}"
    );
    let server_first = String::from_utf8(BASE64.decode(challenge.text().trim())?)?;
    let last = scram
        .handle_challenge(server_first.as_bytes())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(Scram {
        challenge,
        server_first,
        client_final: String::from_utf8(last)?,
    })
}

/// Sends `client_final` (the right one, or a tampered one); the server's answer.
pub async fn finish(client: &mut TestClient, client_final: &str) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<response xmlns='{SASL}'>{}</response>",
            BASE64.encode(client_final)
        ))
        .await?;
    client.recv().await
}
