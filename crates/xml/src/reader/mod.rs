//! The incremental stream reader.
//!
//! An XMPP stream is one XML document that arrives over minutes or days, in reads of any size
//! and split at any byte. [`Reader`] is sans-IO: [`Reader::feed`] appends bytes and
//! [`Reader::next_event`] returns the next [`StreamEvent`] once it is complete, `Ok(None)` while
//! more bytes are needed, or the [`XmlError`] that ends the stream.
//!
//! # Strategy
//!
//! The reader keeps one `Vec<u8>` of unconsumed input and an offset `pos` into it. Input is cut
//! into tokens: character data, and markup from `<` to its `>`.
//!
//! * **Markup** is delimited with quick-xml's own incremental scanners
//!   ([`quick_xml::parser::ElementParser`], which knows that `>` inside a quoted attribute value
//!   does not end a tag, and [`quick_xml::parser::PiParser`] for the XML declaration). When a
//!   tag is not complete yet, the scanner's state and the number of bytes already scanned are
//!   kept, and the next call resumes scanning at the first new byte. A tag that arrives one byte
//!   per read is therefore scanned once, not once per read. Only when the closing `>` is found
//!   is the tag parsed and validated, as a whole, from the buffer.
//! * **Character data** is consumed as it arrives. At the end of the buffer we process
//!   everything up to the last point that later bytes cannot change (not inside a UTF-8
//!   sequence, a reference, a `\r\n` pair or a potential `]]>`; see
//!   `validate.rs`) and append it to the open element, where adjacent text
//!   merges. Large text is thus never re-scanned and never held twice.
//! * Markup that RFC 6120 §11.1 forbids is rejected at its first distinguishing byte: `<!-`
//!   (comment) and `<!D`/`<!E`/`<!A`/`<!N` (DTD declarations) are `restricted-xml` without
//!   waiting for the rest; so is `<?` anywhere except the very start of the document.
//!
//! We use quick-xml's scanners rather than its `Reader`: the `Reader` strips a byte-order mark
//! at the start of every slice it is given (which would silently eat a U+FEFF in text when
//! resuming mid-document), cannot resume a half-scanned tag, reports an incomplete tag exactly
//! like a malformed one, and parses attributes leniently. What quick-xml does not check
//! (UTF-8, `Char` ranges, names, namespaces, references, attribute syntax, balance) is checked
//! in `validate.rs` and `tree.rs`, which also builds the
//! namespace-resolved [`Element`] directly, without an intermediate event list.
//!
//! # Limits
//!
//! Every byte of the stream header (including the XML declaration and leading whitespace) and of
//! each stanza is counted as it is consumed, and so is the unfinished token waiting in the
//! buffer. As soon as the count passes [`Limits::max_stanza_bytes`] the reader fails with
//! `policy-violation`: a 10 MB stanza fed in 4 KiB reads fails after about `max_stanza_bytes`,
//! with at most the limit plus one read buffered, whether the excess is text, an endless
//! attribute value or a tag that never closes. Whitespace between stanzas is consumed (and
//! dropped) immediately, so keepalives never accumulate. Depth and attribute count are checked
//! when a start tag is parsed, attributes while they are being parsed; the namespace
//! declarations in scope at once are bounded by the attribute limit too, so prefix lookups
//! stay cheap however the declarations are spread over nested elements.
//!
//! The buffer is compacted when at least half of it has been consumed (so moving the rest costs
//! no more than what was consumed: linear overall), and released when it is empty and has grown
//! beyond a few KiB, so an idle connection holds no large allocation. [`Reader::next_event`] must
//! be drained after each [`Reader::feed`]; limits are enforced there, not in `feed`.
//!
//! # Stream-level policy
//!
//! Between stanzas only whitespace is accepted; other character data at the first level is
//! well-formed XML but meaningless in XMPP, and is rejected as `not-well-formed` rather than
//! silently dropped. After `</stream:stream>` only whitespace may follow. An undeclared prefix is
//! `bad-namespace-prefix` (RFC 6120 §4.9.3.2 names exactly this case); other namespace errors
//! (`xmlns:p=''`, rebinding `xml`) are `not-well-formed`.

use memchr::memchr;
use quick_xml::parser::{ElementParser, Parser as _, PiParser};

