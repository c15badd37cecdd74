//! Helpers of the XEP-0313 tests: queries, their results and `<fin/>`.

use std::fmt::Write as _;

use xmppd_testkit::{TestClient, stanza_error_condition};
use xmppd_xml::Element;

use super::CLIENT;

pub const MAM: &str = "urn:xmpp:mam:2";
pub const RSM: &str = "http://jabber.org/protocol/rsm";
pub const FORWARD: &str = "urn:xmpp:forward:0";
pub const SID: &str = "urn:xmpp:sid:0";

/// One query: form fields, RSM children (raw XML), flip-page, and the archive addressed
/// (`None`: no `to`, the user's own).
#[derive(Default)]
pub struct Q<'a> {
    pub fields: Vec<(&'a str, Vec<String>)>,
    pub rsm: String,
    pub flip: bool,
    pub to: Option<&'a str>,
}

impl<'a> Q<'a> {
    pub fn field(mut self, var: &'a str, value: impl Into<String>) -> Self {
        self.fields.push((var, vec![value.into()]));
        self
    }
    pub fn rsm(mut self, xml: impl Into<String>) -> Self {
        self.rsm.push_str(&xml.into());
        self
    }
    pub fn max(self, n: usize) -> Self {
        self.rsm(format!("<max>{n}</max>"))
    }
}

/// What a query returned: the results in arrival order, and `<fin/>`.
pub struct Answer {
    pub results: Vec<Element>,
    pub fin: Element,
}

impl Answer {
    /// The archive ids of the results.
    pub fn ids(&self) -> Vec<String> {
        self.results
            .iter()
            .filter_map(|r| r.attr("id").map(str::to_owned))
            .collect()
    }
    /// The bodies of the archived messages.
    pub fn bodies(&self) -> Vec<String> {
        self.results
            .iter()
            .map(|r| {
                forwarded_message(r)
                    .and_then(super::body)
                    .unwrap_or_default()
            })
            .collect()
    }
    pub fn complete(&self) -> bool {
        self.fin.attr("complete") == Some("true")
    }
    fn set_child(&self, name: &str) -> Option<Element> {
        self.fin.child("set", RSM)?.child(name, RSM).cloned()
    }
    pub fn count(&self) -> Option<usize> {
        self.set_child("count")?.text().parse().ok()
    }
    pub fn first(&self) -> Option<String> {
        self.set_child("first").map(|f| f.text())
    }
    pub fn first_index(&self) -> Option<usize> {
        self.set_child("first")?.attr("index")?.parse().ok()
    }
    pub fn last(&self) -> Option<String> {
        self.set_child("last").map(|f| f.text())
    }
}

/// The `<message/>` inside a `<result/>`.
pub fn forwarded_message(result: &Element) -> Option<&Element> {
    result.child("forwarded", FORWARD)?.child("message", CLIENT)
}

fn query_xml(id: &str, queryid: &str, q: &Q<'_>) -> String {
    let to = q.to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    let mut xml = format!("<iq type='set' id='{id}'{to}><query xmlns='{MAM}' queryid='{queryid}'>");
    if !q.fields.is_empty() {
        xml.push_str("<x xmlns='jabber:x:data' type='submit'>");
        xml.push_str("<field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>");
        for (var, values) in &q.fields {
            let _ = write!(xml, "<field var='{var}'>");
            for v in values {
                let _ = write!(xml, "<value>{v}</value>");
            }
            xml.push_str("</field>");
        }
        xml.push_str("</x>");
    }
    if !q.rsm.is_empty() {
        let _ = write!(xml, "<set xmlns='{RSM}'>{}</set>", q.rsm);
    }
    if q.flip {
        xml.push_str("<flip-page/>");
    }
    xml.push_str("</query></iq>");
    xml
}

/// Sends a query and collects its results up to the iq answer; the answer must be a result.
pub async fn query(client: &mut TestClient, id: &str, q: Q<'_>) -> anyhow::Result<Answer> {
    match query_raw(client, id, q).await? {
        Ok(answer) => Ok(answer),
        Err(condition) => anyhow::bail!("query {id} failed with {condition}"),
    }
}

/// Sends a query; the answer, or the error condition.
pub async fn query_raw(
    client: &mut TestClient,
    id: &str,
    q: Q<'_>,
) -> anyhow::Result<Result<Answer, String>> {
    let queryid = format!("q-{id}");
    client.send(&query_xml(id, &queryid, &q)).await?;
    let mut results = Vec::new();
    loop {
        let el = client.recv().await?;
        if el.is("iq", CLIENT) && el.attr("id") == Some(id) {
            if el.attr("type") == Some("error") {
                anyhow::ensure!(results.is_empty(), "results before an error");
                return Ok(Err(stanza_error_condition(&el).unwrap_or_default()));
            }
            anyhow::ensure!(el.attr("type") == Some("result"), "not a result: {el}");
            let fin = el
                .child("fin", MAM)
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no <fin/> in {el}"))?;
            return Ok(Ok(Answer { results, fin }));
        }
        let result = el
            .child("result", MAM)
            .filter(|r| r.attr("queryid") == Some(queryid.as_str()))
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("expected a result of {id}, got {el}"))?;
        anyhow::ensure!(
            el.is("message", CLIENT)
                && el.attr("from")
                    == client
                        .jid
                        .as_ref()
                        .map(|j| j.to_bare().as_str().to_owned())
                        .as_deref(),
            "a result not from the user's own archive: {el}"
        );
        results.push(result);
    }
}

/// Sends an iq get or set with `payload` (no `to`) and returns the answer.
pub async fn iq(
    client: &mut TestClient,
    ty: &str,
    id: &str,
    payload: &str,
) -> anyhow::Result<Element> {
    client
        .send(&format!("<iq type='{ty}' id='{id}'>{payload}</iq>"))
        .await?;
    client
        .expect(&format!("answer to {id}"), |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some(id)
        })
        .await
}

/// The ids of `<stanza-id/>` children by `by`.
pub fn stanza_ids_by(message: &Element, by: &str) -> Vec<String> {
    message
        .children()
        .filter(|c| c.is("stanza-id", SID) && c.attr("by") == Some(by))
        .map(|c| c.attr("id").unwrap_or_default().to_owned())
        .collect()
}
