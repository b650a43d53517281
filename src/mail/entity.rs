//! A mail as header fields and body: fields with their folding kept, Content-Type, the exact
//! byte ranges of multipart parts.

use super::*;

/// One header field, with its folding kept and line ends made CRLF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The whole field, `Name: value` with continuation lines, ending in CRLF.
    pub raw: Vec<u8>,
}

impl Field {
    pub fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
    }

    pub fn is_content(&self) -> bool {
        self.name.len() > 8 && self.name[..8].eq_ignore_ascii_case("content-")
    }

    pub fn new(name: &str, value: &str) -> Field {
        Field { name: name.to_string(), raw: format!("{name}: {value}\r\n").into_bytes() }
    }

    /// A field already written whole (`Name: value` folded, ending in CRLF; see fields.rs).
    pub fn written(name: &str, whole: String) -> Field {
        Field { name: name.to_string(), raw: whole.into_bytes() }
    }
}

/// A MIME entity: header fields and the body bytes as they were.
#[derive(Debug, Clone)]
pub struct Entity<'a> {
    pub fields: Vec<Field>,
    pub body: &'a [u8],
}

impl<'a> Entity<'a> {
    /// Split at the first empty line. A mail with no empty line is all header.
    pub fn parse(raw: &'a [u8]) -> Result<Entity<'a>> {
        let (head, body) = split_head(raw);
        Ok(Entity { fields: parse_fields(head)?, body })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.is(name))
    }

    /// A field's value as text for people: RFC 2047 encoded words decoded in whatever charset
    /// they name (mail-parser, `full_encoding`), unfolded and trimmed.
    pub fn text(&self, name: &str) -> Option<String> {
        let raw = &self.field(name)?.raw;
        let colon = raw.iter().position(|&b| b == b':')?;
        let parsed = mail_parser::parsers::MessageStream::new(&raw[colon + 1..]).parse_unstructured();
        parsed.as_text().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
    }

    pub fn header_bytes(&self) -> Vec<u8> {
        self.fields.iter().flat_map(|f| f.raw.iter().copied()).collect()
    }

    /// Content-Type as (type/subtype lower-case, parameters), default text/plain (RFC 2045 §5.2).
    pub fn content_type(&self) -> ContentType {
        let head = self.header_bytes();
        let parsed = MessageParser::default().parse_headers(&head);
        let ct = parsed.as_ref().and_then(|m| m.header(HeaderName::ContentType)).and_then(|v| v.as_content_type());
        match ct {
            Some(ct) => ContentType {
                mime: format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase(),
                params: ct
                    .attributes()
                    .unwrap_or(&[])
                    .iter()
                    .map(|a| (a.name.to_ascii_lowercase(), a.value.to_string()))
                    .collect(),
            },
            None => ContentType { mime: "text/plain".into(), params: vec![("charset".into(), "us-ascii".into())] },
        }
    }

    pub fn transfer_encoding(&self) -> String {
        self.field("Content-Transfer-Encoding")
            .map(|f| field_value(f).trim().to_ascii_lowercase())
            .unwrap_or_else(|| "7bit".into())
    }

    /// The one sender's address, lower-cased: exactly one From field naming exactly one mailbox
    /// (RFC 5322 §3.6). A second From field, or a second mailbox, is refused, not skipped: mail
    /// programs show one of them, and which one is theirs to choose, not ours.
    pub fn from_address(&self) -> std::result::Result<String, FromError> {
        let froms: Vec<&Field> = self.fields.iter().filter(|f| f.is("From")).collect();
        let field = match froms.as_slice() {
            [] => return Err(FromError::Missing),
            [one] => *one,
            several => return Err(FromError::Fields(several.len())),
        };
        if self.has_bare_cr() {
            return Err(FromError::BareCr);
        }
        let colon = field.raw.iter().position(|&b| b == b':').ok_or(FromError::Missing)?;
        let value = &field.raw[colon + 1..];
        // A NUL or another control ends or hides text for some readers (a display name cut at
        // a NUL shows whatever came before it).
        if value.iter().any(|&b| b.is_ascii_control() && !matches!(b, b'\t' | b'\r' | b'\n')) {
            return Err(FromError::Control);
        }
        let mailboxes: Vec<Option<String>> =
            match mail_parser::parsers::MessageStream::new(value).parse_address().into_address() {
                Some(mail_parser::Address::List(list)) => {
                    list.into_iter().map(|a| a.address.map(|x| x.into_owned())).collect()
                }
                Some(mail_parser::Address::Group(_)) => return Err(FromError::Group),
                None => Vec::new(),
            };
        let address = match mailboxes.as_slice() {
            [] => return Err(FromError::NotAnAddress),
            [Some(a)] => a.trim().to_ascii_lowercase(),
            [None] => return Err(FromError::NotAnAddress),
            several => return Err(FromError::Mailboxes(several.len())),
        };
        if !is_addr_spec(&address) {
            return Err(FromError::NotAnAddress);
        }
        Ok(address)
    }

