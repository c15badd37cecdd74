//! Reading a XEP-0227 file one `<user/>` at a time, so a file of any number of accounts is read
//! in bounded memory, with the restrictions a server applies to what peers send: no DTD (and so
//! no entity expansion), no processing instructions, only the predefined entities, bounded
//! depth, attributes and bytes per account. Comments are skipped: exporters write them.
//!
//! A message archive (XEP-0227 §archive) is most of an account's bytes: each of its
//! `<result/>` elements is serialised as soon as it is read ([`UserElement::archive`]), so an
//! archive takes about its size in the file in memory, not the several times that a tree of
//! elements would, and the bound on one `<user/>` ([`ReadLimits::max_user_bytes`]) can be set
//! for archives of a few hundred thousand messages.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;
use xmppd_xml::Element;

use super::{ImportError, NS_PIE, NS_PIE_MAM};

/// How much of one account the reader holds at once.
#[derive(Clone, Copy, Debug)]
pub struct ReadLimits {
    /// Bytes of one `<user/>` element.
    pub max_user_bytes: u64,
    /// Element nesting inside `<user/>`.
    pub max_depth: usize,
    /// Attributes on one element.
    pub max_attrs: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            // An archive at the MAM module's default cap (100000 messages) of typical chat
            // messages is 50–100 MB in XEP-0227 form; the import holds at most three
            // accounts at once (one read, one queued, one written).
            max_user_bytes: 256 * 1024 * 1024,
            max_depth: 64,
            max_attrs: 256,
        }
    }
}

/// One `<user/>` of a `<host/>`, as read.
#[derive(Debug)]
pub struct UserElement {
    /// The `jid` of its `<host/>`.
    pub host: String,
    /// The element. An `<archive xmlns='urn:xmpp:pie:0#mam'/>` child is kept, empty: its
    /// children are in `archive`.
    pub user: Element,
    /// The children of the `<archive/>` child, oldest first as the file lists them (§archive),
    /// each serialised with its namespace.
    pub archive: Vec<Vec<u8>>,
    /// The line it starts on.
    pub line: u64,
}

/// XInclude, with which ejabberd's `export_piefxis` puts each host in a file of its own.
const NS_XINCLUDE: &str = "http://www.w3.org/2001/XInclude";

/// Reads `path`, handing each `<user/>` to `sink` as soon as its end tag is read; stops at the
/// first problem of the file itself (the accounts handed over before it stand). A
/// `<xi:include href='FILE'/>` in `<server-data/>` names a file beside it whose root is a
/// `<host/>`; it is read after the including file. Only names of files in the same
/// directory are followed, and an included file includes nothing further.
pub fn read_users(
    path: &Path,
    limits: ReadLimits,
    mut sink: impl FnMut(UserElement) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    let includes = read_file(path, limits, Root::ServerData, &mut sink)?;
    for name in includes {
        let included = path.with_file_name(&name);
        read_file(&included, limits, Root::Host, &mut sink)?;
    }
    Ok(())
}

/// What a file's root element must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Root {
    ServerData,
    Host,
}

fn read_file(
    path: &Path,
    limits: ReadLimits,
    root: Root,
    sink: &mut impl FnMut(UserElement) -> Result<(), ImportError>,
) -> Result<Vec<String>, ImportError> {
    let file = File::open(path).map_err(|e| ImportError::Io {
        path: path.to_owned(),
        source: e,
    })?;
    let mut reader = NsReader::from_reader(BufReader::new(file));
    let mut parser = Parser {
        path: path.to_owned(),
        limits,
        depth: 0,
        host: None,
        stack: Vec::new(),
        user_start: 0,
        seen_root: false,
        root,
        includes: Vec::new(),
        archive: Vec::new(),
    };
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let position = reader.buffer_position();
        let (resolved, event) = match reader.read_resolved_event_into(&mut buf) {
            Ok(pair) => pair,
            Err(e) => {
                return Err(parser.error(reader.error_position(), format!("not well-formed: {e}")));
            }
        };
        let ns = match resolved {
            ResolveResult::Bound(ns) => ns.as_ref().to_owned(),
            ResolveResult::Unbound => String::new(),
            ResolveResult::Unknown(prefix) => {
                return Err(parser.error(position, format!("undeclared prefix '{prefix}'")));
            }
        };
        let done = parser.event(event, ns, position, reader.buffer_position(), sink)?;
        if done {
            return Ok(parser.includes);
        }
    }
}

struct Parser {
    path: PathBuf,
    limits: ReadLimits,
    /// Open elements outside `<user/>`: 1 in `<server-data>`, 2 in `<host>`.
    depth: usize,
    host: Option<String>,
    /// The open elements of the current `<user/>`, outermost first.
    stack: Vec<Element>,
    user_start: u64,
    seen_root: bool,
    root: Root,
    /// Files named by `<xi:include/>`, to read after this one.
    includes: Vec<String>,
    /// The serialised archive entries of the current `<user/>`.
    archive: Vec<Vec<u8>>,
}

