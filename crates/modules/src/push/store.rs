//! An account's push registrations as stored (JSON in the KeyVal store `push`).

use jid::Jid;
use serde::{Deserialize, Serialize};
use xmppd_core::storage::StorageError;
use xmppd_proto::data_form::FORM_TYPE;
use xmppd_proto::push::Enable;

/// One (service, node) pair and its publish options.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Registration {
    /// The push service's JID, prepared.
    pub(super) jid: String,
    /// The node at the service.
    pub(super) node: String,
    /// The publish options' fields (`FORM_TYPE` left out), values in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) options: Vec<(String, Vec<String>)>,
}

impl From<Enable> for Registration {
    fn from(enable: Enable) -> Self {
        let options = enable
            .publish_options
            .map(|form| {
                form.fields
                    .into_iter()
                    .filter_map(|f| Some((f.var?, f.values)))
                    .filter(|(var, _)| var != FORM_TYPE)
                    .collect()
            })
            .unwrap_or_default();
        Registration {
            jid: enable.jid.as_str().to_owned(),
            node: enable.node,
            options,
        }
    }
}

/// One account's registrations, in the order they were first enabled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(super) struct Registrations(Vec<Registration>);

impl Registrations {
    pub(super) fn encode(&self) -> Result<Vec<u8>, StorageError> {
        serde_json::to_vec(self).map_err(|e| StorageError::Corrupt(format!("push: {e}")))
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(format!("push: {e}")))
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Registration> {
        self.0.iter()
    }

    /// Adds `reg`, or replaces the options of the same (service, node) pair (§5); `false`
    /// when it is new and there are `max` already.
    pub(super) fn upsert(&mut self, reg: Registration, max: usize) -> bool {
        if let Some(old) = self
            .0
            .iter_mut()
            .find(|r| r.jid == reg.jid && r.node == reg.node)
        {
            *old = reg;
            return true;
        }
        if self.0.len() >= max {
            return false;
        }
        self.0.push(reg);
        true
    }

    /// Removes the service's registrations, or only the one of `node` (§6); whether any was.
    pub(super) fn remove(&mut self, service: &Jid, node: Option<&str>) -> bool {
        let before = self.0.len();
        self.0
            .retain(|r| r.jid != service.as_str() || node.is_some_and(|n| n != r.node));
        self.0.len() != before
    }
}