use crate::element::Element;
use crate::scan::{is_plain_text, is_printable_ascii};
use crate::tree::{Closed, Tree, check_decl};
use crate::validate::{
    check_chars, check_text, is_ws, normalize_newlines, safe_text_prefix, unescape, utf8,
};

mod types;

pub use types::{Limits, StreamEvent, StreamHeader, XmlError};

/// `<![CDATA[`, the only `<![` construct XML has.
const CDATA_OPEN: &[u8] = b"<![CDATA[";

/// The UTF-8 byte-order mark, allowed once at the start of a document.
const BOM: &[u8] = b"\xEF\xBB\xBF";

fn nwf(msg: impl Into<String>) -> XmlError {
    XmlError::NotWellFormed(msg.into())
}

/// Whether `b` can be the first byte of a `NameStartChar` (non-ASCII is checked later, with
/// the whole name); lets `<<` or `< a` fail at once instead of when `>` arrives.
fn could_start_name(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':' || b >= 0x80
}

/// Where in the document we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Before the stream header: XML declaration, whitespace.
    Prolog,
    /// Inside `<stream:stream>`.
    Stream,
    /// After `</stream:stream>`: only whitespace may follow.
    Closed,
}

/// Which scanner is looking for the end of the markup token at `pos`.
#[derive(Clone, Copy, Debug)]
enum Scan {
    /// A start or empty-element tag.
    Start(ElementParser),
    /// An end tag.
    End,
    /// The XML declaration.
    Decl(PiParser),
    /// A CDATA section.
    CData,
}

/// An unfinished markup token starting at `pos`.
#[derive(Clone, Copy, Debug)]
struct Pending {
    scan: Scan,
    /// Bytes from `pos` already fed to the scanner.
    scanned: usize,
}

/// Outcome of one tokenising step.
enum Step {
    Event(StreamEvent),
    Continue,
    NeedMore,
}

/// Sans-IO reader: [`Reader::feed`] bytes in any split, then drain [`Reader::next_event`].
#[derive(Debug)]
pub struct Reader {
    limits: Limits,
    /// Received bytes; `buf[..pos]` is consumed.
    buf: Vec<u8>,
    pos: usize,
    phase: Phase,
    /// Nothing but a byte-order mark consumed yet in this document (an XML declaration may
    /// still come).
    doc_start: bool,
    /// This document follows a [`Reader::reset`]: whitespace before its XML declaration is
    /// what the client sent after the last element of the previous stream.
    restarted: bool,
    pending: Option<Pending>,
    /// Bytes of the current stream header or stanza consumed so far.
    counted: usize,
    tree: Tree,
    /// An event produced together with the previous one (`Close` after `<stream:stream/>`).
    /// `</stream:stream>` is due next (the header was an empty element).
    close_queued: bool,
    /// Set on the first error; the reader is poisoned afterwards. Boxed: every connection
    /// keeps a reader, and inline the error took 32 bytes of each connection's task.
    error: Option<Box<XmlError>>,
}

impl Reader {
    /// A reader expecting a stream header first.
    pub fn new(limits: Limits) -> Self {
        Reader {
            limits,
            buf: Vec::new(),
            pos: 0,
            phase: Phase::Prolog,
            doc_start: true,
            restarted: false,
            pending: None,
            counted: 0,
            tree: Tree::default(),
            close_queued: false,
            error: None,
        }
    }

    /// Changes the limits (e.g. raise the stanza size after authentication).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Starts a new document (a stream restart after SASL or STARTTLS), keeping the limits and
    /// any bytes already buffered but not consumed.
    ///
    /// Bytes that arrived before a TLS handshake must not be interpreted as part of the
    /// encrypted stream; callers check [`Reader::buffered`] is zero before upgrading and treat
    /// anything else as an attack (the STARTTLS command-injection class of bugs). A poisoned
    /// reader becomes usable again.
    ///
    /// Whitespace before the new document's XML declaration is accepted: clients end each
    /// element they write with a newline (`</auth>\n`), sent before they know the stream
    /// restarts, so it trails the previous stream rather than opening the new one.
    pub fn reset(&mut self) {
        self.phase = Phase::Prolog;
        self.doc_start = true;
        self.restarted = true;
        self.pending = None;
        self.counted = 0;
        self.tree.clear();
        self.close_queued = false;
        self.error = None;
    }

