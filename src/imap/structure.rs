//! What an IMAP server derives from one message's bytes (RFC 3501 §6.4.5, §7.4.2; RFC 9051
//! §6.4.5, §7.5.2): its MIME tree, BODYSTRUCTURE and BODY, ENVELOPE, and the bytes of
//! BODY[section], for the door's FETCH of a message it holds as bytes.
//!
//! The parse is liberal (it never fails: what cannot be read is shown as what could be) and
//! bounded, for it reads untrusted mail: parts nest at most 20 deep (a deeper multipart or
//! message/rfc822 is shown as one application/octet-stream part, as Dovecot does past its own
//! limit of 100), a message has at most 5,000 parts (Dovecot: 10,000; the last part allowed
//! runs to the end of its multipart, as in Dovecot), and no input costs more than linear work:
//! each byte is looked at a bounded number of times (once per nesting level at most), never
//! once per line or per part. Nothing recurses deeper than the bounded tree.
//!
//! Rules, as RFC 3501 and RFC 2045/2046 say and as Dovecot 2.3 answers (differences noted):
//! - A part is its header block (the fields and the blank line that ends them) and its body.
//!   A part without a blank line is all header and an empty body. LF-only line ends are read as
//!   CRLF ones; bytes are returned and counted as they are in the message (Dovecot serves and
//!   counts such a message with CRLF).
//! - Part numbers: in a multipart, part n is its n-th part; a message that is not multipart has
//!   only part 1, its body; after a message/rfc822 part the numbers go on in the message it
//!   holds. A part that is neither has no part 1 (Dovecot answers `n.1` with part n itself).
//! - A boundary line is `--boundary` followed by nothing but spaces and tabs (Dovecot takes any
//!   line that begins with `--boundary`); the closing one `--boundary--`. The line end before a
//!   boundary line belongs to it (Dovecot, after an inner multipart's closing line, leaves that
//!   line end to the enclosing part: two bytes and one line more). Preamble and epilogue belong
//!   to no part; without a closing line the last part runs to the end.
//! - A multipart without a boundary parameter, or in whose body no boundary line is found, is
//!   shown as one text/plain part (RFC 2045 §5.2's default for a Content-Type that cannot be
//!   used), so that BODY[1] gives its bytes; Dovecot shows such a multipart with one empty
//!   text/plain part in it, and the bytes are then out of the client's reach but for TEXT.
//! - A Content-Type that does not parse is text/plain; charset=us-ascii (RFC 2045 §5.2; Dovecot
//!   shows `"text" ""` or `"" ""`); one that is absent too, but message/rfc822 inside
//!   multipart/digest. Text parts without a charset parameter get `charset us-ascii` at the end
//!   of their parameters (as Dovecot). Type, subtype and parameter names are as written, values
//!   unquoted, RFC 2231 parameters (`name*`, `name*0*`) passed as they are (Dovecot joins
//!   continuations and puts them last), a parameter without a value dropped (as Dovecot).
//! - The lines of a text part, or of a message/rfc822 part, are the line feeds in its body (as
//!   Dovecot counts: a last line without a line end is not counted).
//! - Envelope strings are the first such field's value unfolded (RFC 5322 §2.2.3: each CRLF
//!   before white space taken out, the white space kept; Dovecot makes each fold and the white
//!   space around it one space) with the white space before it taken out. Addresses keep
//!   encoded words encoded; a mailbox without a domain or local part gets Dovecot's
//!   `MISSING_DOMAIN` / `MISSING_MAILBOX` (a NIL host would read as a group); a comment after
//!   an address without a display name is the name (as Dovecot); empty list elements are
//!   skipped (Dovecot shows `,,` as two missing mailboxes). Where a field appears twice the
//!   first is used (Dovecot uses the last Subject and joins the address lists).

use imap_next::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, Language, Location, MultiPartExtensionData, SinglePartExtensionData,
    SpecificFields,
};
use imap_next::imap_types::core::{AString, IString, Literal, NString, Quoted, Vec1};
use imap_next::imap_types::envelope::{Address, Envelope};
use imap_next::imap_types::fetch::{Part, Section};
use std::collections::HashSet;

/// How deep parts nest: the message is at depth 0, a part of it (or the message a
/// message/rfc822 part holds) one deeper; a multipart or message/rfc822 at this depth is not
/// looked into.
const MAX_DEPTH: usize = 20;
/// How many parts one message has at most, the message itself and encapsulated messages
/// counted.
const MAX_PARTS: usize = 5_000;

/// Placeholders for what an address lacks (Dovecot's words; UW IMAP's are alike).
const MISSING_MAILBOX: &[u8] = b"MISSING_MAILBOX";
const MISSING_DOMAIN: &[u8] = b"MISSING_DOMAIN";

/// A message's MIME tree, parsed liberally from its bytes (never fails), within bounds.
pub struct Tree<'a> {
    raw: &'a [u8],
    /// The message is node 0; a node's children come after it.
    nodes: Vec<Node<'a>>,
    /// Addresses one answer (an ENVELOPE, or a BODYSTRUCTURE with the envelopes of its
    /// forwarded messages) may still hold: a mail of tiny addresses (`,a,a,a…`) would make
    /// each two bytes of it into an address structure of a hundred, three times over (Sender
    /// and Reply-To default to From), in every forwarded message.
    budget: std::cell::Cell<usize>,
}

/// Addresses in one answer, all fields and forwarded messages together (a real To of a large
/// list has a few thousand).
const MAX_ADDRESSES: usize = 10_000;
/// The most of one address field read for its addresses.
const MAX_ADDRESS_FIELD: usize = 256 << 10;

/// One part: `raw[start..body]` is its header block, `raw[body..end]` its body.
struct Node<'a> {
    start: usize,
    body: usize,
    end: usize,
    depth: usize,
    mime: Mime<'a>,
    /// The Content-Type it is shown with.
    ct: ContentType,
    kind: Kind,
}

enum Kind {
    Leaf,
    /// Indices of the parts, in order.
    Multi(Vec<usize>),
    /// The index of the encapsulated message (its region is this part's body).
    Message(usize),
}

/// The raw values of the MIME fields of a part (the first of each).
#[derive(Default, Clone, Copy)]
struct Mime<'a> {
    content_type: Option<&'a [u8]>,
    encoding: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    description: Option<&'a [u8]>,
    disposition: Option<&'a [u8]>,
    language: Option<&'a [u8]>,
    location: Option<&'a [u8]>,
}

type Params = Vec<(Vec<u8>, Vec<u8>)>;

struct ContentType {
    ty: Vec<u8>,
    sub: Vec<u8>,
    params: Params,
}

impl ContentType {
    fn new(ty: &[u8], sub: &[u8], params: Params) -> ContentType {
        ContentType { ty: ty.to_vec(), sub: sub.to_vec(), params }
    }

    /// text/plain; charset=us-ascii: the default, and what a Content-Type that does not parse is.
    fn plain() -> ContentType {
        ContentType::new(b"text", b"plain", vec![(b"charset".to_vec(), b"us-ascii".to_vec())])
    }

    /// The Content-Type of a part from its field's value (None: no field); `digest`: the part is
    /// in a multipart/digest.
    fn of(value: Option<&[u8]>, digest: bool) -> ContentType {
        let value = value.filter(|v| !v.trim_ascii().is_empty());
        let Some(value) = value else {
            return if digest { ContentType::new(b"message", b"rfc822", Vec::new()) } else { ContentType::plain() };
        };
        let mut c = Cursor::new(value);
        c.skip_cfws();
        let ty = c.take_while(is_token);
        c.skip_cfws();
        if ty.is_empty() || c.peek() != Some(b'/') {
            return ContentType::plain();
        }
        c.bump();
        c.skip_cfws();
        let sub = c.take_while(is_token);
        // `text/pläin` is no subtype `pl` (but `text/plain charset=x` is text/plain).
        let cut = c.peek().is_some_and(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'(' | b';'));
        if sub.is_empty() || cut {
            return ContentType::plain();
        }
        let mut params = parameters(&mut c);
        if ty.eq_ignore_ascii_case(b"text") && !params.iter().any(|(n, _)| is_charset(n)) {
            params.push((b"charset".to_vec(), b"us-ascii".to_vec()));
        }
        ContentType::new(ty, sub, params)
    }

    fn is(&self, ty: &[u8], sub: Option<&[u8]>) -> bool {
        self.ty.eq_ignore_ascii_case(ty) && sub.is_none_or(|s| self.sub.eq_ignore_ascii_case(s))
    }

    fn param(&self, name: &[u8]) -> Option<&[u8]> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }
}

fn is_charset(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"charset") || name.get(..8).is_some_and(|n| n.eq_ignore_ascii_case(b"charset*"))
}

