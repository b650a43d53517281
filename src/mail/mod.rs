//! MIME handling: split a mail into header fields and body, find parts, and rewrite an entity into
//! the canonical, 7-bit-safe form S/MIME signs (RFC 8551 §3.1). Header values are parsed with
//! mail-parser; part boundaries are found here because a signature covers exact bytes.

pub mod fields;
pub mod smime;

use mail_parser::{HeaderName, MessageParser};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("malformed mail: {0}")]
    Malformed(String),
}

type Result<T> = std::result::Result<T, MailError>;

/// Deepest multipart nesting we follow; real mail stays far below.
pub const MAX_DEPTH: usize = 32;
/// Most body parts one multipart may have (each costs a little memory and a parse).
pub const MAX_PARTS: usize = 1000;
/// Longest line RFC 5322 §2.1.1 allows; anything longer must be encoded.
const MAX_LINE: usize = 998;

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

    /// The first address of the From field, lower-cased.
    pub fn from_address(&self) -> Option<String> {
        let head = self.header_bytes();
        let parsed = MessageParser::default().parse_headers(&head)?;
        let addr = parsed.from()?.first()?.address()?.trim().to_ascii_lowercase();
        if addr.contains('@') {
            Some(addr)
        } else {
            None
        }
    }

    /// The body with its transfer encoding removed.
    pub fn decoded_body(&self) -> Result<Vec<u8>> {
        match self.transfer_encoding().as_str() {
            "base64" => decode_base64(self.body),
            "quoted-printable" => mail_parser::decoders::quoted_printable::quoted_printable_decode(self.body)
                .ok_or_else(|| MailError::Malformed("a quoted-printable body does not decode".into())),
            "7bit" | "8bit" | "binary" => Ok(self.body.to_vec()),
            other => Err(MailError::Malformed(format!("unknown Content-Transfer-Encoding '{other}'"))),
        }
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

fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
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

fn parse_fields(head: &[u8]) -> Result<Vec<Field>> {
    let mut fields: Vec<Field> = Vec::new();
    for (n, line) in lines(head).enumerate() {
        if line.is_empty() {
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            let last = fields
                .last_mut()
                .ok_or_else(|| MailError::Malformed("the first header line is a continuation line".into()))?;
            last.raw.extend_from_slice(line);
            last.raw.extend_from_slice(b"\r\n");
            continue;
        }
        let colon = line.iter().position(|&b| b == b':');
        let name = colon.map(|c| &line[..c]).filter(|n| !n.is_empty() && n.iter().all(|&b| (33..=126).contains(&b)));
        let Some(name) = name else {
            return Err(MailError::Malformed(format!("header line {} is not a 'Name: value' field", n + 1)));
        };
        let mut raw = line.to_vec();
        raw.extend_from_slice(b"\r\n");
        // The name is ASCII 33–126 by the check above.
        fields.push(Field { name: String::from_utf8_lossy(name).into_owned(), raw });
    }
    Ok(fields)
}

/// Lines without their line ends (LF or CRLF).
fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = data.strip_suffix(b"\n").unwrap_or(data);
    let empty = data.is_empty();
    trimmed.split(|&b| b == b'\n').filter(move |_| !empty).map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

pub fn field_value(f: &Field) -> String {
    let s = String::from_utf8_lossy(&f.raw);
    let v = s.split_once(':').map(|(_, v)| v).unwrap_or("");
    v.replace("\r\n", "").replace('\n', "").trim().to_string()
}

/// LF or CRLF line ends → CRLF; a lone CR is left alone (it is flagged as unsafe elsewhere).
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 32);
    to_crlf_into(&mut out, data);
    out
}

/// `to_crlf`, appended to `out` (no intermediate copy of large bodies).
pub fn to_crlf_into(out: &mut Vec<u8>, data: &[u8]) {
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', data) {
        if nl == 0 || data[nl - 1] != b'\r' {
            out.extend_from_slice(&data[start..nl]);
            out.extend_from_slice(b"\r\n");
            start = nl + 1;
        }
    }
    out.extend_from_slice(&data[start..]);
}