    /// An address the From's display name shows that is not the From address itself
    /// (`"ceo@example.jp" <alice@example.jp>`): mail programs show the name, so the name claims
    /// a sender too. None when the name shows none, or shows the same address.
    pub fn from_name_claims(&self) -> Option<String> {
        let address = self.from_address().ok()?;
        let raw = &self.field("From")?.raw;
        let colon = raw.iter().position(|&b| b == b':')?;
        let parsed = mail_parser::parsers::MessageStream::new(&raw[colon + 1..]).parse_address().into_address()?;
        let mail_parser::Address::List(list) = parsed else { return None };
        // What a reader sees: characters that show nothing dropped, the at-sign's lookalikes
        // (full-width, small) read as one; any word with one in it is an address to them.
        let name: String = list
            .first()?
            .name
            .as_deref()?
            .chars()
            .filter(|&c| !crate::l10n::misleading(c) && !c.is_control())
            .map(|c| if matches!(c, '\u{ff20}' | '\u{fe6b}') { '@' } else { c })
            .collect();
        name.split(|c: char| c.is_whitespace() || "<>\"'(),;[]".contains(c))
            .map(|w| w.trim_matches('.').to_lowercase())
            .find(|w| w.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty()) && *w != address)
    }

    /// A CR not followed by LF in the header: a line end to some readers, so a field hidden
    /// behind one would be a field they see and we did not count.
    pub fn has_bare_cr(&self) -> bool {
        let head = self.header_bytes();
        head.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') || head.ends_with(b"\r")
    }

    /// Does the header name a sender at all (one From field or several)?
    pub fn has_from(&self) -> bool {
        self.field("From").is_some()
    }

    /// The body with its transfer encoding removed.
    pub fn decoded_body(&self) -> Result<Vec<u8>> {
        match self.transfer_encoding().as_str() {
            "base64" => decode_base64(self.body),
            "quoted-printable" => mail_parser::decoders::quoted_printable::quoted_printable_decode(self.body)
                .ok_or_else(|| MailError::Malformed(crate::tr!("mail-quoted-printable"))),
            "7bit" | "8bit" | "binary" => Ok(self.body.to_vec()),
            other => {
                Err(MailError::Malformed(crate::tr!("mail-unknown-encoding", encoding = crate::l10n::escaped(other))))
            }
        }
    }
}

/// Why a mail's From field names no one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FromError {
    #[error("{}", crate::tr!("from-missing"))]
    Missing,
    /// This many From fields.
    #[error("{}", crate::tr!("from-several-fields", count = *.0))]
    Fields(usize),
    /// One From field with this many mailboxes.
    #[error("{}", crate::tr!("from-several-mailboxes", count = *.0))]
    Mailboxes(usize),
    #[error("{}", crate::tr!("from-group"))]
    Group,
    #[error("{}", crate::tr!("from-not-an-address"))]
    NotAnAddress,
    #[error("{}", crate::tr!("from-bare-cr"))]
    BareCr,
    #[error("{}", crate::tr!("from-control"))]
    Control,
}

/// Why signed content names another sender than the mail shows.
#[derive(Debug, thiserror::Error)]
pub enum InnerSender {
    /// Its header fields cannot be read, so what a reader would take from them is unknown.
    #[error("{}", crate::tr!("inner-sender-unreadable", error = .0.to_string()))]
    Unreadable(MailError),
    #[error("{}", crate::tr!("inner-sender-from", why = .0.to_string()))]
    From(FromError),
    /// It names this address.
    #[error("{}", crate::tr!("inner-sender-differs", inner = .inner, outer = .outer))]
    Differs { inner: String, outer: String },
    /// This many Content-Type fields: readers choose differently which counts.
    #[error("{}", crate::tr!("inner-sender-content-types", count = *.0))]
    ContentTypes(usize),
}

/// Where signed content carries header fields of its own (RFC 8551 §3.1 header protection: the
/// signed entity itself, or the message/rfc822 it wraps), a From among them must be the one the
/// mail shows (`outer_from`): exactly one field, one mailbox, the same address. What cannot be
/// read is refused, not passed: a reader may read it another way. A message attached deeper
/// down (a forwarded one inside a multipart) is content, and keeps its own From.
pub fn sender_inside(content: &[u8], outer_from: &str) -> std::result::Result<(), InnerSender> {
    sender_of_entity(content, outer_from, true)
}

fn sender_of_entity(raw: &[u8], outer_from: &str, may_wrap: bool) -> std::result::Result<(), InnerSender> {
    let e = Entity::parse(raw).map_err(InnerSender::Unreadable)?;
    if e.has_bare_cr() {
        return Err(InnerSender::From(FromError::BareCr));
    }
    if e.has_from() {
        let inner = e.from_address().map_err(InnerSender::From)?;
        if inner != outer_from {
            return Err(InnerSender::Differs { inner, outer: outer_from.to_string() });
        }
    }
    let types = e.fields.iter().filter(|f| f.is("Content-Type")).count();
    if types > 1 {
        return Err(InnerSender::ContentTypes(types));
    }
    if may_wrap && matches!(e.content_type().mime.as_str(), "message/rfc822" | "message/global") {
        let message = e.decoded_body().map_err(InnerSender::Unreadable)?;
        return sender_of_entity(&message, outer_from, false);
    }
    Ok(())
}