impl<'a> Node<'a> {
    fn new(raw: &'a [u8], start: usize, end: usize, depth: usize, digest: bool) -> Node<'a> {
        let body = header_end(raw, start, end);
        let mime = Mime::scan(raw.get(start..body).unwrap_or_default());
        let ct = ContentType::of(mime.content_type, digest);
        Node { start, body, end, depth, mime, ct, kind: Kind::Leaf }
    }
}

impl<'a> Mime<'a> {
    fn scan(header: &'a [u8]) -> Mime<'a> {
        let mut m = Mime::default();
        for f in Fields::new(header) {
            let Some(name) = f.name else { continue };
            let Some(rest) =
                name.get(8..).filter(|_| name.get(..8).is_some_and(|p| p.eq_ignore_ascii_case(b"content-")))
            else {
                continue;
            };
            let slot = match rest.to_ascii_lowercase().as_slice() {
                b"type" => &mut m.content_type,
                b"transfer-encoding" => &mut m.encoding,
                b"id" => &mut m.id,
                b"description" => &mut m.description,
                b"disposition" => &mut m.disposition,
                b"language" => &mut m.language,
                b"location" => &mut m.location,
                _ => continue,
            };
            slot.get_or_insert(f.value);
        }
        m
    }
}

impl<'a> Tree<'a> {
    pub fn parse(raw: &'a [u8]) -> Tree<'a> {
        let mut nodes = vec![Node::new(raw, 0, raw.len(), 0, false)];
        // Depth first, in the message's order: the parts budget goes to the first parts.
        let mut todo = vec![0usize];
        while let Some(i) = todo.pop() {
            let Some(node) = nodes.get(i) else { continue };
            let (body, end, depth) = (node.body, node.end, node.depth);
            let multipart = node.ct.is(b"multipart", None);
            let message = node.ct.is(b"message", Some(b"rfc822"));
            if !multipart && !message {
                continue;
            }
            if depth >= MAX_DEPTH || nodes.len() >= MAX_PARTS {
                if let Some(n) = nodes.get_mut(i) {
                    let params = std::mem::take(&mut n.ct.params);
                    n.ct = ContentType::new(b"application", b"octet-stream", params);
                }
                continue;
            }
            if message {
                let child = nodes.len();
                nodes.push(Node::new(raw, body, end, depth + 1, false));
                todo.push(child);
                if let Some(n) = nodes.get_mut(i) {
                    n.kind = Kind::Message(child);
                }
                continue;
            }
            let digest = node.ct.sub.eq_ignore_ascii_case(b"digest");
            let ranges = match node.ct.param(b"boundary") {
                Some(b) if !b.is_empty() => split(raw, body, end, b, MAX_PARTS - nodes.len()),
                _ => Vec::new(),
            };
            if ranges.is_empty() {
                if let Some(n) = nodes.get_mut(i) {
                    n.ct = ContentType::plain();
                }
                continue;
            }
            let mut children = Vec::with_capacity(ranges.len());
            for (s, e) in ranges {
                children.push(nodes.len());
                nodes.push(Node::new(raw, s, e, depth + 1, digest));
            }
            todo.extend(children.iter().rev());
            if let Some(n) = nodes.get_mut(i) {
                n.kind = Kind::Multi(children);
            }
        }
        Tree { raw, nodes, budget: std::cell::Cell::new(MAX_ADDRESSES) }
    }

    /// BODYSTRUCTURE (with extension data) when `extended`, BODY (without) otherwise.
    pub fn body_structure(&self, extended: bool) -> BodyStructure<'static> {
        self.budget.set(MAX_ADDRESSES);
        self.structure(0, extended)
    }

    pub fn envelope(&self) -> Envelope<'static> {
        self.budget.set(MAX_ADDRESSES);
        self.envelope_of(0)
    }

    /// The message with every header field, of the message and of each part, cut to `max`
    /// bytes (its line end kept): what a search reads, so that a field of a million tiny
    /// addresses is not a million address structures in the reader. Borrowed when no field is
    /// that long.
    pub fn with_fields_cut(&self, max: usize) -> std::borrow::Cow<'a, [u8]> {
        let long = |n: &Node<'_>| {
            let header = self.raw.get(n.start..n.body).unwrap_or_default();
            Fields::new(header).any(|f| f.raw.len() > max)
        };
        if !self.nodes.iter().any(long) {
            return std::borrow::Cow::Borrowed(self.raw);
        }
        let mut out = Vec::with_capacity(self.raw.len());
        let mut at = 0;
        // Nodes are in the order their headers appear, none inside another's header.
        for n in &self.nodes {
            let Some(header) = self.raw.get(n.start..n.body) else { continue };
            if n.start < at {
                continue;
            }
            out.extend_from_slice(self.raw.get(at..n.start).unwrap_or_default());
            let mut used = 0;
            for f in Fields::new(header) {
                used += f.raw.len();
                if f.raw.len() > max {
                    let end = if f.raw.ends_with(b"\r\n") { b"\r\n".as_slice() } else { b"\n" };
                    out.extend_from_slice(f.raw.get(..max).unwrap_or(f.raw));
                    out.extend_from_slice(end);
                } else {
                    out.extend_from_slice(f.raw);
                }
            }
            at = n.start + used;
        }
        out.extend_from_slice(self.raw.get(at..).unwrap_or_default());
        std::borrow::Cow::Owned(out)
    }

    /// The addresses of a field's value, within what the answer may still hold.
    fn addresses(&self, value: &[u8]) -> Vec<Address<'static>> {
        let value = value.get(..MAX_ADDRESS_FIELD).unwrap_or(value);
        let mut list = addresses(value);
        list.truncate(self.budget.get());
        self.budget.set(self.budget.get() - list.len());
        list
    }

    /// A copy of `list` (Sender or Reply-To taken from From), within the budget.
    fn copy(&self, list: &[Address<'static>]) -> Vec<Address<'static>> {
        let n = list.len().min(self.budget.get());
        self.budget.set(self.budget.get() - n);
        list[..n].to_vec()
    }

    /// The bytes of BODY[section] (section as imap_types::fetch::Section, including Part, Mime,
    /// Header/Text/HeaderFields/HeaderFieldsNot with an optional part path), None when the section names a
    /// part that does not exist (the door then answers an empty string).
    pub fn section(&self, section: Option<&Section<'_>>) -> Option<Vec<u8>> {
        let bytes = |a: usize, b: usize| self.raw.get(a..b).map(<[u8]>::to_vec);
        match section {
            None => Some(self.raw.to_vec()),
            Some(Section::Part(part)) => {
                let n = self.nodes.get(self.resolve(part)?)?;
                bytes(n.body, n.end)
            }
            Some(Section::Mime(part)) => {
                let n = self.nodes.get(self.resolve(part)?)?;
                bytes(n.start, n.body)
            }
            Some(Section::Header(part)) => {
                let m = self.message(part.as_ref())?;
                bytes(m.start, m.body)
            }
            Some(Section::Text(part)) => {
                let m = self.message(part.as_ref())?;
                bytes(m.body, m.end)
            }
            Some(Section::HeaderFields(part, names)) => {
                let m = self.message(part.as_ref())?;
                Some(header_fields(self.raw.get(m.start..m.body)?, names.as_ref(), false))
            }
            Some(Section::HeaderFieldsNot(part, names)) => {
                let m = self.message(part.as_ref())?;
                Some(header_fields(self.raw.get(m.start..m.body)?, names.as_ref(), true))
            }
        }
    }

    /// The part a part number names (RFC 3501 §6.4.5): in a multipart, part n is its n-th part;
    /// a message that is not multipart has only part 1, its body (the message's own node); after
    /// a message/rfc822 part, the numbers go on in the message it holds.
    fn resolve(&self, part: &Part) -> Option<usize> {
        let path = part.0.as_ref();
        let mut cur = 0usize;
        // Whether `cur` is a message (whose part 1 is itself when it is not multipart).
        let mut message = true;
        for (k, n) in path.iter().enumerate() {
            let n = usize::try_from(n.get()).ok()?;
            cur = match &self.nodes.get(cur)?.kind {
                Kind::Multi(children) => *children.get(n.checked_sub(1)?)?,
                _ if message && n == 1 => cur,
                _ => return None,
            };
            message = false;
            if k + 1 < path.len() {
                if let Kind::Message(child) = self.nodes.get(cur)?.kind {
                    cur = child;
                    message = true;
                }
            }
        }
        Some(cur)
    }

    /// The message whose HEADER / TEXT a section names: the message itself without a part
    /// number, else the message a message/rfc822 part holds (None for any other part).
    fn message(&self, part: Option<&Part>) -> Option<&Node<'a>> {
        let Some(part) = part else { return self.nodes.first() };
        match self.nodes.get(self.resolve(part)?)?.kind {
            Kind::Message(child) => self.nodes.get(child),
            _ => None,
        }
    }

    fn structure(&self, i: usize, extended: bool) -> BodyStructure<'static> {
        let Some(node) = self.nodes.get(i) else { return empty_structure(extended) };
        let raw_body = self.raw.get(node.body..node.end).unwrap_or_default();
        let ext = || self.disposition(node);
        if let Kind::Multi(children) = &node.kind {
            let bodies: Vec<_> = children.iter().map(|&c| self.structure(c, extended)).collect();
            let Ok(bodies) = Vec1::try_from(bodies) else { return empty_structure(extended) };
            return BodyStructure::Multi {
                bodies,
                subtype: istring(&node.ct.sub),
                extension_data: extended
                    .then(|| MultiPartExtensionData { parameter_list: params(&node.ct.params), tail: Some(ext()) }),
            };
        }
        let basic = BasicFields {
            parameter_list: params(&node.ct.params),
            id: trimmed(node.mime.id),
            description: trimmed(node.mime.description),
            content_transfer_encoding: istring(&encoding(node.mime.encoding)),
            size: clamp(raw_body.len()),
        };
        let specific = match node.kind {
            Kind::Message(child) => SpecificFields::Message {
                envelope: Box::new(self.envelope_of(child)),
                body_structure: Box::new(self.structure(child, extended)),
                number_of_lines: lines(raw_body),
            },
            _ if node.ct.is(b"text", None) => {
                SpecificFields::Text { subtype: istring(&node.ct.sub), number_of_lines: lines(raw_body) }
            }
            // Never "message" "rfc822" (or a multipart) without what the grammar has follow it.
            _ if node.ct.is(b"message", Some(b"rfc822")) || node.ct.is(b"multipart", None) => {
                SpecificFields::Basic { r#type: istring(b"application"), subtype: istring(b"octet-stream") }
            }
            _ => SpecificFields::Basic { r#type: istring(&node.ct.ty), subtype: istring(&node.ct.sub) },
        };
        BodyStructure::Single {
            body: Body { basic, specific },
            extension_data: extended.then(|| SinglePartExtensionData { md5: NString(None), tail: Some(ext()) }),
        }
    }

    /// The extension data after the MD5 (or a multipart's parameters): disposition, language,
    /// location.
    fn disposition(&self, node: &Node<'_>) -> Disposition<'static> {
        let disposition = node.mime.disposition.and_then(|v| {
            let mut c = Cursor::new(v);
            c.skip_cfws();
            let ty = c.take_while(is_token);
            (!ty.is_empty()).then(|| (istring(ty), params(&parameters(&mut c))))
        });
        let language = node.mime.language.map(languages).unwrap_or_default();
        Disposition {
            disposition,
            tail: Some(Language {
                language,
                tail: Some(Location { location: trimmed(node.mime.location), extensions: Vec::new() }),
            }),
        }
    }

    fn envelope_of(&self, i: usize) -> Envelope<'static> {
        const NAMES: [&[u8]; 10] =
            [b"date", b"subject", b"from", b"sender", b"reply-to", b"to", b"cc", b"bcc", b"in-reply-to", b"message-id"];
        let header = self.nodes.get(i).and_then(|n| self.raw.get(n.start..n.body)).unwrap_or_default();
        let mut v: [Option<&[u8]>; 10] = [None; 10];
        for f in Fields::new(header) {
            let Some(name) = f.name else { continue };
            if let Some(k) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
                if let Some(slot) = v.get_mut(k) {
                    slot.get_or_insert(f.value);
                }
            }
        }
        let [date, subject, from, sender, reply_to, to, cc, bcc, in_reply_to, message_id] = v;
        let text = |v: Option<&[u8]>| NString(v.map(|v| istring(unfold(v).trim_ascii_start())));
        let list = |v: Option<&[u8]>| v.map(|v| self.addresses(v)).unwrap_or_default();
        let from = list(from);
        // RFC 3501 §7.4.2: Sender and Reply-To absent, or present but empty, are From.
        let or_from = |v: Option<&[u8]>| Some(list(v)).filter(|a| !a.is_empty());
        let sender = or_from(sender).unwrap_or_else(|| self.copy(&from));
        let reply_to = or_from(reply_to).unwrap_or_else(|| self.copy(&from));
        Envelope {
            date: text(date),
            subject: text(subject),
            sender,
            reply_to,
            from,
            to: list(to),
            cc: list(cc),
            bcc: list(bcc),
            in_reply_to: text(in_reply_to),
            message_id: text(message_id),
        }
    }
}