/// The parts of a multipart body, each exactly as between its delimiter lines
/// (RFC 2046 §5.1.1: the line end before a delimiter belongs to the delimiter).
pub fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<&'a [u8]>> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err(MailError::Malformed("multipart boundary is missing or longer than 70 characters".into()));
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
                        return Err(MailError::Malformed(format!("a multipart has more than {MAX_PARTS} parts")));
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
        return Err(MailError::Malformed(format!("multipart body has no closing delimiter '--{boundary}--'")));
    }
    Ok(parts)
}

/// Every line end is CRLF.
pub fn is_crlf(data: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', data).all(|i| i > 0 && data[i - 1] == b'\r')
}

/// Does this body survive any SMTP relay unchanged? 7-bit, no NUL or bare CR, lines ≤ 998,
/// no trailing white space (relays strip it), no line starting "From " (mbox mangles it).
fn transport_safe(body: &[u8]) -> bool {
    safe_lines(body, false)
}

/// Is this body already what `canonicalise` would produce from it: CRLF line ends only, and
/// transport-safe. This check sits in front of hashing on every large signature.
pub fn already_canonical(body: &[u8]) -> bool {
    safe_lines(body, true)
}

/// From how large a body `canonical_digest` hashes on a second thread while it checks.
const DIGEST_BESIDE: usize = 1 << 20;

/// `already_canonical(body)`, and if so `digest(&[head, body])`: for a large body taken on a
/// second thread while this one checks (the check costs about half the hash; on two cores the
/// pair takes as long as the hash alone). None when the body is not canonical: it is signed as
/// rewritten, so a digest of it as it is would be of the wrong bytes.
pub fn canonical_digest<D: Send>(head: &[u8], body: &[u8], digest: impl FnOnce(&[&[u8]]) -> D + Send) -> Option<D> {
    if body.len() < DIGEST_BESIDE {
        return already_canonical(body).then(|| digest(&[head, body]));
    }
    std::thread::scope(|s| {
        let hashing = s.spawn(|| digest(&[head, body]));
        let canonical = already_canonical(body);
        // A hashing thread that died gave no digest; the caller then hashes what it signs.
        let d = hashing.join().ok();
        if canonical {
            d
        } else {
            None
        }
    })
}

/// The line rules of `transport_safe` (and, with `crlf_only`, CRLF line ends), checked in one
/// pass of cache-sized windows: each window is scanned several times while it is in cache,
/// rather than the whole mail from memory several times.
fn safe_lines(body: &[u8], crlf_only: bool) -> bool {
    const WINDOW: usize = 64 * 1024;
    let mut start = 0;
    while start < body.len() {
        // A window ends just after a line end (or at the end of the body), so lines stay whole.
        let limit = (start + WINDOW).min(body.len());
        let end = if limit == body.len() {
            limit
        } else {
            match memchr::memrchr(b'\n', &body[start..limit]) {
                Some(i) => start + i + 1,
                // No line end within a window: longer than any allowed line.
                None => return false,
            }
        };
        if !safe_window(&body[start..end], crlf_only) {
            return false;
        }
        start = end;
    }
    true
}

/// `safe_lines` for whole lines (the last one may lack its line end).
fn safe_window(w: &[u8], crlf_only: bool) -> bool {
    let (clean, crs, lfs) = byte_classes(w);
    if !clean {
        return false;
    }
    // CRLF only: every CR must be the one before an LF — as many CRs as LFs, each LF preceded
    // by one — which also rules out a CR inside a line without looking for it per line.
    if crlf_only && crs != lfs {
        return false;
    }
    let mut line_start = 0;
    for lf in memchr::memchr_iter(b'\n', w).chain(std::iter::once(w.len())) {
        if lf == w.len() && line_start == w.len() {
            break;
        }
        let raw = &w[line_start..lf];
        let line = match raw.strip_suffix(b"\r") {
            Some(text) => text,
            None if crlf_only && lf < w.len() => return false,
            None => raw,
        };
        if (!crlf_only && memchr::memchr(b'\r', line).is_some())
            || line.len() > MAX_LINE
            || line.last().is_some_and(|&b| b == b' ' || b == b'\t')
            || line.starts_with(b"From ")
        {
            return false;
        }
        line_start = lf + 1;
    }
    true
}