    /// Appends received bytes.
    ///
    /// Bytes fed to a poisoned reader are dropped.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let unconsumed = self.buf.len() - self.pos;
        if self.pos > 0 && self.pos >= unconsumed {
            // At least half is consumed: moving the rest costs less than what was consumed.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete event, `Ok(None)` when more bytes are needed. After an error the
    /// reader is poisoned and keeps returning it.
    pub fn next_event(&mut self) -> Result<Option<StreamEvent>, XmlError> {
        if let Some(e) = &self.error {
            return Err(XmlError::clone(e));
        }
        if std::mem::take(&mut self.close_queued) {
            return Ok(Some(StreamEvent::Close));
        }
        loop {
            match self.step() {
                Ok(Step::Continue) => {}
                Ok(Step::Event(event)) => return Ok(Some(event)),
                Ok(Step::NeedMore) => {
                    let waiting = self.counted.saturating_add(self.buffered());
                    if waiting > self.limits.max_stanza_bytes {
                        return Err(self.fail(self.too_big()));
                    }
                    self.release_if_idle();
                    return Ok(None);
                }
                Err(e) => return Err(self.fail(e)),
            }
        }
    }

    /// Bytes buffered but not yet consumed by an event (for memory accounting and tests).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Drops the XML whitespace at the head of the buffered bytes and returns how many bytes
    /// remain buffered. Before a TLS upgrade this tells whether the client pipelined anything
    /// but the newline many clients write after `<starttls/>`.
    pub fn skip_whitespace(&mut self) -> usize {
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        self.pos += avail.iter().take_while(|&&b| is_ws(b)).count();
        self.buffered()
    }

    /// Whether everything fed so far has been consumed by complete top-level elements: no
    /// stanza is half-read and no markup is half-scanned. Transports that carry one element
    /// per message (WebSocket, RFC 7395 §3.3.3) check this after each message.
    pub fn at_element_boundary(&self) -> bool {
        self.pending.is_none() && self.tree.depth() == 0 && self.buffered() == 0
    }

    /// Capacity of the internal input buffer (for memory accounting and tests).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn too_big(&self) -> XmlError {
        XmlError::StanzaTooBig {
            limit: self.limits.max_stanza_bytes,
        }
    }

    /// Poisons the reader and frees what it holds.
    fn fail(&mut self, e: XmlError) -> XmlError {
        self.error = Some(Box::new(e.clone()));
        self.buf = Vec::new();
        self.pos = 0;
        self.pending = None;
        self.tree = Tree::default();
        e
    }

    /// Once every byte fed is consumed, frees the input buffer and the tree's scratch space:
    /// an idle stream then holds no buffer at all. A busy one pays one allocation per read,
    /// which is small beside the read itself.
    fn release_if_idle(&mut self) {
        if self.pos == self.buf.len() {
            self.buf = Vec::new();
            self.pos = 0;
            self.tree.release_scratch();
        }
    }

    /// Marks `n` bytes at `pos` consumed and counts them against the stanza limit.
    fn consume(&mut self, n: usize) -> Result<(), XmlError> {
        self.pos += n;
        self.doc_start = false;
        self.counted = self.counted.saturating_add(n);
        if self.counted > self.limits.max_stanza_bytes {
            return Err(self.too_big());
        }
        Ok(())
    }

    fn step(&mut self) -> Result<Step, XmlError> {
        if let Some(pending) = self.pending {
            return self.resume(pending);
        }
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let Some(&first) = avail.first() else {
            return Ok(Step::NeedMore);
        };
        if self.doc_start && first == BOM[0] {
            if avail.len() < BOM.len() && BOM.starts_with(avail) {
                return Ok(Step::NeedMore);
            }
            if avail.starts_with(BOM) {
                self.consume(BOM.len())?;
                self.doc_start = true;
                return Ok(Step::Continue);
            }
        }
        if first == b'<' {
            self.markup()
        } else {
            self.text()
        }
    }