/// ("text" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 0 0): what a multipart without parts
/// would hold (never made: a multipart without parts is shown as text/plain).
fn empty_structure(extended: bool) -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: params(&ContentType::plain().params),
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring(b"7BIT"),
                size: 0,
            },
            specific: SpecificFields::Text { subtype: istring(b"plain"), number_of_lines: 0 },
        },
        extension_data: extended.then(|| SinglePartExtensionData {
            md5: NString(None),
            tail: Some(Disposition {
                disposition: None,
                tail: Some(Language {
                    language: Vec::new(),
                    tail: Some(Location { location: NString(None), extensions: Vec::new() }),
                }),
            }),
        }),
    }
}

// --- Strings on the wire ---

/// A string IMAP can carry: quoted when it can be, else a literal; NUL (which no IMAP string
/// holds) left out.
fn istring(bytes: &[u8]) -> IString<'static> {
    let clean: Vec<u8> = bytes.iter().copied().filter(|&b| b != 0).collect();
    let s = if Quoted::validate(&clean).is_ok() {
        Quoted::try_from(clean).map(IString::Quoted)
    } else {
        Literal::try_from(clean).map(IString::Literal)
    };
    s.unwrap_or_else(|_| IString::Quoted(Quoted::unvalidated("")))
}

fn nstring(bytes: Option<&[u8]>) -> NString<'static> {
    NString(bytes.map(istring))
}

/// A field's value unfolded and trimmed, NIL when absent or empty.
fn trimmed(value: Option<&[u8]>) -> NString<'static> {
    let v = value.map(unfold);
    nstring(v.as_deref().map(<[u8]>::trim_ascii).filter(|v| !v.is_empty()))
}

fn params(p: &Params) -> Vec<(IString<'static>, IString<'static>)> {
    p.iter().map(|(n, v)| (istring(n), istring(v))).collect()
}

fn clamp(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Lines as Dovecot counts them: the line feeds.
fn lines(body: &[u8]) -> u32 {
    clamp(memchr::memchr_iter(b'\n', body).count())
}

/// The Content-Transfer-Encoding as written, 7BIT when absent.
fn encoding(value: Option<&[u8]>) -> Vec<u8> {
    let mut c = Cursor::new(value.unwrap_or_default());
    c.skip_cfws();
    match c.take_while(is_token) {
        [] => b"7BIT".to_vec(),
        t => t.to_vec(),
    }
}

fn languages(value: &[u8]) -> Vec<IString<'static>> {
    let mut c = Cursor::new(value);
    let mut out = Vec::new();
    loop {
        c.skip_cfws();
        match c.peek() {
            None => break,
            Some(b',') => c.bump(),
            Some(_) => match c.take_while(is_token) {
                [] => c.bump(),
                t => out.push(istring(t)),
            },
        }
    }
    out
}

// --- Header blocks ---

/// Where the body of the part `raw[start..end]` begins: after the blank line that ends its
/// header, or at `end` when there is none.
fn header_end(raw: &[u8], start: usize, end: usize) -> usize {
    let region = raw.get(start..end).unwrap_or_default();
    let mut pos = 0;
    loop {
        let rest = region.get(pos..).unwrap_or_default();
        if rest.starts_with(b"\n") {
            return start + pos + 1;
        }
        if rest.starts_with(b"\r\n") {
            return start + pos + 2;
        }
        match memchr::memchr(b'\n', rest) {
            Some(i) => pos += i + 1,
            None => return end,
        }
    }
}

/// One field of a header block, continuation lines included; a line that is no field (no
/// colon, or not a field name before it) has no name.
struct Field<'a> {
    name: Option<&'a [u8]>,
    /// After the colon, up to the field's last line end (not included).
    value: &'a [u8],
    /// The field as it is in the message, its last line end included.
    raw: &'a [u8],
}

/// The fields of a header block, up to its blank line.
struct Fields<'a> {
    h: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(h: &'a [u8]) -> Fields<'a> {
        Fields { h, pos: 0 }
    }
}

fn line_after(h: &[u8], pos: usize) -> usize {
    match memchr::memchr(b'\n', h.get(pos..).unwrap_or_default()) {
        Some(i) => pos + i + 1,
        None => h.len(),
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Field<'a>;

    fn next(&mut self) -> Option<Field<'a>> {
        let start = self.pos;
        let rest = self.h.get(start..)?;
        if rest.is_empty() || rest.starts_with(b"\n") || rest.starts_with(b"\r\n") {
            return None;
        }
        let mut end = line_after(self.h, start);
        while matches!(self.h.get(end), Some(b' ' | b'\t')) {
            end = line_after(self.h, end);
        }
        self.pos = end;
        let raw = self.h.get(start..end)?;
        let colon = memchr::memchr(b':', raw);
        let name = colon.and_then(|c| raw.get(..c)).map(|n| n.trim_ascii_end());
        let name = name.filter(|n| !n.is_empty() && n.iter().all(|&b| (33..=126).contains(&b)));
        let value = match (name, colon) {
            (Some(_), Some(c)) => {
                let v = raw.get(c + 1..).unwrap_or_default();
                let v = v.strip_suffix(b"\n").unwrap_or(v);
                v.strip_suffix(b"\r").unwrap_or(v)
            }
            _ => &[],
        };
        Some(Field { name, value, raw })
    }
}

/// RFC 5322 §2.2.3 unfolding: each line end taken out, the white space after it kept.
fn unfold(value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    let mut it = value.iter().copied().peekable();
    while let Some(b) = it.next() {
        match b {
            b'\r' if it.peek() == Some(&b'\n') => {}
            b'\n' => {}
            _ => out.push(b),
        }
    }
    out
}

/// HEADER.FIELDS (or, with `not`, HEADER.FIELDS.NOT): the fields of `header` named (not
/// named) in `names`, each as it is in the message, then a blank line.
fn header_fields(header: &[u8], names: &[AString<'_>], not: bool) -> Vec<u8> {
    let wanted: HashSet<Vec<u8>> = names.iter().map(|n| AsRef::<[u8]>::as_ref(n).to_ascii_lowercase()).collect();
    let mut out = Vec::new();
    for f in Fields::new(header) {
        let named = f.name.is_some_and(|n| wanted.contains(&n.to_ascii_lowercase()));
        if named != not {
            out.extend_from_slice(f.raw);
            if !f.raw.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

// --- Multipart bodies ---

/// The parts of the multipart body `raw[body..end]`, at most `budget` (the last one allowed
/// then runs to the end): each as (start, end) of its header and body. Only the lines that
/// begin `--boundary` are looked at (found with memmem, which is linear).
fn split(raw: &[u8], body: usize, end: usize, boundary: &[u8], budget: usize) -> Vec<(usize, usize)> {
    let region = raw.get(body..end).unwrap_or_default();
    let mut parts = Vec::new();
    if budget == 0 {
        return parts;
    }
    let needle = [b"--".as_slice(), boundary].concat();
    let finder = memchr::memmem::Finder::new(&needle);
    // Where the part under way starts.
    let mut current: Option<usize> = None;
    let mut pos = 0usize;
    while let Some(found) = region.get(pos..).and_then(|r| finder.find(r)) {
        let ls = pos + found;
        let lf = memchr::memchr(b'\n', region.get(ls..).unwrap_or_default()).map(|i| ls + i);
        // No line begins in the rest of this line.
        let next = lf.map_or(region.len(), |i| i + 1);
        pos = next;
        let line_start = ls == 0 || region.get(ls - 1) == Some(&b'\n');
        let line = region.get(ls..lf.unwrap_or(region.len())).unwrap_or_default();
        let Some(closing) = line_start.then(|| boundary_line(line, boundary)).flatten() else { continue };
        // The line end before the boundary line is the boundary's.
        let before = if ls >= 2 && region.get(ls - 2..ls) == Some(b"\r\n") {
            ls - 2
        } else if ls >= 1 && region.get(ls - 1) == Some(&b'\n') {
            ls - 1
        } else {
            ls
        };
        if let Some(s) = current.take() {
            parts.push((s, before.max(s)));
        }
        if closing {
            break;
        }
        if parts.len() + 1 >= budget {
            parts.push((next, region.len()));
            break;
        }
        current = Some(next);
    }
    if let Some(s) = current {
        parts.push((s, region.len()));
    }
    parts.into_iter().map(|(s, e)| (body + s, body + e)).collect()
}

/// Whether `line` (without its line feed) is a boundary line: Some(true) the closing one.
fn boundary_line(line: &[u8], boundary: &[u8]) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary)?;
    let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
    let blank = |r: &[u8]| r.iter().all(|&b| b == b' ' || b == b'\t');
    match rest.strip_prefix(b"--") {
        Some(r) if blank(r) => Some(true),
        _ if blank(rest) => Some(false),
        _ => None,
    }
}

// --- Structured field values (RFC 2045 tokens, RFC 5322 comments and quoted strings) ---

/// RFC 2045 token characters.
fn is_token(b: u8) -> bool {
    b > 0x20 && b < 0x7f && !b"()<>@,;:\\\"/[]?=".contains(&b)
}

/// What an unquoted parameter value is read as: liberally, anything up to white space, `;`,
/// a comment or a quote (8-bit bytes and `=`, `/`, `?` included, as senders write them).
fn is_value(b: u8) -> bool {
    b > 0x20 && b != 0x7f && !b";(\"".contains(&b)
}

struct Cursor<'v> {
    s: &'v [u8],
    i: usize,
}

impl<'v> Cursor<'v> {
    fn new(s: &'v [u8]) -> Cursor<'v> {
        Cursor { s, i: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) {
        self.i = self.i.saturating_add(1).min(self.s.len());
    }

    fn take_while(&mut self, f: impl Fn(u8) -> bool) -> &'v [u8] {
        let start = self.i;
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
        self.s.get(start..self.i).unwrap_or_default()
    }

    /// White space, line ends and comments.
    fn skip_cfws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.bump(),
                b'(' => {
                    self.comment();
                }
                _ => break,
            }
        }
    }

    /// At `(`: the comment's text (nested parentheses kept, escapes and line ends taken out).
    fn comment(&mut self) -> Vec<u8> {
        self.bump();
        let mut depth = 1usize;
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.bump();
            match b {
                b'\\' => {
                    if let Some(c) = self.peek() {
                        self.bump();
                        out.push(c);
                    }
                }
                b'(' => {
                    depth += 1;
                    out.push(b);
                }
                b')' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                    out.push(b);
                }
                b'\r' | b'\n' => {}
                _ => out.push(b),
            }
        }
        out
    }

    /// At `"`: the quoted string's text, escapes and line ends taken out (to the end when it
    /// does not close).
    fn quoted(&mut self) -> Vec<u8> {
        self.bump();
        self.until(b'"')
    }

    /// Up to `close` (taken, not kept): backslash pairs as their second byte, line ends out.
    fn until(&mut self, close: u8) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.bump();
            match b {
                b'\\' => {
                    if let Some(c) = self.peek() {
                        self.bump();
                        out.push(c);
                    }
                }
                b'\r' | b'\n' => {}
                _ if b == close => break,
                _ => out.push(b),
            }
        }
        out
    }

    /// At `[`: a domain literal, brackets included, line ends taken out.
    fn literal(&mut self) -> Vec<u8> {
        self.bump();
        let mut out = vec![b'['];
        out.extend(self.until(b']'));
        out.push(b']');
        out
    }
}