/// Whether every byte is 7-bit and not NUL, and how many CRs and LFs there are: one pass that the
/// compiler vectorises, where separate scans for each cost four passes over the window.
fn byte_classes(w: &[u8]) -> (bool, usize, usize) {
    let (mut bad, mut crs, mut lfs) = (0u8, 0usize, 0usize);
    // Counts per chunk fit a byte; 255 bytes at most per chunk.
    for chunk in w.chunks(255) {
        let (mut b, mut cr, mut lf) = (0u8, 0u8, 0u8);
        for &x in chunk {
            // High bit set for NUL (0 - 1 wraps) and for every byte from 0x80 up.
            b |= (x | x.wrapping_sub(1)) & 0x80;
            cr += u8::from(x == b'\r');
            lf += u8::from(x == b'\n');
        }
        bad |= b;
        crs += usize::from(cr);
        lfs += usize::from(lf);
    }
    (bad == 0, crs, lfs)
}

/// The structural checks of `canonicalise` (boundaries present and closed, nesting bounded)
/// without rewriting anything: for bodies signed as they are.
pub fn check_structure(entity: &Entity<'_>, depth: usize) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(MailError::Malformed(format!("MIME parts nested deeper than {MAX_DEPTH} levels")));
    }
    let ct = entity.content_type();
    if ct.mime.starts_with("multipart/") {
        let boundary = ct
            .param("boundary")
            .ok_or_else(|| MailError::Malformed(format!("{} part has no boundary parameter", ct.mime)))?;
        for part in split_multipart(entity.body, boundary)? {
            check_structure(&Entity::parse(part)?, depth + 1)?;
        }
    }
    Ok(())
}

/// Rewrite an entity (content header fields + body) into the canonical form that is signed:
/// CRLF line ends, and any part that a relay could alter re-encoded (text → quoted-printable,
/// anything else → base64). Multipart structure is kept; preambles and epilogues are dropped.
pub fn canonicalise(entity: &Entity<'_>, depth: usize) -> Result<Vec<u8>> {
    if depth > MAX_DEPTH {
        return Err(MailError::Malformed(format!("MIME parts nested deeper than {MAX_DEPTH} levels")));
    }
    let ct = entity.content_type();
    let mut out = Vec::new();
    if ct.mime.starts_with("multipart/") {
        let boundary = ct
            .param("boundary")
            .ok_or_else(|| MailError::Malformed(format!("{} part has no boundary parameter", ct.mime)))?;
        if entity.fields.iter().any(|f| f.is("Content-Transfer-Encoding")) {
            let cte = entity.transfer_encoding();
            if !matches!(cte.as_str(), "7bit" | "8bit" | "binary") {
                return Err(MailError::Malformed(format!(
                    "a multipart part cannot have Content-Transfer-Encoding {cte}"
                )));
            }
        }
        for f in entity.fields.iter().filter(|f| !f.is("Content-Transfer-Encoding")) {
            out.extend_from_slice(&f.raw);
        }
        out.extend_from_slice(b"\r\n");
        for part in split_multipart(entity.body, boundary)? {
            let child = Entity::parse(part)?;
            out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            out.extend_from_slice(&canonicalise(&child, depth + 1)?);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        return Ok(out);
    }
    let cte = entity.transfer_encoding();
    let safe = transport_safe(entity.body)
        && matches!(cte.as_str(), "7bit" | "8bit" | "binary" | "quoted-printable" | "base64");
    if safe {
        for f in &entity.fields {
            out.extend_from_slice(&f.raw);
        }
        out.extend_from_slice(b"\r\n");
        out.reserve(entity.body.len() + entity.body.len() / 32);
        to_crlf_into(&mut out, entity.body);
        return Ok(out);
    }
    if ct.mime == "message/rfc822" || ct.mime == "message/global" {
        return Err(MailError::Malformed(
            "an attached message contains 8-bit data or over-long lines; attach it as a file instead".into(),
        ));
    }
    let content = entity.decoded_body()?;
    for f in entity.fields.iter().filter(|f| !f.is("Content-Transfer-Encoding")) {
        out.extend_from_slice(&f.raw);
    }
    if ct.mime.starts_with("text/") {
        out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n\r\n");
        out.extend_from_slice(&quoted_printable(&content));
    } else {
        out.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        out.extend_from_slice(&base64_lines(&content));
    }
    Ok(out)
}

/// Quoted-printable (RFC 2045 §6.7) of text: line breaks stay hard CRLF breaks; lines are cut at
/// 76; trailing white space, "From " and a leading "." are protected.
pub fn quoted_printable(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 8);
    let body = text.strip_suffix(b"\n").map(|t| t.strip_suffix(b"\r").unwrap_or(t));
    let had_final_newline = body.is_some();
    let body = body.unwrap_or(text);
    let all: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    for (i, line) in all.iter().enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut col = 0;
        for (j, &b) in line.iter().enumerate() {
            let last = j + 1 == line.len();
            let literal = (b == b' ' || b == b'\t') && !last
                || (33..=126).contains(&b)
                    && b != b'='
                    && !(j == 0 && (b == b'.' || (b == b'F' && line.starts_with(b"From "))));
            let piece: Vec<u8> = if literal { vec![b] } else { format!("={b:02X}").into_bytes() };
            if col + piece.len() > 75 {
                out.extend_from_slice(b"=\r\n");
                col = 0;
            }
            col += piece.len();
            out.extend_from_slice(&piece);
        }
        if i + 1 < all.len() || had_final_newline {
            out.extend_from_slice(b"\r\n");
        }
    }
    out
}

