//! XEP-0363 across servers: a user of another server asks a.test's upload service for a slot
//! over federation and is refused (`forbidden`, local users only by default, §4 leaves who may
//! upload to the service); a.test's own users get slots (`upload.rs`).

use crate::common;

use common::CLIENT;
use common::federation::{Auth, next_matching, online, two_servers_with};
use xmppd_proto::upload;
use xmppd_testkit::stanza_error_condition;

const SERVICE: &str = "upload.a.test";

fn request(id: &str) -> String {
    format!(
        "<iq type='get' id='{id}' to='{SERVICE}'><request xmlns='{}' filename='cat.jpg' \
         size='1024' content-type='image/jpeg'/></iq>",
        upload::NS
    )
}

#[tokio::test]
async fn a_remote_user_is_refused_a_slot() -> anyhow::Result<()> {
    let (_pki, _a, b) = two_servers_with(Auth::Dialback, None, &[SERVICE]).await?;
    let mut bob = online(&b, "bob").await?;
    bob.send(&request("remote")).await?;
    let answer = next_matching(&mut bob, "the slot answer", |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some("remote")
    })
    .await?;
    assert_eq!(answer.attr("type"), Some("error"), "{answer}");
    assert_eq!(answer.attr("from"), Some(SERVICE), "{answer}");
    assert_eq!(
        stanza_error_condition(&answer).as_deref(),
        Some("forbidden"),
        "{answer}"
    );
    let text = answer
        .child("error", CLIENT)
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        text.contains("only users of this server may upload"),
        "{answer}"
    );

    Ok(())
}