/// `; attribute=value` parameters, as written (RFC 2231 forms not decoded); what does not read
/// as one is skipped up to the next `;`.
fn parameters(c: &mut Cursor<'_>) -> Params {
    let mut out = Vec::new();
    loop {
        c.skip_cfws();
        match c.peek() {
            None => break,
            Some(b';') => c.bump(),
            Some(_) => {
                // Not a parameter: up to the next `;`.
                c.bump();
                c.take_while(|b| b != b';');
                continue;
            }
        }
        c.skip_cfws();
        let name = c.take_while(is_token);
        c.skip_cfws();
        if name.is_empty() || c.peek() != Some(b'=') {
            continue;
        }
        c.bump();
        c.skip_cfws();
        let value = match c.peek() {
            Some(b'"') => c.quoted(),
            _ => match c.take_while(is_value) {
                [] => continue,
                v => v.to_vec(),
            },
        };
        out.push((name.to_vec(), value));
    }
    out
}

// --- Addresses (RFC 5322 §3.4, read liberally) ---

#[derive(Debug)]
enum Tok {
    /// A run of atom characters (8-bit bytes included).
    Atom(Vec<u8>),
    Quoted(Vec<u8>),
    Comment(Vec<u8>),
    DomainLiteral(Vec<u8>),
    Special(u8),
}

struct Token {
    tok: Tok,
    /// White space or a comment before it.
    space: bool,
}

fn tokens(value: &[u8]) -> Vec<Token> {
    let mut c = Cursor::new(value);
    let mut out = Vec::new();
    let mut space = false;
    while let Some(b) = c.peek() {
        let tok = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                c.bump();
                space = true;
                continue;
            }
            b'(' => Tok::Comment(c.comment()),
            b'"' => Tok::Quoted(c.quoted()),
            b'[' => Tok::DomainLiteral(c.literal()),
            b')' | b'<' | b'>' | b']' | b':' | b';' | b'@' | b'\\' | b',' | b'.' => {
                c.bump();
                Tok::Special(b)
            }
            _ => Tok::Atom(c.take_while(|b| !b" \t\r\n()<>[]:;@\\,.\"".contains(&b)).to_vec()),
        };
        let comment = matches!(tok, Tok::Comment(_));
        out.push(Token { tok, space });
        space = comment;
    }
    out
}

fn is_special(t: &Token, s: u8) -> bool {
    matches!(t.tok, Tok::Special(b) if b == s)
}

/// The text of tokens joined as written: one space where there was white space (or a
/// comment), comments left out.
fn phrase(toks: &[&Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in toks {
        let text: &[u8] = match &t.tok {
            Tok::Comment(_) => continue,
            Tok::Atom(v) | Tok::Quoted(v) | Tok::DomainLiteral(v) => v,
            Tok::Special(b) => std::slice::from_ref(b),
        };
        if t.space && !out.is_empty() {
            out.push(b' ');
        }
        out.extend_from_slice(text);
    }
    out
}

/// The text of tokens joined without white space (a local part, a domain, a route).
fn joined(toks: &[&Token]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in toks {
        match &t.tok {
            Tok::Comment(_) => {}
            Tok::Atom(v) | Tok::Quoted(v) | Tok::DomainLiteral(v) => out.extend_from_slice(v),
            Tok::Special(b) => out.push(*b),
        }
    }
    out
}

fn address(name: Option<&[u8]>, adl: Option<&[u8]>, mailbox: Option<&[u8]>, host: Option<&[u8]>) -> Address<'static> {
    Address { name: nstring(name), adl: nstring(adl), mailbox: nstring(mailbox), host: nstring(host) }
}

/// An address list (groups as RFC 3501 §7.4.2 shows them: a start with the group's name as
/// mailbox and NIL host, then its members, then all NIL).
fn addresses(value: &[u8]) -> Vec<Address<'static>> {
    let toks = tokens(value);
    let mut out = Vec::new();
    // The tokens of the address under way, outside and inside its angle brackets.
    let mut outside = Run::default();
    let mut inside: Option<Run> = None;
    let mut in_angle = false;
    let mut group = false;
    for t in &toks {
        if in_angle {
            if is_special(t, b'>') {
                in_angle = false;
                continue;
            }
            // A comma ends an unclosed bracket, unless in a route (`<@a,@b:x@y>`).
            let route = inside.as_ref().is_some_and(Run::route);
            if !is_special(t, b',') || route {
                inside.get_or_insert_with(Run::default).push(t);
                continue;
            }
            in_angle = false;
        }
        match t.tok {
            Tok::Special(b'<') => {
                in_angle = true;
                inside.get_or_insert_with(Run::default);
            }
            Tok::Special(b',') => {
                mailbox(&outside.toks, inside.take().as_ref().map(|r| r.toks.as_slice()), &mut out);
                outside = Run::default();
            }
            Tok::Special(b':') if inside.is_none() && !outside.route() => {
                // A group's name (a group in a group is not nested: its name is dropped).
                if !group {
                    let name = phrase(&outside.toks);
                    out.push(address(None, None, Some(&name), None));
                    group = true;
                }
                outside = Run::default();
            }
            Tok::Special(b';') => {
                mailbox(&outside.toks, inside.take().as_ref().map(|r| r.toks.as_slice()), &mut out);
                outside = Run::default();
                if group {
                    out.push(address(None, None, None, None));
                    group = false;
                }
            }
            _ => outside.push(t),
        }
    }
    mailbox(&outside.toks, inside.take().as_ref().map(|r| r.toks.as_slice()), &mut out);
    if group {
        out.push(address(None, None, None, None));
    }
    out
}

/// The tokens of one address (or of what is in its angle brackets), and whether the first that
/// is not a comment is `@`: a source route, whose `,` and `:` are its own.
#[derive(Default)]
struct Run<'t> {
    toks: Vec<&'t Token>,
    first_at: Option<bool>,
}

impl<'t> Run<'t> {
    fn push(&mut self, t: &'t Token) {
        if self.first_at.is_none() && !matches!(t.tok, Tok::Comment(_)) {
            self.first_at = Some(is_special(t, b'@'));
        }
        self.toks.push(t);
    }

    fn route(&self) -> bool {
        self.first_at == Some(true)
    }
}

fn starts_with_at(toks: &[&Token]) -> bool {
    toks.iter().find(|t| !matches!(t.tok, Tok::Comment(_))).is_some_and(|t| is_special(t, b'@'))
}