impl Parser {
    fn error(&self, offset: u64, message: String) -> ImportError {
        ImportError::File {
            path: self.path.clone(),
            line: line_of(&self.path, offset),
            message,
        }
    }

    /// Handles one event; `Ok(true)` at the end of the document.
    fn event(
        &mut self,
        event: Event<'_>,
        ns: String,
        start: u64,
        end: u64,
        sink: &mut impl FnMut(UserElement) -> Result<(), ImportError>,
    ) -> Result<bool, ImportError> {
        if !self.stack.is_empty()
            && end.saturating_sub(self.user_start) > self.limits.max_user_bytes
        {
            let max = self.limits.max_user_bytes;
            return Err(self.error(
                self.user_start,
                format!("a <user/> larger than {max} bytes"),
            ));
        }
        match event {
            Event::Decl(_) | Event::Comment(_) => {}
            Event::DocType(_) => {
                return Err(self.error(start, "a DOCTYPE is not allowed (restricted XML)".into()));
            }
            Event::PI(_) => {
                return Err(self.error(start, "processing instructions are not allowed".into()));
            }
            Event::Start(e) => self.open(&e, ns, start, false, sink)?,
            Event::Empty(e) => self.open(&e, ns, start, true, sink)?,
            Event::End(_) => self.close(start, sink)?,
            Event::Text(t) => self.text(&t.xml10_content(), start)?,
            Event::CData(c) => self.text(&c.xml10_content(), start)?,
            Event::GeneralRef(r) => {
                let text = self.reference(&r, start)?;
                self.text(&text, start)?;
            }
            Event::Eof => {
                if !self.seen_root || self.depth > 0 || !self.stack.is_empty() {
                    return Err(self.error(start, "the file ends inside an element".into()));
                }
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn reference(&self, r: &BytesRef<'_>, at: u64) -> Result<String, ImportError> {
        if let Ok(Some(c)) = r.resolve_char_ref() {
            if is_xml_char(c) {
                return Ok(c.to_string());
            }
            return Err(self.error(at, format!("character U+{:04X} is not allowed", c as u32)));
        }
        match &**r {
            "lt" => Ok("<".into()),
            "gt" => Ok(">".into()),
            "amp" => Ok("&".into()),
            "apos" => Ok("'".into()),
            "quot" => Ok("\"".into()),
            other => Err(self.error(
                at,
                format!("entity '&{other};' is not allowed (restricted XML)"),
            )),
        }
    }

    fn text(&mut self, text: &str, at: u64) -> Result<(), ImportError> {
        if let Some(c) = text.chars().find(|c| !is_xml_char(*c)) {
            return Err(self.error(at, format!("character U+{:04X} is not allowed", c as u32)));
        }
        match self.stack.last_mut() {
            Some(el) => el.push_text(text),
            None if text.trim().is_empty() => {}
            None => return Err(self.error(at, "text outside a <user/>".into())),
        }
        Ok(())
    }

    fn open(
        &mut self,
        e: &BytesStart<'_>,
        ns: String,
        at: u64,
        empty: bool,
        sink: &mut impl FnMut(UserElement) -> Result<(), ImportError>,
    ) -> Result<(), ImportError> {
        let local = e.local_name().as_ref().to_owned();
        let element = self.element(e, local, ns, at)?;
        if !self.stack.is_empty() {
            if self.stack.len() >= self.limits.max_depth {
                return Err(self.error(at, format!("nested deeper than {}", self.limits.max_depth)));
            }
            self.stack.push(element);
            if empty {
                self.close(at, sink)?;
            }
            return Ok(());
        }
        match (self.depth, element.name(), element.ns()) {
            (0, "server-data", NS_PIE) if !self.seen_root && self.root == Root::ServerData => {
                self.seen_root = true;
                self.depth = 1;
                if empty {
                    self.depth = 0;
                }
            }
            (0, "host", NS_PIE) if !self.seen_root && self.root == Root::Host => {
                self.seen_root = true;
                let Some(jid) = element.attr("jid") else {
                    return Err(self.error(at, "a <host/> without 'jid'".into()));
                };
                self.host = Some(jid.to_owned());
                // The root <host/> stands where <server-data>'s child would.
                self.depth = if empty { 0 } else { 2 };
            }
            (1, "include", NS_XINCLUDE) if self.root == Root::ServerData => {
                let href = element.attr("href").unwrap_or_default();
                let plain =
                    !href.is_empty() && !href.contains(['/', '\\']) && href != "." && href != "..";
                if !plain {
                    let msg = format!(
                        "xi:include of '{href}': only a file beside this one can be included"
                    );
                    return Err(self.error(at, msg));
                }
                self.includes.push(href.to_owned());
                if !empty {
                    // Its fallback content, if any, is skipped with it.
                    self.stack.push(element);
                    self.user_start = at;
                }
            }
            (1, "host", NS_PIE) => {
                let Some(jid) = element.attr("jid") else {
                    return Err(self.error(at, "a <host/> without 'jid'".into()));
                };
                self.host = Some(jid.to_owned());
                if !empty {
                    self.depth = 2;
                }
            }
            (2, "user", NS_PIE) => {
                self.user_start = at;
                self.stack.push(element);
                if empty {
                    self.close(at, sink)?;
                }
            }
            (_, name, ns) => {
                let wanted = match (self.depth, self.root) {
                    (0, Root::ServerData) => "<server-data xmlns='urn:xmpp:pie:0'>",
                    (0, Root::Host) => "<host xmlns='urn:xmpp:pie:0'> (an included file)",
                    (1, _) => "<host/>",
                    _ => "<user/>",
                };
                return Err(self.error(
                    at,
                    format!("unexpected <{name} xmlns='{ns}'>; expected {wanted}"),
                ));
            }
        }
        Ok(())
    }

    fn element(
        &self,
        e: &BytesStart<'_>,
        local: String,
        ns: String,
        at: u64,
    ) -> Result<Element, ImportError> {
        let mut element = Element::new(local, ns);
        let mut count = 0;
        for attr in e.attributes() {
            let attr = attr.map_err(|err| self.error(at, format!("not well-formed: {err}")))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            count += 1;
            if count > self.limits.max_attrs {
                return Err(self.error(
                    at,
                    format!("more than {} attributes", self.limits.max_attrs),
                ));
            }
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|err| self.error(at, format!("attribute value: {err}")))?;
            if let Some(c) = value.chars().find(|c| !is_xml_char(*c)) {
                let msg = format!("character U+{:04X} is not allowed", c as u32);
                return Err(self.error(at, msg));
            }
            let key = attr.key.as_ref().to_owned();
            match key.split_once(':') {
                None => element.set_attr(key, value.into_owned()),
                Some(("xml", "lang")) => element.set_attr("xml:lang", value.into_owned()),
                // Attributes of other namespaces carry nothing these payloads use.
                Some(_) => {}
            }
        }
        Ok(element)
    }

    fn close(
        &mut self,
        at: u64,
        sink: &mut impl FnMut(UserElement) -> Result<(), ImportError>,
    ) -> Result<(), ImportError> {
        if let Some(done) = self.stack.pop() {
            let in_archive = self.stack.len() == 2
                && self
                    .stack
                    .last()
                    .is_some_and(|p| p.is("archive", NS_PIE_MAM));
            match self.stack.last_mut() {
                Some(_) if in_archive => {
                    let mut bytes = Vec::new();
                    done.write_to(&mut bytes, NS_PIE_MAM);
                    self.archive.push(bytes);
                }
                Some(parent) => parent.push_child(done),
                None if done.is("include", NS_XINCLUDE) => {}
                None => {
                    let host = self.host.clone().unwrap_or_default();
                    let line = line_of(&self.path, self.user_start);
                    sink(UserElement {
                        host,
                        user: done,
                        archive: std::mem::take(&mut self.archive),
                        line,
                    })?;
                }
            }
            return Ok(());
        }
        match self.depth {
            2 => {
                self.depth = if self.root == Root::Host { 0 } else { 1 };
                self.host = None;
            }
            1 => self.depth = 0,
            _ => return Err(self.error(at, "an end tag without its start".into())),
        }
        Ok(())
    }
}

/// XML 1.0's Char production: no control characters but tab, newline and carriage return,
/// no surrogates (not chars in Rust), no U+FFFE/U+FFFF.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The 1-based line of a byte offset, by counting newlines before it (only when reporting).
fn line_of(path: &Path, offset: u64) -> u64 {
    use std::io::Read as _;
    let Ok(file) = File::open(path) else {
        return 0;
    };
    let mut lines = 1;
    let mut left = offset;
    let mut reader = BufReader::new(file);
    let mut chunk = [0u8; 64 * 1024];
    while left > 0 {
        let want = usize::try_from(left.min(chunk.len() as u64)).unwrap_or(chunk.len());
        let Ok(n) = reader.read(&mut chunk[..want]) else {
            break;
        };
        if n == 0 {
            break;
        }
        lines += chunk[..n].iter().filter(|b| **b == b'\n').count() as u64;
        left -= n as u64;
    }
    lines
}
