//! The `tls-exporter` channel binding (RFC 9266) and the client's SNI, taken from rustls'
//! callbacks.
//!
//! The unbuffered API has no keying-material exporter, which SCRAM-*-PLUS needs for the
//! `tls-exporter` channel binding (RFC 9266). rustls hands the TLS 1.3 exporter secret to the
//! configured [`KeyLog`] while the handshake runs, synchronously, inside
//! [`UnbufferedServerConnection::process_tls_records`] on the calling thread. [`ExporterCapture`]
//! keeps that secret in a thread-local slot that the stream empties right after each call, so
//! the secret reaches the connection whose handshake produced it and nothing else; the
//! exporter itself is RFC 8446 §7.5, computed with the negotiated suite's own HKDF. The
//! certificate resolver reports the client's SNI the same way.

use std::cell::RefCell;

use rustls::crypto::tls13::{HkdfExpander, OkmBlock};
use rustls::{KeyLog, SupportedCipherSuite};

use super::ServerTlsStream;

thread_local! {
    /// What the handshake reported through rustls' callbacks during the current call.
    static CAPTURED: RefCell<Captured> = const { RefCell::new(Captured { exporter_secret: None, server_name: None }) };
}

/// Values rustls hands to callbacks during a handshake step.
struct Captured {
    exporter_secret: Option<OkmBlock>,
    server_name: Option<Box<str>>,
}

/// The [`KeyLog`] that passes the TLS 1.3 exporter secret to the stream whose handshake is
/// running on this thread; every other secret is declined (`will_log` is false), so rustls
/// does not even compute the log line.
#[derive(Debug)]
pub(crate) struct ExporterCapture;

impl KeyLog for ExporterCapture {
    fn will_log(&self, label: &str) -> bool {
        label == "EXPORTER_SECRET"
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == "EXPORTER_SECRET" && secret.len() <= OkmBlock::MAX_LEN {
            CAPTURED.with_borrow_mut(|c| c.exporter_secret = Some(OkmBlock::new(secret)));
        }
    }
}

/// Called by the certificate resolver with the SNI of the handshake running on this thread.
pub(crate) fn capture_server_name(name: Option<&str>) {
    CAPTURED.with_borrow_mut(|c| c.server_name = name.map(Box::from));
}

/// The keying-material exporter of an established TLS 1.3 connection (RFC 8446 §7.5).
pub struct Exporter {
    secret: OkmBlock,
    suite: SupportedCipherSuite,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("suite", &self.suite.suite())
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// `TLS-Exporter(label, context, out.len())`. In TLS 1.3 an absent context and an empty
    /// one are the same (§7.5), so `context` is a plain slice.
    pub fn export(&self, label: &[u8], context: &[u8], out: &mut [u8]) -> Option<()> {
        let SupportedCipherSuite::Tls13(suite) = self.suite else {
            return None;
        };
        let hash = suite.common.hash_provider;
        // Derive-Secret(exporter_secret, label, "") = HKDF-Expand-Label(.., Hash(""), Hash.length)
        let mut derived = [0u8; OkmBlock::MAX_LEN];
        let derived = derived.get_mut(..hash.output_len())?;
        let expander = suite.hkdf_provider.expander_for_okm(&self.secret);
        expand_label(&*expander, label, hash.hash(&[]).as_ref(), derived)?;
        let expander = suite
            .hkdf_provider
            .expander_for_okm(&OkmBlock::new(derived));
        derived.fill(0);
        expand_label(&*expander, b"exporter", hash.hash(context).as_ref(), out)
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1).
fn expand_label(
    expander: &dyn HkdfExpander,
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Option<()> {
    let length = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    let context_len = [u8::try_from(context.len()).ok()?];
    expander
        .expand_slice(
            &[&length, &label_len, b"tls13 ", label, &context_len, context],
            out,
        )
        .ok()
}

impl ServerTlsStream {
    /// The TLS 1.3 keying-material exporter; it can be taken once (keeping the secret
    /// for the connection's whole life would serve nothing). `None` for TLS 1.2.
    pub fn take_exporter(&mut self) -> Option<Exporter> {
        let secret = *self.exporter_secret.take()?;
        let suite = self.conn.negotiated_cipher_suite()?;
        (self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then_some(Exporter { secret, suite })
    }

    /// Moves what rustls reported during the last call from the thread's slot to this stream.
    pub(super) fn take_captured(&mut self) {
        CAPTURED.with_borrow_mut(|c| {
            if let Some(secret) = c.exporter_secret.take() {
                self.exporter_secret = Some(Box::new(secret));
            }
            if let Some(name) = c.server_name.take() {
                self.server_name = Some(name);
            }
        });
    }
}