    /// Dispatches on the byte after `<`.
    fn markup(&mut self) -> Result<Step, XmlError> {
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let Some(&second) = avail.get(1) else {
            return Ok(Step::NeedMore);
        };
        if self.phase == Phase::Closed {
            return Err(nwf("markup after the end of the stream"));
        }
        let pending = match second {
            b'!' => return self.bang(),
            b'?' if self.doc_start && self.phase == Phase::Prolog => Pending {
                scan: Scan::Decl(PiParser(false)),
                scanned: 2,
            },
            b'?' => return Err(XmlError::RestrictedXml("processing instruction".into())),
            b'/' => Pending {
                scan: Scan::End,
                scanned: 2,
            },
            b if !could_start_name(b) => return Err(nwf("'<' not followed by a name")),
            _ => Pending {
                scan: Scan::Start(ElementParser::Outside),
                scanned: 1,
            },
        };
        self.resume(pending)
    }

    /// `<!`: CDATA inside a stanza; comments and DTD declarations are restricted XML.
    fn bang(&mut self) -> Result<Step, XmlError> {
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let Some(&third) = avail.get(2) else {
            return Ok(Step::NeedMore);
        };
        match third {
            b'-' => Err(XmlError::RestrictedXml("comment".into())),
            b'D' | b'E' | b'A' | b'N' => Err(XmlError::RestrictedXml("DTD declaration".into())),
            b'[' => {
                let n = avail.len().min(CDATA_OPEN.len());
                if avail.get(..n) != CDATA_OPEN.get(..n) {
                    return Err(nwf("malformed CDATA section"));
                }
                if n < CDATA_OPEN.len() {
                    return Ok(Step::NeedMore);
                }
                if self.tree.depth() == 0 {
                    return Err(nwf("CDATA section outside a stanza"));
                }
                self.resume(Pending {
                    scan: Scan::CData,
                    scanned: CDATA_OPEN.len(),
                })
            }
            _ => Err(nwf("malformed markup after '<!'")),
        }
    }

    /// Continues scanning the markup token at `pos` from where the last attempt stopped.
    fn resume(&mut self, mut pending: Pending) -> Result<Step, XmlError> {
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let from = pending.scanned.min(avail.len());
        let rest = avail.get(from..).unwrap_or_default();
        let end = match &mut pending.scan {
            Scan::Start(parser) => parser.feed(rest).map(|i| from + i + 1),
            Scan::Decl(parser) => parser.feed(rest).map(|i| from + i + 1),
            Scan::End => memchr(b'>', rest).map(|i| from + i + 1),
            Scan::CData => {
                // `]]>` may straddle the previous scan's end: back up two bytes.
                let start = from.saturating_sub(2).max(CDATA_OPEN.len());
                let hay = avail.get(start..).unwrap_or_default();
                memchr::memmem::find(hay, b"]]>").map(|i| start + i + 3)
            }
        };
        match end {
            Some(len) => {
                self.pending = None;
                self.token(pending.scan, len)
            }
            None => {
                pending.scanned = avail.len();
                self.pending = Some(pending);
                Ok(Step::NeedMore)
            }
        }
    }

    /// Processes the complete markup token `buf[pos..pos + len]`.
    fn token(&mut self, scan: Scan, len: usize) -> Result<Step, XmlError> {
        let start = self.pos;
        self.consume(len)?;
        let tok = self.buf.get(start..start + len).unwrap_or_default();
        match scan {
            Scan::Start(_) => {
                let inner = tok.get(1..len - 1).unwrap_or_default();
                let (inner, empty) = match inner.strip_suffix(b"/") {
                    Some(inner) => (inner, true),
                    None => (inner, false),
                };
                let content = utf8(inner)?;
                if !is_printable_ascii(inner) {
                    check_chars(inner)?;
                }
                if self.phase == Phase::Prolog {
                    let header = self.tree.open_stream(content, &self.limits)?;
                    self.phase = Phase::Stream;
                    self.counted = 0;
                    if empty {
                        self.phase = Phase::Closed;
                        self.close_queued = true;
                    }
                    return Ok(Step::Event(StreamEvent::Open(header)));
                }
                match self.tree.start(content, empty, &self.limits)? {
                    Some(stanza) => Ok(self.stanza(stanza)),
                    None => Ok(Step::Continue),
                }
            }
            Scan::End => {
                if self.phase == Phase::Prolog {
                    return Err(nwf("end tag before the stream header"));
                }
                let inner = tok.get(2..len - 1).unwrap_or_default();
                let name_len = inner.iter().rposition(|&b| !is_ws(b)).map_or(0, |i| i + 1);
                let name = utf8(inner.get(..name_len).unwrap_or_default())?;
                match self.tree.end(name)? {
                    Closed::Inner => Ok(Step::Continue),
                    Closed::Stanza(stanza) => Ok(self.stanza(stanza)),
                    Closed::Stream => {
                        self.phase = Phase::Closed;
                        self.counted = 0;
                        Ok(Step::Event(StreamEvent::Close))
                    }
                }
            }
            Scan::Decl(_) => {
                let inner = tok.get(2..len - 2).unwrap_or_default();
                let is_decl = inner.starts_with(b"xml") && inner.get(3).is_none_or(|&b| is_ws(b));
                if !is_decl {
                    return Err(XmlError::RestrictedXml("processing instruction".into()));
                }
                check_chars(inner)?;
                check_decl(utf8(inner)?)?;
                Ok(Step::Continue)
            }
            Scan::CData => {
                let inner = tok.get(CDATA_OPEN.len()..len - 3).unwrap_or_default();
                let text = utf8(inner)?;
                check_chars(inner)?;
                self.tree.text(normalize_newlines(text).into_owned());
                Ok(Step::Continue)
            }
        }
    }