/// Base64 in 76-character CRLF lines (RFC 2045 §6.8).
pub fn base64_lines(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    base64_lines_into(&mut out, data);
    out
}

/// `base64_lines` appended to `out`, encoded in runs of 1024 lines: no second full-size buffer.
/// How many bytes `base64_lines_into` writes for `len` bytes of data.
pub fn base64_lines_len(len: usize) -> usize {
    len.div_ceil(57) * 78
}

pub fn base64_lines_into(out: &mut Vec<u8>, data: &[u8]) {
    use base64::Engine;
    const LINE: usize = 57; // input bytes per 76-character line
    out.reserve(base64_lines_len(data.len()));
    // Sized for what this call encodes: a 77 KB scratch buffer for a 300-byte signature made
    // malloc consolidate its free lists on every request in the agent.
    let mut run = String::with_capacity(data.len().min(LINE * 1024).div_ceil(3) * 4);
    for chunk in data.chunks(LINE * 1024) {
        run.clear();
        base64::engine::general_purpose::STANDARD.encode_string(chunk, &mut run);
        for line in run.as_bytes().chunks(76) {
            out.extend_from_slice(line);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Base64 lines gathered into runs of up to 64 KiB without line breaks (no cleaned copy of a
/// large body first, and few calls into the decoder: one per line was a third of `decrypt`).
struct Base64Runs {
    carry: Vec<u8>,
}

impl Base64Runs {
    const RUN: usize = 64 * 1024;

    fn new() -> Self {
        Base64Runs { carry: Vec::with_capacity(Self::RUN + 128) }
    }

    /// Take one line (without its LF); decode into `out` what is ready.
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // Any byte up to the space could be white space: look closer only then. A fold without
        // early exit, so it runs as vector code over the 76 characters of a line.
        if line.iter().fold(false, |seen, &b| seen | (b <= b' ')) {
            self.carry.extend(line.iter().copied().filter(|b| !b.is_ascii_whitespace()));
        } else {
            self.carry.extend_from_slice(line);
        }
        if self.carry.last() == Some(&b'=') {
            // Padding ends an encoded unit: decode all of it (a body may hold several).
            Self::decode(&self.carry, out)?;
            self.carry.clear();
        } else if self.carry.len() >= Self::RUN {
            // Whole groups of four now; the remainder waits for the next line.
            let whole = self.carry.len() / 4 * 4;
            Self::decode(&self.carry[..whole], out)?;
            self.carry.drain(..whole);
        }
        Ok(())
    }

    fn finish(self, out: &mut Vec<u8>) -> Result<()> {
        if self.carry.is_empty() {
            Ok(())
        } else {
            Self::decode(&self.carry, out)
        }
    }

    fn decode(run: &[u8], out: &mut Vec<u8>) -> Result<()> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode_vec(run, out)
            .map_err(|e| MailError::Malformed(format!("base64 body does not decode: {e}")))
    }
}

/// The base64 of a mail body, decoded.
pub fn decode_base64(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 3);
    let mut runs = Base64Runs::new();
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', data).chain(std::iter::once(data.len())) {
        runs.line(&data[start..end], &mut out)?;
        start = end + 1;
    }
    runs.finish(&mut out)?;
    Ok(out)
}