/// One mailbox from the tokens before its angle brackets and those in them (if any).
fn mailbox(outside: &[&Token], inside: Option<&[&Token]>, out: &mut Vec<Address<'static>>) {
    let words = outside.iter().filter(|t| !matches!(t.tok, Tok::Comment(_))).count();
    let comment = outside.iter().rev().find_map(|t| match &t.tok {
        Tok::Comment(c) if !c.trim_ascii().is_empty() => Some(c.trim_ascii()),
        _ => None,
    });
    let (name, spec) = match inside {
        Some(inside) => {
            let name = phrase(outside);
            (Some(name).filter(|n| !n.is_empty()), inside)
        }
        None if words == 0 => return,
        None if !outside.iter().any(|t| is_special(t, b'@'))
            && outside.iter().filter(|t| !matches!(t.tok, Tok::Comment(_))).skip(1).any(|t| t.space) =>
        {
            // Words and no address (`Foo Bar`): a name alone, as Dovecot shows it.
            let name = phrase(outside);
            out.push(address(Some(&name), None, Some(MISSING_MAILBOX), Some(MISSING_DOMAIN)));
            return;
        }
        None => (comment.map(<[u8]>::to_vec), outside),
    };
    // `@a,@b:` before the address is its source route.
    let (adl, spec) = match spec.iter().position(|t| is_special(t, b':')) {
        Some(colon) if starts_with_at(spec) => {
            (Some(joined(spec.get(..colon).unwrap_or_default())), spec.get(colon + 1..).unwrap_or_default())
        }
        _ => (None, spec),
    };
    let (local, domain) = match spec.iter().rposition(|t| is_special(t, b'@')) {
        Some(at) => (joined(spec.get(..at).unwrap_or_default()), joined(spec.get(at + 1..).unwrap_or_default())),
        None => (joined(spec), Vec::new()),
    };
    let local = if local.is_empty() { MISSING_MAILBOX } else { &local };
    let domain = if domain.is_empty() { MISSING_DOMAIN } else { &domain };
    out.push(address(name.as_deref(), adl.as_deref(), Some(local), Some(domain)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_holds_at_most_ten_thousand_addresses_however_many_the_mail_names() {
        let mut mail = b"From: ".to_vec();
        mail.extend(std::iter::repeat_n(b",a".as_slice(), 100_000).flatten());
        mail.extend_from_slice(b"\r\nSubject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
        // Forwarded messages, each naming as many, each with its own envelope.
        for _ in 0..50 {
            mail.extend_from_slice(b"--b\r\nContent-Type: message/rfc822\r\n\r\nTo: ");
            mail.extend(std::iter::repeat_n(b"x@y,".as_slice(), 20_000).flatten());
            mail.extend_from_slice(b"\r\n\r\nhi\r\n");
        }
        mail.extend_from_slice(b"--b--\r\n");
        let tree = Tree::parse(&mail);
        let e = tree.envelope();
        let n = e.from.len() + e.sender.len() + e.reply_to.len() + e.to.len();
        assert!(n <= MAX_ADDRESSES, "{n}");
        assert_eq!(e.subject.0.map(|s| s.as_ref().to_vec()), Some(b"many".to_vec()));
        // The budget is per answer: a BODYSTRUCTURE after it has its own.
        let text = format!("{:?}", tree.body_structure(true));
        assert!(text.matches("Address {").count() <= MAX_ADDRESSES);
        assert!(text.matches("Address {").count() > 100);
    }

    #[test]
    fn fields_cut_for_a_search_keep_the_structure_and_short_fields_whole() {
        let mut mail = b"Subject: s\r\nFrom: ".to_vec();
        mail.extend(std::iter::repeat_n(b",a".as_slice(), 50_000).flatten());
        mail.extend_from_slice(b"\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-Long: ");
        mail.extend(std::iter::repeat_n(b"y".as_slice(), 40_000).flatten());
        mail.extend_from_slice(b"\r\n\r\npart one\r\n--b--\r\n");
        let tree = Tree::parse(&mail);
        let cut = tree.with_fields_cut(1000);
        assert!(cut.len() < 3000, "{}", cut.len());
        let again = Tree::parse(&cut);
        assert_eq!(again.section(Some(&Section::Part(Part(Vec1::from(NonZeroU32::MIN))))).unwrap(), b"part one");
        assert!(matches!(Tree::parse(b"Subject: s\r\n\r\nx").with_fields_cut(1000), std::borrow::Cow::Borrowed(_)));
    }
    use imap_next::imap_types::fetch::MessageDataItem;
    use imap_next::imap_types::response::{Data, Greeting};
    use imap_next::server::{Options, Server};
    use imap_next::{Interrupt, Io, State};
    use std::num::NonZeroU32;

    /// LF line ends written as CRLF.
    fn crlf(s: &str) -> Vec<u8> {
        s.replace('\n', "\r\n").into_bytes()
    }

    fn server() -> Server {
        let mut server = Server::new(Options::default(), Greeting::ok(None, "hi").unwrap());
        // The greeting is written, then reported sent.
        while !matches!(server.next(), Ok(imap_next::server::Event::GreetingSent { .. })) {}
        server
    }

    /// The FETCH response imap-codec writes for these items of message 1.
    fn wire(item: MessageDataItem<'static>) -> Vec<u8> {
        let mut server = server();
        server.enqueue_data(Data::Fetch { seq: NonZeroU32::new(1).unwrap(), items: Vec1::from(item) });
        match server.next() {
            Err(Interrupt::Io(Io::Output(b))) => b,
            other => panic!("{other:?}"),
        }
    }

    /// What follows `* 1 FETCH (NAME ` in the response, as text.
    fn value(item: MessageDataItem<'static>, name: &str) -> String {
        let w = String::from_utf8(wire(item)).unwrap();
        let prefix = format!("* 1 FETCH ({name} ");
        w.strip_prefix(&prefix).unwrap().strip_suffix(")\r\n").unwrap().to_string()
    }

    fn bodystructure(raw: &[u8]) -> String {
        value(MessageDataItem::BodyStructure(Tree::parse(raw).body_structure(true)), "BODYSTRUCTURE")
    }

    fn body(raw: &[u8]) -> String {
        value(MessageDataItem::Body(Tree::parse(raw).body_structure(false)), "BODY")
    }

    fn envelope(raw: &[u8]) -> String {
        value(MessageDataItem::Envelope(Tree::parse(raw).envelope()), "ENVELOPE")
    }

    /// The section of `BODY.PEEK[spec]`, as imap-codec reads it from a client's command.
    fn section_of(spec: &str) -> Option<Section<'static>> {
        use imap_next::imap_types::command::CommandBody;
        use imap_next::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
        let mut server = server();
        server.enqueue_input(format!("a FETCH 1 (BODY.PEEK[{spec}])\r\n").as_bytes());
        let Ok(imap_next::server::Event::CommandReceived { command }) = server.next() else { panic!("{spec}") };
        let CommandBody::Fetch { macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(n), .. } =
            command.body
        else {
            panic!("{spec}")
        };
        match n.into_iter().next() {
            Some(MessageDataItemName::BodyExt { section, .. }) => section,
            other => panic!("{other:?}"),
        }
    }

    /// BODY[spec] of the message, as text (None: no such part).
    fn sec(raw: &[u8], spec: &str) -> Option<String> {
        Tree::parse(raw).section(section_of(spec).as_ref()).map(|b| String::from_utf8(b).unwrap())
    }

    const SIMPLE: &str = "From: Alice <alice@example.com>\n\
        To: bob@example.com\n\
        Subject: Lunch\n\
        Date: Tue, 2 Jan 2024 10:00:00 +0900\n\
        Message-ID: <m0@example.com>\n\
        \n\
        Noon?\n\
        Alice";

    const FORWARD: &str = "From: Alice <alice@example.com>\n\
        To: Bob <bob@example.com>\n\
        Subject: Quote\n\
        Date: Tue, 2 Jan 2024 10:00:00 +0900\n\
        Message-ID: <m1@example.com>\n\
        MIME-Version: 1.0\n\
        Content-Type: multipart/mixed; boundary=\"outer\"\n\
        \n\
        This is a multi-part message in MIME format.\n\
        --outer\n\
        Content-Type: multipart/alternative; boundary=\"alt\"\n\
        \n\
        --alt\n\
        Content-Type: text/plain; charset=utf-8\n\
        \n\
        Hello Bob.\n\
        --alt\n\
        Content-Type: text/html; charset=utf-8\n\
        \n\
        <p>Hello Bob.</p>\n\
        --alt--\n\
        \n\
        --outer\n\
        Content-Type: application/pdf; name=\"quote.pdf\"\n\
        Content-Transfer-Encoding: base64\n\
        Content-Disposition: attachment;\n\
        \tfilename*=UTF-8''%E8%A6%8B%E7%A9%8D.pdf\n\
        \n\
        JVBERi0xLjQK\n\
        --outer\n\
        Content-Type: message/rfc822\n\
        Content-Description: the original\n\
        \n\
        From: Carol <carol@example.com>\n\
        Subject: Original\n\
        X-Note: kept\n\
        \x20folded\n\
        Content-Type: multipart/mixed; boundary=\"inner\"\n\
        \n\
        --inner\n\
        Content-Type: text/plain\n\
        \n\
        Original text.\n\
        --inner\n\
        Content-Type: image/png\n\
        Content-Transfer-Encoding: base64\n\
        Content-Language: en, ja\n\
        Content-Location: http://example.com/i.png\n\
        \n\
        iVBORw0KGgo=\n\
        --inner--\n\
        \n\
        --outer--\n\
        epilogue\n";

    #[test]
    fn a_plain_text_message_is_its_own_part_1_and_its_lines_are_its_line_feeds() {
        let m = crlf(SIMPLE);
        // As Dovecot 2.3 answers, but for the case of the default "7bit".
        assert_eq!(bodystructure(&m), r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 12 1 NIL NIL NIL NIL)"#);
        assert_eq!(body(&m), r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 12 1)"#);
        assert_eq!(sec(&m, "1").unwrap(), "Noon?\r\nAlice");
        assert_eq!(sec(&m, "TEXT").unwrap(), "Noon?\r\nAlice");
        assert!(sec(&m, "HEADER").unwrap().starts_with("From: Alice"));
        assert!(sec(&m, "HEADER").unwrap().ends_with("<m0@example.com>\r\n\r\n"));
        // The MIME header of part 1 of a message that is not multipart is the message's header.
        assert_eq!(sec(&m, "1.MIME"), sec(&m, "HEADER"));
        assert_eq!(sec(&m, "").unwrap().as_bytes(), m.as_slice());
        assert_eq!(sec(&m, "2"), None);
        assert_eq!(sec(&m, "1.1"), None);
        assert_eq!(sec(&m, "1.HEADER"), None, "part 1 holds no message");
        assert_eq!(
            envelope(&m),
            r#"("Tue, 2 Jan 2024 10:00:00 +0900" "Lunch" (("Alice" NIL "alice" "example.com")) (("Alice" NIL "alice" "example.com")) (("Alice" NIL "alice" "example.com")) ((NIL NIL "bob" "example.com")) NIL NIL NIL "<m0@example.com>")"#
        );
    }

    #[test]
    fn a_multipart_with_a_forwarded_message_numbers_its_parts_as_rfc_3501_says() {
        let m = crlf(FORWARD);
        assert!(sec(&m, "TEXT").unwrap().starts_with("This is a multi-part message in MIME format.\r\n--outer\r\n"));
        assert!(sec(&m, "1").unwrap().starts_with("--alt\r\nContent-Type: text/plain"));
        assert!(sec(&m, "1").unwrap().ends_with("--alt--\r\n"));
        assert_eq!(sec(&m, "1.1").unwrap(), "Hello Bob.");
        assert_eq!(sec(&m, "1.2").unwrap(), "<p>Hello Bob.</p>");
        assert_eq!(sec(&m, "1.2.MIME").unwrap(), "Content-Type: text/html; charset=utf-8\r\n\r\n");
        assert_eq!(sec(&m, "2").unwrap(), "JVBERi0xLjQK");
        assert_eq!(
            sec(&m, "2.MIME").unwrap(),
            "Content-Type: application/pdf; name=\"quote.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
             Content-Disposition: attachment;\r\n\tfilename*=UTF-8''%E8%A6%8B%E7%A9%8D.pdf\r\n\r\n"
        );
        // Part 3 is message/rfc822: its body is the message; HEADER, TEXT and the numbers after
        // it are that message's.
        let forwarded = sec(&m, "3").unwrap();
        assert!(forwarded.starts_with("From: Carol <carol@example.com>\r\n"));
        assert!(forwarded.ends_with("iVBORw0KGgo=\r\n--inner--\r\n"));
        assert_eq!(
            sec(&m, "3.MIME").unwrap(),
            "Content-Type: message/rfc822\r\nContent-Description: the original\r\n\r\n"
        );
        assert_eq!(
            sec(&m, "3.HEADER").unwrap(),
            "From: Carol <carol@example.com>\r\nSubject: Original\r\nX-Note: kept\r\n folded\r\n\
             Content-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n"
        );
        assert_eq!(format!("{}{}", sec(&m, "3.HEADER").unwrap(), sec(&m, "3.TEXT").unwrap()), forwarded);
        assert_eq!(sec(&m, "3.1").unwrap(), "Original text.");
        assert_eq!(sec(&m, "3.1.MIME").unwrap(), "Content-Type: text/plain\r\n\r\n");
        assert_eq!(sec(&m, "3.2").unwrap(), "iVBORw0KGgo=");
        assert_eq!(sec(&m, "3.HEADER.FIELDS (SUBJECT)").unwrap(), "Subject: Original\r\n\r\n");
        assert_eq!(sec(&m, "3.HEADER.FIELDS (x-note)").unwrap(), "X-Note: kept\r\n folded\r\n\r\n");
        assert_eq!(
            sec(&m, "3.HEADER.FIELDS.NOT (Subject X-NOTE Content-Type)").unwrap(),
            "From: Carol <carol@example.com>\r\n\r\n"
        );
        assert_eq!(
            sec(&m, "HEADER.FIELDS.NOT (From To Date Message-ID MIME-Version Content-Type)").unwrap(),
            "Subject: Quote\r\n\r\n"
        );
        assert_eq!(sec(&m, "HEADER.FIELDS (X-Absent)").unwrap(), "\r\n");
        // Parts that are not there, and HEADER / TEXT of parts that hold no message.
        for absent in ["4", "1.3", "3.3", "3.1.1", "1.1.1", "2.1", "2.HEADER", "1.TEXT", "3.2.HEADER", "4.MIME"] {
            assert_eq!(sec(&m, absent), None, "{absent}");
        }
    }

    #[test]
    fn bodystructure_and_envelope_are_what_dovecot_answers() {
        let m = crlf(FORWARD);
        // Dovecot 2.3.19's answer, imap-codec writing "TEXT" and "MESSAGE" "RFC822" in capitals
        // and the default encoding being "7BIT" here.
        assert_eq!(
            bodystructure(&m),
            concat!(
                r#"((("TEXT" "plain" ("charset" "utf-8") NIL NIL "7BIT" 10 0 NIL NIL NIL NIL)"#,
                r#"("TEXT" "html" ("charset" "utf-8") NIL NIL "7BIT" 17 0 NIL NIL NIL NIL) "alternative" ("boundary" "alt") NIL NIL NIL)"#,
                r#"("application" "pdf" ("name" "quote.pdf") NIL NIL "base64" 12 NIL ("attachment" ("filename*" "UTF-8''%E8%A6%8B%E7%A9%8D.pdf")) NIL NIL)"#,
                r#"("MESSAGE" "RFC822" NIL NIL "the original" "7BIT" 345 (NIL "Original" (("Carol" NIL "carol" "example.com")) (("Carol" NIL "carol" "example.com")) (("Carol" NIL "carol" "example.com")) NIL NIL NIL NIL NIL) "#,
                r#"(("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 14 0 NIL NIL NIL NIL)"#,
                r#"("image" "png" NIL NIL NIL "base64" 12 NIL NIL ("en" "ja") "http://example.com/i.png") "mixed" ("boundary" "inner") NIL NIL NIL) 18 NIL NIL NIL NIL)"#,
                r#" "mixed" ("boundary" "outer") NIL NIL NIL)"#
            )
        );
        assert_eq!(
            body(&m),
            concat!(
                r#"((("TEXT" "plain" ("charset" "utf-8") NIL NIL "7BIT" 10 0)("TEXT" "html" ("charset" "utf-8") NIL NIL "7BIT" 17 0) "alternative")"#,
                r#"("application" "pdf" ("name" "quote.pdf") NIL NIL "base64" 12)"#,
                r#"("MESSAGE" "RFC822" NIL NIL "the original" "7BIT" 345 (NIL "Original" (("Carol" NIL "carol" "example.com")) (("Carol" NIL "carol" "example.com")) (("Carol" NIL "carol" "example.com")) NIL NIL NIL NIL NIL) "#,
                r#"(("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 14 0)("image" "png" NIL NIL NIL "base64" 12) "mixed") 18) "mixed")"#
            )
        );
        assert_eq!(
            envelope(&m),
            r#"("Tue, 2 Jan 2024 10:00:00 +0900" "Quote" (("Alice" NIL "alice" "example.com")) (("Alice" NIL "alice" "example.com")) (("Alice" NIL "alice" "example.com")) (("Bob" NIL "bob" "example.com")) NIL NIL NIL "<m1@example.com>")"#
        );
    }

    #[test]
    fn what_the_door_writes_imap_codec_reads_back_as_it_was() {
        use imap_next::client::{Client, Event, Options};
        for m in [crlf(SIMPLE), crlf(FORWARD), crlf(JAPANESE), crlf(GROUPS)] {
            let tree = Tree::parse(&m);
            for item in [
                MessageDataItem::BodyStructure(tree.body_structure(true)),
                MessageDataItem::Body(tree.body_structure(false)),
                MessageDataItem::Envelope(tree.envelope()),
            ] {
                let bytes = wire(item.clone());
                let mut options = Options::default();
                options.discard_greeting = true;
                let mut client = Client::new(options);
                client.enqueue_input(&bytes);
                let Ok(Event::DataReceived { data: Data::Fetch { items, .. } }) = client.next() else {
                    panic!("{}", String::from_utf8_lossy(&bytes))
                };
                // Read back, written again: the same bytes.
                assert_eq!(wire(items.into_iter().next().unwrap()), bytes);
            }
        }
    }

    #[test]
    fn parameters_are_passed_as_written_with_rfc_2231_forms_not_decoded() {
        let m = crlf(
            "Content-Type: Text/Plain; CharSet=\"us\\\"-ascii\" ;name*0*=UTF-8''%E8; name*1=\"x y\"; foo; bar=; baz=1 (c)\n\
             Content-Transfer-Encoding: BASE64 (why not)\n\
             Content-ID:  <x@y> \n\
             Content-Description: =?UTF-8?B?6KaL56mN?=\n\
             Content-Disposition: Attachment; filename*=UTF-8''%E8%A6%8B.pdf; size=3\n\
             Content-Language: en, ja (Japanese) , fr\n\
             Content-Location: http://x/y\n\
             \n\
             aGVsbG8=\n",
        );
        assert_eq!(
            bodystructure(&m),
            concat!(
                r#"("TEXT" "Plain" ("CharSet" "us\"-ascii" "name*0*" "UTF-8''%E8" "name*1" "x y" "baz" "1") "<x@y>" "=?UTF-8?B?6KaL56mN?=" "BASE64" 10 1 "#,
                r#"NIL ("Attachment" ("filename*" "UTF-8''%E8%A6%8B.pdf" "size" "3")) ("en" "ja" "fr") "http://x/y")"#
            )
        );
        // A text part without a charset gets the default one, last.
        let m = crlf("Content-Type: text/html; format=flowed\n\nx");
        assert!(bodystructure(&m).starts_with(r#"("TEXT" "html" ("format" "flowed" "charset" "us-ascii")"#));
        // Comments and folding inside a Content-Type.
        let m = crlf("Content-Type: (c) text / html (c);\n charset = \"utf-8\" (c)\n\nx");
        assert!(bodystructure(&m).starts_with(r#"("TEXT" "html" ("charset" "utf-8")"#));
        // Unquoted values read liberally (8-bit bytes, `=`), a multipart's own parameters.
        let m = "Content-Type: application/octet-stream; name=見積.pdf; x=a=b\r\n\r\nx".as_bytes();
        let tree = Tree::parse(m);
        let BodyStructure::Single { body, .. } = tree.body_structure(true) else { panic!() };
        let got: Vec<(Vec<u8>, Vec<u8>)> = body
            .basic
            .parameter_list
            .into_iter()
            .map(|(n, v)| (n.into_inner().to_vec(), v.into_inner().to_vec()))
            .collect();
        assert_eq!(got, vec![(b"name".to_vec(), "見積.pdf".as_bytes().to_vec()), (b"x".to_vec(), b"a=b".to_vec())]);
    }

    #[test]
    fn a_content_type_that_does_not_parse_is_text_plain_and_in_a_digest_the_default_is_message_rfc822() {
        for ct in ["text", ";charset=x", "image/", "/plain", "text/pl\u{e4}in", "multipart"] {
            let m = format!("Content-Type: {ct}\r\n\r\nhello\r\n");
            assert_eq!(
                bodystructure(m.as_bytes()),
                r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 7 1 NIL NIL NIL NIL)"#,
                "{ct}"
            );
        }
        // The first Content-Type counts.
        let m = crlf("Content-Type: application/x-a\nContent-Type: text/html\n\nhello\n");
        assert!(body(&m).starts_with(r#"("application" "x-a" NIL"#));
        let m = crlf(
            "Subject: digest\nContent-Type: multipart/digest; boundary=b\n\npre\n--b\n\nSubject: inner\n\nbody\n\
             --b\nContent-Type: text/plain\n\nplain\n--b--\nepi\n",
        );
        // As Dovecot answers.
        assert_eq!(
            body(&m),
            concat!(
                r#"(("MESSAGE" "RFC822" NIL NIL NIL "7BIT" 22 (NIL "inner" NIL NIL NIL NIL NIL NIL NIL NIL) ("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 4 0) 2)"#,
                r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 5 0) "digest")"#
            )
        );
        assert_eq!(sec(&m, "1.TEXT").unwrap(), "body");
        assert_eq!(sec(&m, "1.1").unwrap(), "body");
        assert_eq!(sec(&m, "1.MIME").unwrap(), "\r\n");
    }

    #[test]
    fn a_missing_closing_boundary_lets_the_last_part_run_to_the_end() {
        let m = crlf(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\nContent-Type: text/html\n\ntwo\nmore\n",
        );
        assert_eq!(
            body(&m),
            r#"(("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 3 0)("TEXT" "html" ("charset" "us-ascii") NIL NIL "7BIT" 11 2) "mixed")"#
        );
        assert_eq!(sec(&m, "2").unwrap(), "two\r\nmore\r\n");
        // An inner multipart left open ends where the outer boundary comes.
        let m = crlf(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/alternative; boundary=c\n\n\
             --c\n\nalt1\n--b\n\nsecond\n--b--\n",
        );
        assert_eq!(sec(&m, "1.1").unwrap(), "alt1");
        assert_eq!(sec(&m, "2").unwrap(), "second");
    }

    #[test]
    fn boundary_lines_may_end_in_white_space_but_not_in_other_text() {
        let m = crlf(
            "Content-Type: multipart/mixed; boundary=b\n\n--b  \t\n\none\n--bx\n--b junk\n--b\n\ntwo\n--b--  \nepi\n",
        );
        assert_eq!(sec(&m, "1").unwrap(), "one\r\n--bx\r\n--b junk");
        assert_eq!(sec(&m, "2").unwrap(), "two");
        assert_eq!(sec(&m, "3"), None);
        // Empty parts, and a boundary line at the very start of the body.
        let m = crlf("Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n\n--b--\n");
        assert_eq!(sec(&m, "1").unwrap(), "");
        assert_eq!(sec(&m, "1.MIME").unwrap(), "");
        assert_eq!(sec(&m, "2").unwrap(), "");
    }

    #[test]
    fn an_lf_only_message_is_read_and_its_bytes_are_returned_as_they_are() {
        let m = b"Subject: lf\nContent-Type: multipart/mixed; boundary=\"zz\"\n\npre\n--zz\nContent-Type: text/plain\n\none\ntwo\n--zz\n\nthree\n--zz--\n";
        assert_eq!(
            body(m),
            r#"(("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 7 1)("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 5 0) "mixed")"#
        );
        assert_eq!(sec(m, "1").unwrap(), "one\ntwo");
        assert_eq!(sec(m, "1.MIME").unwrap(), "Content-Type: text/plain\n\n");
        assert_eq!(sec(m, "2.MIME").unwrap(), "\n");
        assert_eq!(sec(m, "HEADER").unwrap(), "Subject: lf\nContent-Type: multipart/mixed; boundary=\"zz\"\n\n");
        assert_eq!(sec(m, "HEADER.FIELDS (SUBJECT)").unwrap(), "Subject: lf\n\r\n");
        assert!(envelope(m).starts_with(r#"(NIL "lf" NIL"#));
    }

    #[test]
    fn a_part_without_a_blank_line_is_all_header() {
        let m = b"Subject: a\r\nFrom: b@c";
        assert_eq!(sec(m, "HEADER").unwrap(), "Subject: a\r\nFrom: b@c");
        assert_eq!(sec(m, "TEXT").unwrap(), "");
        assert_eq!(sec(m, "HEADER.FIELDS (FROM)").unwrap(), "From: b@c\r\n\r\n");
        assert_eq!(body(m), r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 0 0)"#);
        assert!(envelope(m).contains(r#"((NIL NIL "b" "c"))"#));
        // A message/rfc822 part whose message has no blank line.
        let m = crlf("Content-Type: message/rfc822\n\njust text\n");
        assert_eq!(sec(&m, "1.HEADER").unwrap(), "just text\r\n");
        assert_eq!(sec(&m, "1.TEXT").unwrap(), "");
        // Nothing at all, and a blank line alone.
        assert_eq!(body(b""), r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 0 0)"#);
        assert_eq!(envelope(b""), "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        assert_eq!(sec(b"", "1").unwrap(), "");
        assert_eq!(sec(b"\r\nbody", "HEADER").unwrap(), "\r\n");
        assert_eq!(sec(b"\r\nbody", "TEXT").unwrap(), "body");
    }

    #[test]
    fn a_multipart_without_a_boundary_or_boundary_lines_is_shown_as_text_plain() {
        for ct in ["multipart/mixed", "multipart/mixed; boundary=\"\"", "multipart/mixed; boundary=x"] {
            let m = format!("Content-Type: {ct}\r\n\r\nhello\r\n--y\r\nfoo\r\n");
            assert_eq!(body(m.as_bytes()), r#"("TEXT" "plain" ("charset" "us-ascii") NIL NIL "7BIT" 17 3)"#, "{ct}");
            assert_eq!(sec(m.as_bytes(), "1").unwrap(), "hello\r\n--y\r\nfoo\r\n");
        }
    }

    const JAPANESE: &str = "From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>\n\
        To: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=\n =?ISO-2022-JP?B?GyRCQkBPOhsoQg==?= <taro@example.jp>\n\
        Subject: =?ISO-2022-JP?B?GyRCOGVMLyQ4JGokXiQ5GyhC?=\n =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\n\
        Content-Type: text/plain; charset=ISO-2022-JP\n\
        Content-Transfer-Encoding: 7bit\n\
        \n\
        \x1b$B$3$s$K$A$O\x1b(B\n";

    #[test]
    fn japanese_encoded_words_stay_encoded_in_the_envelope() {
        let m = crlf(JAPANESE);
        // Unfolded as RFC 5322 says: the line end out, the white space kept.
        assert_eq!(
            envelope(&m),
            concat!(
                r#"(NIL "=?ISO-2022-JP?B?GyRCOGVMLyQ4JGokXiQ5GyhC?= =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=" "#,
                r#"(("=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=" NIL "yamada" "example.jp")) "#,
                r#"(("=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=" NIL "yamada" "example.jp")) "#,
                r#"(("=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?=" NIL "yamada" "example.jp")) "#,
                r#"(("=?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= =?ISO-2022-JP?B?GyRCQkBPOhsoQg==?=" NIL "taro" "example.jp")) NIL NIL NIL NIL)"#
            )
        );
        assert_eq!(body(&m), r#"("TEXT" "plain" ("charset" "ISO-2022-JP") NIL NIL "7bit" 18 1)"#);
        // Raw 8-bit text (RFC 6532 mail) goes as a literal, NUL left out.
        let m = "Subject: 見積\0もり\r\nFrom: \"Jörg\" <j@example.de>\r\n\r\n".as_bytes();
        let e = Tree::parse(m).envelope();
        assert!(matches!(&e.subject.0, Some(IString::Literal(l)) if l.data() == "見積もり".as_bytes()));
        assert!(matches!(&e.from[0].name.0, Some(IString::Literal(l)) if l.data() == "Jörg".as_bytes()));
        assert!(String::from_utf8(wire(MessageDataItem::Envelope(e))).unwrap().contains("{12}\r\n見積もり"));
    }

    const GROUPS: &str = "From: \"Joe Q. \\\"Public\\\"\" <john.q@example.com>\n\
        To: Mary <mary@x.test>, jdoe@one.test (John Doe), undisclosed-recipients:;\n\
        Cc: A Group:Ed Jones <c@a.test>,joe@where.test,\n John <jdoe@one.test>; \"quoted local\"@x.y\n\
        Bcc: <@r1.test,@r2.test:route@host.test>, nodomain, Foo Bar, \"weird <x@y>\" <a(c)@ b . c >, (only a comment)\n\
        \n\
        body\n";

    #[test]
    fn groups_are_shown_as_rfc_3501_says_and_addresses_are_read_liberally() {
        let m = crlf(GROUPS);
        // As Dovecot answers (its literal for the name with quotes written as a quoted string).
        assert_eq!(
            envelope(&m),
            concat!(
                r#"(NIL NIL (("Joe Q. \"Public\"" NIL "john.q" "example.com")) "#,
                r#"(("Joe Q. \"Public\"" NIL "john.q" "example.com")) (("Joe Q. \"Public\"" NIL "john.q" "example.com")) "#,
                r#"(("Mary" NIL "mary" "x.test")("John Doe" NIL "jdoe" "one.test")(NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL)) "#,
                r#"((NIL NIL "A Group" NIL)("Ed Jones" NIL "c" "a.test")(NIL NIL "joe" "where.test")("John" NIL "jdoe" "one.test")(NIL NIL NIL NIL)(NIL NIL "quoted local" "x.y")) "#,
                r#"((NIL "@r1.test,@r2.test" "route" "host.test")(NIL NIL "nodomain" "MISSING_DOMAIN")("Foo Bar" NIL "MISSING_MAILBOX" "MISSING_DOMAIN")("weird <x@y>" NIL "a" "b.c")) "#,
                r#"NIL NIL)"#
            )
        );
        let e = |s: &str| Tree::parse(format!("To: {s}\r\n\r\n").as_bytes()).envelope().to;
        let short = |s: &str| {
            e(s).iter()
                .map(|a| {
                    [&a.name, &a.adl, &a.mailbox, &a.host]
                        .map(|n| {
                            n.0.as_ref()
                                .map(|s| String::from_utf8_lossy(s.as_ref()).into_owned())
                                .unwrap_or("NIL".into())
                        })
                        .join(" ")
                })
                .collect::<Vec<_>>()
        };
        // An empty group, a group left open, groups in a group (not nested in IMAP).
        assert_eq!(short("G:;"), ["NIL NIL G NIL", "NIL NIL NIL NIL"]);
        assert_eq!(short("G: a@b"), ["NIL NIL G NIL", "NIL NIL a b", "NIL NIL NIL NIL"]);
        assert_eq!(
            short("G1: a@b, G2: c@d; e@f;"),
            ["NIL NIL G1 NIL", "NIL NIL a b", "NIL NIL c d", "NIL NIL NIL NIL", "NIL NIL e f"]
        );
        // Empty elements, an unclosed bracket, a domain literal, a route without brackets.
        assert_eq!(short(",, a@b ,"), ["NIL NIL a b"]);
        assert_eq!(short("A <a@b, c@d"), ["A NIL a b", "NIL NIL c d"]);
        assert_eq!(short("x@[1.2.3.4]"), ["NIL NIL x [1.2.3.4]"]);
        assert_eq!(short("@a:b@c"), ["NIL @a b c"]);
        assert_eq!(short("<>"), ["NIL NIL MISSING_MAILBOX MISSING_DOMAIN"]);
        assert_eq!(short("\"\" <a@b>"), ["NIL NIL a b"]);
        assert_eq!(short("A.B.C <abc@x>, \"John\" Smith <j@x>"), ["A.B.C NIL abc x", "John Smith NIL j x"]);
        assert_eq!(short("(((unclosed"), Vec::<String>::new());
        assert_eq!(short("\"unclosed"), ["NIL NIL unclosed MISSING_DOMAIN"]);
        assert_eq!(short("nodomain (Jo)"), ["Jo NIL nodomain MISSING_DOMAIN"]);
    }

    #[test]
    fn sender_and_reply_to_are_from_when_absent_or_empty() {
        let m = crlf("From: a@b\nSender:\nSubject:\n\nx");
        assert_eq!(
            envelope(&m),
            r#"(NIL "" ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) ((NIL NIL "a" "b")) NIL NIL NIL NIL NIL)"#
        );
        let m = crlf("from: a@b\nREPLY-TO: r@b\nsender : s@b\n\nx");
        assert_eq!(
            envelope(&m),
            r#"(NIL NIL ((NIL NIL "a" "b")) ((NIL NIL "s" "b")) ((NIL NIL "r" "b")) NIL NIL NIL NIL NIL)"#
        );
        // The first of fields written twice.
        let m = crlf("Subject: one\nSubject: two\nFrom: a@b\nFrom: c@d\n\nx");
        assert!(envelope(&m).starts_with(r#"(NIL "one" ((NIL NIL "a" "b")) "#));
        // Unfolded, the white space before the value out, the rest kept.
        let m = crlf("Message-ID:\n <x@y>\nIn-Reply-To: <a@b>\n <c@d>\nDate:  Mon, 1 Jan 2024 00:00:00 +0000 \n\nx");
        assert_eq!(
            envelope(&m),
            r#"("Mon, 1 Jan 2024 00:00:00 +0000 " NIL NIL NIL NIL NIL NIL NIL "<a@b> <c@d>" "<x@y>")"#
        );
    }

    #[test]
    fn header_fields_are_matched_case_insensitively_and_kept_as_written() {
        let m = crlf("Subject: a\nX-A: 1\n  cont\nx-a: 2\nNOCOLON\nX-B : 3\n\nbody\n");
        // As Dovecot answers.
        assert_eq!(
            sec(&m, "HEADER.FIELDS (X-A x-b nocolon)").unwrap(),
            "X-A: 1\r\n  cont\r\nx-a: 2\r\nX-B : 3\r\n\r\n"
        );
        assert_eq!(sec(&m, "HEADER.FIELDS.NOT (X-A)").unwrap(), "Subject: a\r\nNOCOLON\r\nX-B : 3\r\n\r\n");
        assert_eq!(sec(&m, "HEADER.FIELDS (nothing)").unwrap(), "\r\n");
    }

    #[test]
    fn ten_thousand_nested_multiparts_stop_at_depth_20_without_recursion() {
        let mut m = String::from("Subject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n");
        for i in 1..10_000 {
            m.push_str(&format!("--b{}\r\nContent-Type: multipart/mixed; boundary=b{i}\r\n\r\n", i - 1));
        }
        m.push_str("--b9999\r\n\r\ninner\r\n");
        let started = std::time::Instant::now();
        let tree = Tree::parse(m.as_bytes());
        let bs = bodystructure(m.as_bytes());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(tree.nodes.len(), MAX_DEPTH + 1);
        // The part at depth 20 is not looked into: one application/octet-stream part, as Dovecot
        // shows parts past its own limit.
        assert!(bs.starts_with(&format!(
            "{}(\"application\" \"octet-stream\" (\"boundary\" \"b20\")",
            "(".repeat(MAX_DEPTH)
        )));
        let path = vec!["1"; MAX_DEPTH].join(".");
        assert!(sec(m.as_bytes(), &path).unwrap().starts_with("--b20\r\n"));
        assert_eq!(sec(m.as_bytes(), &format!("{path}.1")), None);
        // Message in message in message...
        let mut m = String::new();
        for i in 0..10_000 {
            m.push_str(&format!("Subject: m{i}\r\nContent-Type: message/rfc822\r\n\r\n"));
        }
        m.push_str("Subject: last\r\n\r\ninner\r\n");
        let started = std::time::Instant::now();
        let tree = Tree::parse(m.as_bytes());
        assert_eq!(tree.nodes.len(), MAX_DEPTH + 1);
        let e = envelope(m.as_bytes());
        let bs = bodystructure(m.as_bytes());
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(e.starts_with(r#"(NIL "m0" "#));
        assert!(bs.contains(r#"(NIL "m20" NIL NIL NIL NIL NIL NIL NIL NIL) ("application" "octet-stream" NIL"#));
        assert!(sec(m.as_bytes(), &["1"; 20].join(".")).unwrap().starts_with("Subject: m20\r\n"));
        assert!(sec(m.as_bytes(), &format!("{}.HEADER", ["1"; 19].join("."))).unwrap().starts_with("Subject: m19\r\n"));
    }

    #[test]
    fn a_message_of_twelve_thousand_parts_is_cut_at_5000_the_last_running_to_the_end() {
        let mut m = String::from("Subject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
        for i in 0..12_000 {
            m.push_str(&format!("--b\r\n\r\np{i}\r\n"));
        }
        m.push_str("--b--\r\n");
        let started = std::time::Instant::now();
        let tree = Tree::parse(m.as_bytes());
        let BodyStructure::Multi { bodies, .. } = tree.body_structure(true) else { panic!() };
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
        assert_eq!(tree.nodes.len(), MAX_PARTS);
        assert_eq!(bodies.as_ref().len(), MAX_PARTS - 1);
        assert_eq!(sec(m.as_bytes(), "4998").unwrap(), "p4997");
        let last = sec(m.as_bytes(), "4999").unwrap();
        assert!(last.starts_with("p4998\r\n--b\r\n\r\np4999\r\n"));
        assert!(last.ends_with("p11999\r\n--b--\r\n"));
        assert_eq!(sec(m.as_bytes(), "5000"), None);
        // Parts nested in the parts share the budget: past it, a multipart is not looked into.
        let mut m = String::from("Content-Type: multipart/mixed; boundary=o\r\n\r\n");
        for _ in 0..3 {
            m.push_str("--o\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n");
            m.push_str(&"--i\r\n\r\nx\r\n".repeat(3_000));
            m.push_str("--i--\r\n");
        }
        m.push_str("--o--\r\n");
        let tree = Tree::parse(m.as_bytes());
        assert_eq!(tree.nodes.len(), MAX_PARTS);
        let b = body(m.as_bytes());
        assert!(
            b.ends_with(r#"("application" "octet-stream" ("boundary" "i") NIL NIL "7BIT" 30005) "mixed")"#),
            "{}",
            &b[b.len() - 200..]
        );
    }

    #[test]
    fn large_and_hostile_messages_take_linear_time() {
        let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
        // One header line of 4 MiB, and a header of 262,144 short fields.
        cases.push(("long line", [b"Subject: ".as_slice(), &vec![b'x'; 4 << 20], b"\r\n\r\nbody"].concat()));
        cases.push(("many fields", [b"X: y\r\n".repeat(1 << 18), b"\r\nbody".to_vec()].concat()));
        // 20 nested multiparts around half a million short lines that look like boundaries.
        let mut nested = String::new();
        for i in 0..20 {
            nested.push_str(&format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n"));
        }
        cases.push(("nested", [nested.into_bytes(), b"--b0x\r\n--\r\n".repeat(1 << 18)].concat()));
        // Address lists of comments, colons and brackets.
        cases.push((
            "addresses",
            [b"To: ".as_slice(), &b"(c)".repeat(1 << 18), &b":".repeat(1 << 18), b"\r\n\r\n"].concat(),
        ));
        cases.push((
            "route",
            [b"To: @a".as_slice(), &b"(c)".repeat(1 << 18), &b":".repeat(1 << 18), b"\r\n\r\n"].concat(),
        ));
        cases.push((
            "angle",
            [b"To: <".as_slice(), &b"(c)".repeat(1 << 18), &b",".repeat(1 << 18), b"\r\n\r\n"].concat(),
        ));
        cases.push(("comments", [b"To: ".as_slice(), &b"(".repeat(1 << 20), b"\r\n\r\n"].concat()));
        cases.push((
            "params",
            [b"Content-Type: text/plain".as_slice(), &b";a=b".repeat(1 << 18), &b";".repeat(1 << 18), b"\r\n\r\n"]
                .concat(),
        ));
        for (what, m) in cases {
            let started = std::time::Instant::now();
            let tree = Tree::parse(&m);
            let _ = tree.body_structure(true);
            let _ = tree.envelope();
            let names = Vec1::try_from(vec![AString::try_from("X").unwrap(); 1000]).unwrap();
            let _ = tree.section(Some(&Section::HeaderFields(None, names)));
            // Generous for a debug build on a slow machine; quadratic work would take far longer. (A
            // release build reads 64 MiB of each of these within about a second.)
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "{what}: {:?}", started.elapsed());
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A small xorshift: the same inputs each run.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let seeds = [crlf(SIMPLE), crlf(FORWARD), crlf(JAPANESE), crlf(GROUPS)];
        let alphabet = b"\r\n \t:;,<>()\"\\@.[]=-/*\0\xff";
        let specs = ["1", "2.1", "3.HEADER", "3.1.MIME", "1.TEXT", "HEADER.FIELDS (From)", "3.HEADER.FIELDS.NOT (x)"];
        let specs: Vec<Section<'static>> = specs.iter().filter_map(|s| section_of(s)).collect();
        for round in 0..3_000 {
            let mut m = seeds[round % seeds.len()].clone();
            for _ in 0..(rand() % 16 + 1) {
                let at = (rand() as usize) % (m.len() + 1);
                match rand() % 3 {
                    0 => m.insert(at, alphabet[(rand() as usize) % alphabet.len()]),
                    1 if at < m.len() => {
                        m.remove(at);
                    }
                    _ => m.truncate(at),
                }
            }
            let tree = Tree::parse(&m);
            wire(MessageDataItem::BodyStructure(tree.body_structure(true)));
            wire(MessageDataItem::Envelope(tree.envelope()));
            for s in &specs {
                let _ = tree.section(Some(s));
            }
        }
    }
}