    /// A stanza is complete: the size count starts over.
    fn stanza(&mut self, stanza: Element) -> Step {
        self.counted = 0;
        Step::Event(StreamEvent::Stanza(stanza))
    }

    /// Character data at `pos` (up to the next `<` or the end of the buffer).
    fn text(&mut self) -> Result<Step, XmlError> {
        let avail = self.buf.get(self.pos..).unwrap_or_default();
        let (end, complete) = match memchr(b'<', avail) {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        let raw = avail.get(..end).unwrap_or_default();
        if self.tree.depth() == 0 {
            if !raw.iter().all(|&b| is_ws(b)) {
                return Err(nwf(match self.phase {
                    Phase::Prolog => "character data before the stream header",
                    Phase::Stream => "character data between stanzas",
                    Phase::Closed => "character data after the end of the stream",
                }));
            }
            if self.phase == Phase::Prolog {
                let doc_start = self.doc_start;
                self.consume(end)?;
                if self.restarted {
                    self.doc_start = doc_start;
                }
            } else {
                // Whitespace keepalives are dropped as they come and not counted.
                self.pos += end;
                self.doc_start = false;
                self.counted = 0;
            }
            return Ok(Step::Continue);
        }
        if is_plain_text(raw) {
            // Printable ASCII without `&` or `]`: valid, final even at the end of the buffer,
            // and unchanged by unescaping, so it is copied as it is.
            let n = raw.len();
            self.tree.text(utf8(raw)?.to_owned());
            self.consume(n)?;
            return Ok(Step::Continue);
        }
        let checked = if complete {
            utf8(raw)
        } else {
            safe_text_prefix(raw)
        }
        .and_then(|text| {
            check_text(text)?;
            Ok((text.len(), unescape(text, false)?.into_owned()))
        });
        let (n, text) = match checked {
            Ok(checked) => checked,
            Err(e) => return Err(first_text_error(raw).unwrap_or(e)),
        };
        if n == 0 {
            return Ok(Step::NeedMore);
        }
        self.tree.text(text);
        self.consume(n)?;
        Ok(Step::Continue)
    }
}

/// The error a reader fed `raw` a byte at a time would report: that of the shortest prefix
/// that fails when checked as unfinished text. Character data can hold several errors (a
/// forbidden character, an undefined entity, invalid UTF-8, `]]>`) and checking a whole run
/// finds them in another order than checking it piece by piece; reporting the first in
/// document order makes the verdict independent of how the input was cut. Only runs on the
/// error path; a binary search, since a prefix that fails stays failed when extended.
/// `None` when every prefix passes (the error is about the run being complete).
fn first_text_error(raw: &[u8]) -> Option<XmlError> {
    let fails = |len: usize| -> Option<XmlError> {
        let prefix = raw.get(..len).unwrap_or_default();
        safe_text_prefix(prefix)
            .and_then(|text| {
                check_text(text)?;
                unescape(text, false).map(|_| ())
            })
            .err()
    };
    let mut error = fails(raw.len())?;
    let (mut ok, mut bad) = (0, raw.len());
    while bad - ok > 1 {
        let mid = ok + (bad - ok) / 2;
        match fails(mid) {
            Some(e) => {
                bad = mid;
                error = e;
            }
            None => ok = mid,
        }
    }
    Some(error)
}