/// `buf[from..]` is base64: afterwards `buf` is what it decodes to, in the same allocation (a
/// large encrypted mail is not held encoded and decoded at once). Decoded bytes never outrun the
/// lines already read, so writing from the front never overwrites input still to come.
pub fn decode_base64_in_place(buf: &mut Vec<u8>, from: usize) -> Result<()> {
    let mut runs = Base64Runs::new();
    let mut piece = Vec::with_capacity(Base64Runs::RUN);
    let (mut read, mut written) = (from.min(buf.len()), 0);
    let flush = |buf: &mut Vec<u8>, piece: &mut Vec<u8>, written: &mut usize| {
        buf[*written..*written + piece.len()].copy_from_slice(piece);
        *written += piece.len();
        piece.clear();
    };
    while read < buf.len() {
        let end = memchr::memchr(b'\n', &buf[read..]).map_or(buf.len(), |i| read + i);
        runs.line(&buf[read..end], &mut piece)?;
        read = end + 1;
        flush(buf, &mut piece, &mut written);
    }
    runs.finish(&mut piece)?;
    flush(buf, &mut piece, &mut written);
    buf.truncate(written);
    // glibc gives the tail of a large (mapped) block back without copying.
    buf.shrink_to_fit();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed pseudo-random sequence: the property tests are reproducible.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    #[test]
    fn base64_lines_are_76_characters_and_decode_back() {
        use base64::Engine;
        for len in [0usize, 1, 56, 57, 58, 57 * 1024 - 1, 57 * 1024, 57 * 1024 + 1, 200_003] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let lines = base64_lines(&data);
            let plain = base64::engine::general_purpose::STANDARD.encode(&data);
            let expected: Vec<u8> =
                plain.as_bytes().chunks(76).flat_map(|c| c.iter().copied().chain(*b"\r\n")).collect();
            assert_eq!(lines, expected, "length {len}");
            assert_eq!(decode_base64(&lines).unwrap(), data);
        }
    }

    #[test]
    fn base64_decoded_in_place_is_what_a_separate_decode_gives() {
        use base64::Engine;
        let mut next = xorshift(0x05ee_db64);
        for len in [0usize, 1, 2, 3, 57, 4096, 200_003] {
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let one_line = base64::engine::general_purpose::STANDARD.encode(&data).into_bytes();
            // Lines of 76 with CRLF, one unbroken line, bare LF with stray spaces and a blank
            // line, and two padded units back to back: every layout the gatherer handles.
            let spaced: Vec<u8> =
                one_line.chunks(64).flat_map(|c| c.iter().copied().chain(*b" \n")).chain(*b"\n").collect();
            let half = base64::engine::general_purpose::STANDARD.encode(&data[..len / 2])
                + "\r\n"
                + &base64::engine::general_purpose::STANDARD.encode(&data[len / 2..]);
            for body in [base64_lines(&data), one_line.clone(), spaced, half.into_bytes()] {
                let head = b"Content-Type: application/pkcs7-mime\r\n\r\n".to_vec();
                let mut buf = [head.clone(), body.clone()].concat();
                decode_base64_in_place(&mut buf, head.len()).unwrap();
                assert_eq!(buf, decode_base64(&body).unwrap(), "length {len}");
                assert_eq!(buf, data, "length {len}");
            }
        }
        let mut bad = b"head\n\nAAA*\n".to_vec();
        assert!(decode_base64_in_place(&mut bad, 6).is_err());
    }

    #[test]
    fn the_digest_beside_the_check_is_of_head_and_body_and_only_for_a_canonical_body() {
        use sha2::Digest;
        let digest = |pieces: &[&[u8]]| {
            pieces
                .iter()
                .fold(sha2::Sha256::new(), |mut h, p| {
                    h.update(p);
                    h
                })
                .finalize()
                .to_vec()
        };
        let line = [b'Q'; 76];
        for size in [100usize, DIGEST_BESIDE - 1, DIGEST_BESIDE + 1000] {
            let mut body: Vec<u8> = line.iter().copied().chain(*b"\r\n").cycle().take(size).collect();
            body.truncate(body.len() - body.len() % 78);
            let head = b"Content-Type: text/plain\r\n\r\n";
            let expected = digest(&[head, &body]);
            assert_eq!(canonical_digest(head, &body, digest), Some(expected), "size {size}");
            // A bare LF at the very end: not canonical, so no digest of it as it is.
            body.extend_from_slice(b"tail\n");
            assert_eq!(canonical_digest(head, &body, digest), None, "size {size}");
        }
    }

    /// The plain definition `already_canonical` must agree with (the windowed scan is faster).
    fn canonical_by_definition(body: &[u8]) -> bool {
        let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        let n = lines.len();
        body.is_ascii()
            && !body.contains(&0)
            && lines.iter().enumerate().all(|(i, l)| {
                let last = i + 1 == n;
                let text = if last {
                    *l
                } else {
                    match l.strip_suffix(b"\r") {
                        Some(t) => t,
                        None => return false,
                    }
                };
                !text.contains(&b'\r')
                    && text.len() <= MAX_LINE
                    && !text.ends_with(b" ")
                    && !text.ends_with(b"\t")
                    && !text.starts_with(b"From ")
            })
    }

    /// The same line rules without the CRLF requirement: a line may end in CR LF or LF.
    fn transport_safe_by_definition(body: &[u8]) -> bool {
        body.is_ascii()
            && !body.contains(&0)
            && body.split(|&b| b == b'\n').all(|l| {
                let text = l.strip_suffix(b"\r").unwrap_or(l);
                !text.contains(&b'\r')
                    && text.len() <= MAX_LINE
                    && !text.ends_with(b" ")
                    && !text.ends_with(b"\t")
                    && !text.starts_with(b"From ")
            })
    }

    #[test]
    fn windowed_canonical_check_agrees_with_the_definition() {
        let mut next = xorshift(0x2545f4914f6cdd1d);
        let alphabet: &[u8] = b"ab \t\r\nF=\x00\x80";
        for round in 0..3000 {
            // Long bodies cross the 64 KiB windows; short ones hit the edge cases.
            let len = if round % 50 == 0 { 200_000 } else { (next() % 300) as usize };
            let mut body = Vec::with_capacity(len);
            while body.len() < len {
                match next() % 10 {
                    0 => body.extend_from_slice(b"\r\n"),
                    1 => body.push(alphabet[(next() % alphabet.len() as u64) as usize]),
                    2 if round % 7 == 0 => body.extend_from_slice(b"From x"),
                    _ => body.extend_from_slice(b"abcdefgh"),
                }
                if round % 50 == 0 && body.len() % 70 < 8 {
                    body.extend_from_slice(b"\r\n");
                }
            }
            assert_eq!(
                already_canonical(&body),
                canonical_by_definition(&body),
                "round {round}: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
            assert_eq!(
                transport_safe(&body),
                transport_safe_by_definition(&body),
                "round {round}: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        // Across windows: canonical, then one flaw at a time far past the first window.
        let mut big: Vec<u8> = Vec::new();
        while big.len() < 300_000 {
            big.extend_from_slice(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=abcdefghijklmnopqrstuvwxyz0123456789+/\r\n");
        }
        assert!(already_canonical(&big) && canonical_by_definition(&big));
        for flaw in [&b"\n"[..], b"\r", b" \r\n", b"\r\nFrom here", b"\x80", b"\x00"] {
            let mut b = big.clone();
            let at = 200_000 - 200_000 % 78;
            b.splice(at..at, flaw.iter().copied());
            assert_eq!(already_canonical(&b), canonical_by_definition(&b), "{flaw:?}");
            assert!(!already_canonical(&b), "{flaw:?}");
        }
        let long_line = [b'a'; 1200];
        assert!(!already_canonical(&long_line));
        assert!(already_canonical(b"a\r\nb"));
        assert!(!already_canonical(b"a\nb"));
    }

    #[test]
    fn multipart_parts_exclude_the_line_end_before_each_delimiter() {
        let body = b"preamble\r\n--b\r\nA\r\n\r\nx\r\n--b\r\nB\r\n--b--\r\nepilogue";
        let parts = split_multipart(body, "b").unwrap();
        assert_eq!(parts, vec![&b"A\r\n\r\nx"[..], &b"B"[..]]);
    }

    #[test]
    fn multipart_without_closing_delimiter_is_malformed() {
        assert!(split_multipart(b"--b\r\nA\r\n", "b").is_err());
    }

    #[test]
    fn eight_bit_text_is_made_quoted_printable() {
        let raw = "Content-Type: text/plain; charset=utf-8\n\nこんにちは \nFrom here\n".as_bytes();
        let e = Entity::parse(raw).unwrap();
        let c = canonicalise(&e, 0).unwrap();
        let s = String::from_utf8(c).unwrap();
        assert!(s.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\n"), "{s}");
        assert!(s.is_ascii());
        assert!(s.contains("=46rom here"), "{s}");
        assert!(s.contains("=20\r\n"), "trailing space protected: {s}");
        let back = mail_parser::decoders::quoted_printable::quoted_printable_decode(
            s.split("\r\n\r\n").nth(1).unwrap().as_bytes(),
        )
        .unwrap();
        assert_eq!(back, "こんにちは \r\nFrom here\r\n".as_bytes());
    }

    #[test]
    fn safe_seven_bit_text_is_kept_with_crlf() {
        let e = Entity::parse(b"Content-Type: text/plain\n\nhello\nworld\n").unwrap();
        assert_eq!(canonicalise(&e, 0).unwrap(), b"Content-Type: text/plain\r\n\r\nhello\r\nworld\r\n");
    }

    #[test]
    fn header_line_that_is_not_a_field_is_malformed() {
        assert!(Entity::parse(b"From: a@b\nthis is not a header\n\nbody").is_err());
    }

    #[test]
    fn from_address_is_found() {
        let e = Entity::parse(b"From: \"Alice\" <Alice@Example.JP>\nTo: b@c\n\nx").unwrap();
        assert_eq!(e.from_address().as_deref(), Some("alice@example.jp"));
    }

    #[test]
    fn mutated_mime_never_panics_in_canonicalise_or_classify() {
        let sample = b"From: a@b.example\nContent-Type: multipart/mixed; boundary=\"X\"\n\n--X\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nh=C3=A9llo =\nworld\n--X\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAw==\n--X\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=Y\n\n--Y\n\nx\n--Y\nContent-Type: application/pkcs7-signature\n\nMAA=\n--Y--\n--X--\n";
        let mut next = xorshift(0x2545f4914f6cdd1d);
        for _ in 0..5000 {
            let mut m = sample.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                match next() % 4 {
                    0 => m[i] ^= 1 << (next() % 8),
                    1 => m.truncate(i.max(1)),
                    2 => m.insert(i, [b'\n', b'-', b'=', 0xff, b':', b'"'][(next() % 6) as usize]),
                    _ => {
                        m.remove(i);
                    }
                }
                if m.is_empty() {
                    m.push(b'x');
                }
            }
            if let Ok(e) = Entity::parse(&m) {
                let _ = canonicalise(&e, 0);
                let _ = e.from_address();
            }
            let _ = smime::classify(&m);
        }
    }
}