/// `local@domain`, one `@`, nothing empty, no space or control: what a certificate's
/// rfc822Name can hold and a From address is compared with.
fn is_addr_spec(a: &str) -> bool {
    match a.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && a.chars().all(|c| {
                    !c.is_whitespace() && !c.is_control() && !crate::l10n::misleading(c) && c != '<' && c != '>'
                })
        }
        None => false,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub mime: String,
    pub params: Vec<(String, String)>,
}

impl ContentType {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

pub(super) fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    match header_end(raw) {
        Some((head, body)) => (&raw[..head], &raw[body..]),
        None => (raw, &[]),
    }
}

/// Where the header block ends (before its empty line) and the body starts (after it), if the
/// mail has an empty line at all.
pub fn header_end(raw: &[u8]) -> Option<(usize, usize)> {
    // A mail that starts with an empty line has no header fields.
    if raw.starts_with(b"\r\n") {
        return Some((0, 2));
    }
    if raw.starts_with(b"\n") {
        return Some((0, 1));
    }
    let mut i = 0;
    while let Some(nl) = memchr::memchr(b'\n', &raw[i..]) {
        let next = i + nl + 1;
        if raw[next..].starts_with(b"\r\n") {
            return Some((next, next + 2));
        }
        if raw[next..].starts_with(b"\n") {
            return Some((next, next + 1));
        }
        i = next;
    }
    None
}

pub(super) fn parse_fields(head: &[u8]) -> Result<Vec<Field>> {
    let mut fields: Vec<Field> = Vec::new();
    for (n, line) in lines(head).enumerate() {
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            let last =
                fields.last_mut().ok_or_else(|| MailError::Malformed(crate::tr!("mail-first-line-continued")))?;
            last.raw.extend_from_slice(line);
            last.raw.extend_from_slice(b"\r\n");
            continue;
        }
        let colon = line.iter().position(|&b| b == b':');
        let name = colon.map(|c| &line[..c]).filter(|n| !n.is_empty() && n.iter().all(|&b| (33..=126).contains(&b)));
        let Some(name) = name else {
            return Err(MailError::Malformed(crate::tr!("mail-bad-header-line", line = n + 1)));
        };
        let mut raw = line.to_vec();
        raw.extend_from_slice(b"\r\n");
        // The name is ASCII 33–126 by the check above.
        fields.push(Field { name: String::from_utf8_lossy(name).into_owned(), raw });
    }
    Ok(fields)
}

/// Lines without their line ends (LF or CRLF).
pub(super) fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = data.strip_suffix(b"\n").unwrap_or(data);
    let empty = data.is_empty();
    trimmed.split(|&b| b == b'\n').filter(move |_| !empty).map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

pub fn field_value(f: &Field) -> String {
    let s = String::from_utf8_lossy(&f.raw);
    let v = s.split_once(':').map(|(_, v)| v).unwrap_or("");
    v.replace("\r\n", "").replace('\n', "").trim().to_string()
}

/// The parts of a multipart body, each exactly as between its delimiter lines
/// (RFC 2046 §5.1.1: the line end before a delimiter belongs to the delimiter).
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(MailError::Malformed(crate::tr!("mail-bad-boundary")));
    }
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut pos = 0;
    let mut closed = false;
    while pos <= body.len() {
        let line_end = memchr::memchr(b'\n', &body[pos..]).map(|i| pos + i).unwrap_or(body.len());
        let line = &body[pos..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.starts_with(delim) {
            let rest = &line[delim.len()..];
            let is_close = rest.starts_with(b"--");
            let tail = if is_close { &rest[2..] } else { rest };
            if tail.iter().all(|&b| b == b' ' || b == b'\t') {
                if let Some(s) = start {
                    // Drop the CRLF (or LF) that precedes this delimiter.
                    let mut end = pos;
                    if end > s && body[end - 1] == b'\n' {
                        end -= 1;
                        if end > s && body[end - 1] == b'\r' {
                            end -= 1;
                        }
                    }
                    if parts.len() == MAX_PARTS {
                        return Err(MailError::Malformed(crate::tr!("mail-too-many-parts", most = MAX_PARTS)));
                    }
                    parts.push(&body[s..end.max(s)]);
                }
                if is_close {
                    closed = true;
                    break;
                }
                start = Some((line_end + 1).min(body.len()));
            }
        }
        pos = line_end + 1;
    }
    if !closed {
        return Err(MailError::Malformed(crate::tr!("mail-no-closing-delimiter", boundary = boundary)));
    }
    Ok(parts)
}
