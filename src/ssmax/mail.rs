//! The SSMAX message body: a multipart/mixed with the sender's text, a plain-text list of the
//! protected attachments' labels, and one application/pkcs7-mime part per protected attachment,
//! each carrying its label in an `SSMAX-Label` header.

use crate::mail::smime::boundary_for;
use crate::mail::{base64_lines, canonicalise, fields, quoted_printable, split_multipart, Entity, Field, MailError};

/// An attachment in the clear: its MIME entity (headers + body), as it will be encrypted.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub label: String,
    pub entity: Vec<u8>,
}

/// An attachment as it travels: encrypted (CMS DER) with its label in the clear.
#[derive(Debug, Clone)]
pub struct Protected {
    pub filename: String,
    pub label: String,
    pub cms: Vec<u8>,
}

/// A parsed SSMAX body (or draft): the readable parts, and the attachments.
#[derive(Debug, Clone, Default)]
pub struct Parts {
    pub body: Vec<Vec<u8>>,
    pub attachments: Vec<Attachment>,
    pub protected: Vec<Protected>,
}

pub const LABEL_HEADER: &str = "SSMAX-Label";
pub const FILENAME_HEADER: &str = "SSMAX-Filename";
pub const PART_HEADER: &str = "SSMAX-Part";

/// The name a part gives its file: Content-Disposition filename, else Content-Type name,
/// decoded however the sender's client wrote it (fields.rs).
fn part_filename(e: &Entity<'_>) -> Option<String> {
    let charset = e.content_type().param("charset").map(str::to_string);
    let value = |name: &str| {
        let raw = &e.field(name)?.raw;
        let colon = raw.iter().position(|&b| b == b':')?;
        Some(raw[colon + 1..].to_vec())
    };
    let from = |field: &str, param: &str| {
        value(field).and_then(|v| fields::param(&v, param, charset.as_deref())).filter(|n| !n.trim().is_empty())
    };
    from("Content-Disposition", "filename").or_else(|| from("Content-Type", "name"))
}

/// A label or file name as a reader of its `SSMAX-Label` / `SSMAX-Filename` field gets it back
/// (surrounding space and folds do not survive a header): what an attachment is bound to.
pub fn as_field_reads(name: &str, text: &str) -> Option<String> {
    let field = format!("{}\r\n\r\n", fields::unstructured(name, text));
    Entity::parse(field.as_bytes()).ok().and_then(|e| e.text(name))
}

/// `Content-Type: {mime}; name=…` and `Content-Disposition: attachment; filename=…` for a file,
/// the name as RFC 2231 when it is not ASCII, each field folded at 78.
fn file_fields(mime: &str, name: &str) -> String {
    let mut ct = format!("Content-Type: {mime}");
    let mut len = ct.len();
    fields::write_param(&mut ct, &mut len, "name", name);
    let mut cd = String::from("Content-Disposition: attachment");
    let mut len = cd.len();
    fields::write_param(&mut cd, &mut len, "filename", name);
    format!("{ct}\r\n{cd}\r\n")
}

fn is_attachment(e: &Entity<'_>) -> bool {
    let disp =
        e.field("Content-Disposition").map(|f| crate::mail::field_value(f).to_ascii_lowercase()).unwrap_or_default();
    disp.starts_with("attachment") || (part_filename(e).is_some() && !e.content_type().mime.starts_with("text/"))
}

/// Split a draft's content (its Content-* fields + body) into readable parts and attachments.
/// Every attachment of a draft is protected; its label is `SSMAX-Label`, else
/// `Content-Description`, else its file name.
pub fn parse_draft(content: &Entity<'_>) -> Result<Parts, MailError> {
    let mut parts = Parts::default();
    let ct = content.content_type();
    if ct.mime != "multipart/mixed" {
        parts.body.push(canonicalise(content, 0)?);
        return Ok(parts);
    }
    let boundary = ct.param("boundary").ok_or_else(|| MailError::Malformed(crate::tr!("ssmax-draft-no-boundary")))?;
    for (n, raw) in split_multipart(content.body, boundary)?.into_iter().enumerate() {
        let e = Entity::parse(raw)?;
        if e.field(PART_HEADER).is_some() {
            continue; // a label list from an earlier round; rebuilt on send
        }
        if is_attachment(&e) {
            let filename = part_filename(&e).unwrap_or_else(|| format!("attachment-{}", n + 1));
            let label =
                e.text(LABEL_HEADER).or_else(|| e.text("Content-Description")).unwrap_or_else(|| filename.clone());
            let fields: Vec<Field> = e.fields.iter().filter(|f| !f.is(LABEL_HEADER)).cloned().collect();
            let entity = canonicalise(&Entity { fields, body: e.body }, 1)?;
            parts.attachments.push(Attachment { filename, label, entity });
        } else {
            parts.body.push(canonicalise(&e, 1)?);
        }
    }
    Ok(parts)
}

/// A file given with `--attach FILE --label TEXT`.
pub fn file_attachment(path: &std::path::Path, label: &str, data: &[u8]) -> Attachment {
    let filename = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "attachment".into());
    let mut entity =
        format!("{}Content-Transfer-Encoding: base64\r\n\r\n", file_fields("application/octet-stream", &filename))
            .into_bytes();
    entity.extend_from_slice(&base64_lines(data));
    Attachment { filename, label: label.to_string(), entity }
}

/// The plain-text list of labels the reader sees.
fn label_list(labels: &[(String, String)], org: &str) -> Vec<u8> {
    let mut text = format!("Protected attachments (SSMAX, each encrypted separately for {org}):\n");
    // The sender's text, in a list the reader takes line by line: no line of its own.
    let e = crate::l10n::escaped;
    for (i, (label, file)) in labels.iter().enumerate() {
        text.push_str(&format!("  [{}] {} — {}\n", i + 1, e(label), e(file)));
    }
    let mut out = format!("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n{PART_HEADER}: labels\r\n\r\n").into_bytes();
    out.extend_from_slice(&quoted_printable(text.as_bytes()));
    out
}

/// The header of a protected part; its base64 follows.
fn protected_head(p: &Protected) -> Vec<u8> {
    let name = format!("{}.p7m", p.filename);
    format!(
        "{}Content-Transfer-Encoding: base64\r\n{}{}\r\n",
        file_fields("application/pkcs7-mime; smime-type=authEnveloped-data", &name),
        fields::unstructured(LABEL_HEADER, &p.label),
        fields::unstructured(FILENAME_HEADER, &p.filename)
    )
    .into_bytes()
}

/// A decrypted attachment for the reader: its entity with the label added.
fn opened_part(a: &Attachment) -> Vec<u8> {
    let mut out = fields::unstructured(LABEL_HEADER, &a.label).into_bytes();
    out.extend_from_slice(&a.entity);
    out
}

/// A part of a multipart being built: its bytes, or a header with data to go in as base64.
enum Piece {
    Bytes(Vec<u8>),
    Base64 { head: Vec<u8>, data: Vec<u8> },
}

/// multipart/mixed, written once into a buffer of its final size; each base64 part's data is
/// encoded straight in and dropped (a large attachment is held as data + text, never text twice).
fn multipart(parts: Vec<Piece>) -> Vec<u8> {
    // Base64 text cannot contain the boundary ('-' is not in its alphabet): only what else is
    // there needs checking.
    let visible: Vec<&[u8]> = parts
        .iter()
        .map(|p| match p {
            Piece::Bytes(b) => b.as_slice(),
            Piece::Base64 { head, .. } => head.as_slice(),
        })
        .collect();
    let b = boundary_for(&visible);
    let head = format!("Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n");
    let size: usize = parts
        .iter()
        .map(|p| match p {
            Piece::Bytes(x) => x.len(),
            Piece::Base64 { head, data } => head.len() + crate::mail::base64_lines_len(data.len()),
        } + b.len() + 6)
        .sum();
    let mut out = Vec::with_capacity(head.len() + size + b.len() + 8);
    out.extend_from_slice(head.as_bytes());
    for p in parts {
        out.extend_from_slice(format!("--{b}\r\n").as_bytes());
        match p {
            Piece::Bytes(x) => out.extend_from_slice(&x),
            Piece::Base64 { head, data } => {
                out.extend_from_slice(&head);
                crate::mail::base64_lines_into(&mut out, &data);
            }
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    out
}

/// The body that is signed and sent: text, label list, protected attachments.
pub fn build(body: &[Vec<u8>], protected: Vec<Protected>, org: &str) -> Vec<u8> {
    let mut parts: Vec<Piece> = body.iter().cloned().map(Piece::Bytes).collect();
    if !protected.is_empty() {
        let labels: Vec<(String, String)> = protected.iter().map(|p| (p.label.clone(), p.filename.clone())).collect();
        parts.push(Piece::Bytes(label_list(&labels, org)));
        parts.extend(protected.into_iter().map(|p| Piece::Base64 { head: protected_head(&p), data: p.cms }));
    }
    multipart(parts)
}

/// The body for the reader after decryption: text, label list, opened attachments.
pub fn build_opened(body: &[Vec<u8>], opened: &[Attachment], org: &str) -> Vec<u8> {
    let mut parts: Vec<Piece> = body.iter().cloned().map(Piece::Bytes).collect();
    if !opened.is_empty() {
        let labels: Vec<(String, String)> = opened.iter().map(|a| (a.label.clone(), a.filename.clone())).collect();
        parts.push(Piece::Bytes(label_list(&labels, org)));
        parts.extend(opened.iter().map(opened_part).map(Piece::Bytes));
    }
    multipart(parts)
}

/// Parse a signed SSMAX body back into readable parts and protected attachments.
pub fn parse(inner: &[u8]) -> Result<Parts, MailError> {
    let e = Entity::parse(inner)?;
    let ct = e.content_type();
    let mut parts = Parts::default();
    if ct.mime != "multipart/mixed" {
        parts.body.push(crate::mail::to_crlf(inner));
        return Ok(parts);
    }
    let boundary = ct.param("boundary").ok_or_else(|| MailError::Malformed(crate::tr!("ssmax-mixed-no-boundary")))?;
    for (n, raw) in split_multipart(e.body, boundary)?.into_iter().enumerate() {
        let p = Entity::parse(raw)?;
        let pct = p.content_type();
        if p.field(PART_HEADER).is_some() {
            continue; // the label list is rebuilt from the parts themselves
        }
        let marked = p.field(LABEL_HEADER).is_some() || p.field(FILENAME_HEADER).is_some();
        if marked && pct.mime != "application/pkcs7-mime" && pct.mime != "application/x-pkcs7-mime" {
            // Marked as a protected attachment, in the clear: it was never encrypted, so no
            // organisation inspected it as one, and it must not be taken for one.
            return Err(MailError::Malformed(crate::tr!(
                "ssmax-marked-plaintext",
                part = n + 1,
                mime = crate::l10n::escaped(&pct.mime)
            )));
        }
        if !marked {
            if let Some(mime) = marked_inside(raw, 0)? {
                // The same, one or more levels down: a plaintext file labelled as protected.
                return Err(MailError::Malformed(crate::tr!(
                    "ssmax-marked-plaintext",
                    part = n + 1,
                    mime = crate::l10n::escaped(&mime)
                )));
            }
        }
        if pct.mime == "application/pkcs7-mime" || pct.mime == "application/x-pkcs7-mime" {
            let filename = p
                .text(FILENAME_HEADER)
                .or_else(|| part_filename(&p).map(|f| f.strip_suffix(".p7m").unwrap_or(&f).to_string()))
                .unwrap_or_else(|| format!("attachment-{}", n + 1));
            let label = p.text(LABEL_HEADER).unwrap_or_else(|| filename.clone());
            parts.protected.push(Protected { filename, label, cms: p.decoded_body()? });
        } else {
            parts.body.push(crate::mail::to_crlf(raw));
        }
    }
    Ok(parts)
}

/// The type of a part inside `raw` (a multipart or an attached message, walked as `leaves`
/// walks them) that carries `SSMAX-Label` or `SSMAX-Filename`: only a top-level envelope may.
fn marked_inside(raw: &[u8], depth: usize) -> Result<Option<String>, MailError> {
    if depth > crate::mail::MAX_DEPTH {
        return Err(MailError::Malformed(crate::tr!("mail-too-deep", levels = crate::mail::MAX_DEPTH)));
    }
    let e = Entity::parse(raw)?;
    let ct = e.content_type();
    if depth > 0 && (e.field(LABEL_HEADER).is_some() || e.field(FILENAME_HEADER).is_some()) {
        return Ok(Some(ct.mime));
    }
    if ct.mime.starts_with("multipart/") {
        let Some(boundary) = ct.param("boundary") else { return Ok(None) };
        for part in split_multipart(e.body, boundary)? {
            if let Some(m) = marked_inside(part, depth + 1)? {
                return Ok(Some(m));
            }
        }
    } else if matches!(ct.mime.as_str(), "message/rfc822" | "message/global") {
        return marked_inside(&e.decoded_body()?, depth + 1);
    }
    Ok(None)
}

/// What an inspection must see of a MIME entity, each with its transfer encoding removed: the
/// whole body, exactly what `receive --extract` writes (a multipart's preamble and epilogue, an
/// attached message's header fields included), and then every leaf inside it (a file inside a
/// multipart inside an attachment is as much a file as one at the top). Multipart and
/// message/rfc822 are walked, at most `mail::MAX_DEPTH` deep and `mail::MAX_PARTS` leaves in
/// all; past either the entity is refused. So is an S/MIME envelope inside: no inspection can
/// see into it, and it would reach the reader as it came.
pub fn leaves(entity: &[u8]) -> Result<Vec<Vec<u8>>, MailError> {
    let whole = Entity::parse(entity)?.decoded_body()?;
    let mut out = Vec::new();
    walk_leaves(entity, 0, &mut out)?;
    if !out.contains(&whole) {
        out.insert(0, whole);
    }
    Ok(out)
}

fn walk_leaves(raw: &[u8], depth: usize, out: &mut Vec<Vec<u8>>) -> Result<(), MailError> {
    if depth > crate::mail::MAX_DEPTH {
        return Err(MailError::Malformed(crate::tr!("mail-too-deep", levels = crate::mail::MAX_DEPTH)));
    }
    let e = Entity::parse(raw)?;
    let ct = e.content_type();
    if ct.mime.starts_with("multipart/") {
        let boundary =
            ct.param("boundary").ok_or_else(|| MailError::Malformed(crate::tr!("ssmax-mixed-no-boundary")))?;
        for part in split_multipart(e.body, boundary)? {
            walk_leaves(part, depth + 1, out)?;
        }
        return Ok(());
    }
    if matches!(ct.mime.as_str(), "message/rfc822" | "message/global") {
        return walk_leaves(&e.decoded_body()?, depth + 1, out);
    }
    if matches!(ct.mime.as_str(), "application/pkcs7-mime" | "application/x-pkcs7-mime") {
        return Err(MailError::Malformed(crate::tr!("ssmax-nested-envelope")));
    }
    if out.len() == crate::mail::MAX_PARTS {
        return Err(MailError::Malformed(crate::tr!("mail-too-many-parts", most = crate::mail::MAX_PARTS)));
    }
    out.push(e.decoded_body()?);
    Ok(())
}

/// A draft with `extra` attachments added as MIME parts (each with its `SSMAX-Label`), so the
/// agent sees one self-contained draft.
pub fn add_to_draft(raw: &[u8], extra: Vec<Attachment>) -> Result<Vec<u8>, MailError> {
    if extra.is_empty() {
        return Ok(raw.to_vec());
    }
    let mail = Entity::parse(raw)?;
    let (outer, mut content) = crate::mail::smime::split_fields(&mail.fields);
    if !content.iter().any(|f| f.is("Content-Type")) {
        let charset = if mail.body.is_ascii() { "us-ascii" } else { "utf-8" };
        content.insert(0, Field::new("Content-Type", &format!("text/plain; charset={charset}")));
    }
    let mut parts = parse_draft(&Entity { fields: content, body: mail.body })?;
    parts.attachments.extend(extra);
    let mut out: Vec<u8> = outer.iter().flat_map(|f| f.raw.iter().copied()).collect();
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(&build_opened(&parts.body, &parts.attachments, "your organisation"));
    Ok(out)
}

/// The opened attachments of a received (decrypted) mail, as `receive` prints it.
pub fn opened_attachments(mail: &[u8]) -> Result<Vec<Attachment>, MailError> {
    let outer = Entity::parse(mail)?;
    let ct = outer.content_type();
    if ct.mime != "multipart/mixed" {
        return Ok(Vec::new());
    }
    let boundary = ct.param("boundary").ok_or_else(|| MailError::Malformed(crate::tr!("ssmax-mixed-no-boundary")))?;
    let mut out = Vec::new();
    for (n, raw) in split_multipart(outer.body, boundary)?.into_iter().enumerate() {
        let p = Entity::parse(raw)?;
        let Some(label) = p.text(LABEL_HEADER) else { continue };
        let filename = part_filename(&p).unwrap_or_else(|| format!("attachment-{}", n + 1));
        let fields: Vec<Field> = p.fields.iter().filter(|f| !f.is(LABEL_HEADER)).cloned().collect();
        let mut entity: Vec<u8> = fields.iter().flat_map(|f| f.raw.iter().copied()).collect();
        entity.extend_from_slice(b"\r\n");
        entity.extend_from_slice(p.body);
        out.push(Attachment { filename, label, entity });
    }
    Ok(out)
}

/// A file name safe to create in an extraction directory: no directories, no parent
/// references, no control characters, no leading dots; no character that makes a name read
/// as another (bidirectional overrides and isolates turn `\u{202e}txt.exe` into "exe.txt" on
/// screen; zero-width characters hide); and no name Windows reserves for a device (`CON`,
/// `com1.csv`), which is prefixed with `_` so the file stays usable when copied there.
pub fn safe_filename(name: &str, n: usize) -> String {
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|&c| {
            !c.is_control() && !crate::l10n::misleading(c) && !matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|')
        })
        .collect();
    // Windows drops trailing dots and spaces, which would make two names one.
    let cleaned = cleaned.trim().trim_start_matches('.').trim_end_matches(['.', ' ']).to_string();
    let cleaned: String = cleaned.chars().take(200).collect();
    if cleaned.is_empty() {
        return format!("attachment-{n}");
    }
    if reserved_on_windows(&cleaned) {
        return format!("_{cleaned}");
    }
    cleaned
}

/// CON, PRN, AUX, NUL, COM1–9, LPT1–9, whatever the case and whatever follows the first dot.
fn reserved_on_windows(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or("").trim_end().to_ascii_uppercase();
    matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || ((stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.len() == 4
            && matches!(stem.as_bytes()[3], b'1'..=b'9'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names_survive_build_and_parse() {
        let p =
            Protected { filename: "見積書.pdf".into(), label: "社外秘: 見積 Q3".into(), cms: vec![0x30, 0x00] };
        let body = vec![b"Content-Type: text/plain\r\n\r\nhello\r\n".to_vec()];
        let built = build(&body, vec![p], "Example Org");
        assert!(built.is_ascii());
        let parsed = parse(&built).unwrap();
        assert_eq!(parsed.body.len(), 1);
        assert_eq!(parsed.protected.len(), 1);
        assert_eq!(parsed.protected[0].label, "社外秘: 見積 Q3");
        assert_eq!(parsed.protected[0].filename, "見積書.pdf");
        assert_eq!(parsed.protected[0].cms, vec![0x30, 0x00]);
    }

    #[test]
    fn extraction_names_cannot_escape_the_directory() {
        assert_eq!(safe_filename("../../etc/passwd", 1), "passwd");
        assert_eq!(safe_filename("..\\..\\boot.ini", 1), "boot.ini");
        assert_eq!(safe_filename("..", 2), "attachment-2");
        assert_eq!(safe_filename(".bashrc", 3), "bashrc");
        assert_eq!(safe_filename("a\u{0}b\nc.txt", 4), "abc.txt");
        assert_eq!(safe_filename("/", 5), "attachment-5");
    }

    #[test]
    fn extraction_names_cannot_pass_for_other_names() {
        assert_eq!(safe_filename("invoice\u{202e}fdp.exe", 1), "invoicefdp.exe");
        assert_eq!(safe_filename("a\u{2066}b\u{2069}\u{200b}c.txt", 1), "abc.txt");
        assert_eq!(safe_filename("CON", 1), "_CON");
        assert_eq!(safe_filename("com1.csv", 1), "_com1.csv");
        assert_eq!(safe_filename("nul .txt", 1), "_nul .txt");
        assert_eq!(safe_filename("report. . .", 1), "report");
        assert_eq!(safe_filename("COM10.txt", 1), "COM10.txt");
        assert_eq!(safe_filename("console.log", 1), "console.log");
    }

    #[test]
    fn a_received_part_marked_as_protected_must_be_an_envelope() {
        for marker in ["SSMAX-Label: invoice.pdf", "ssmax-filename: invoice.pdf"] {
            let body = format!("Content-Type: multipart/mixed; boundary=\"X\"\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\npay\r\n--X\r\nContent-Type: application/pdf\r\n{marker}\r\n\r\n%PDF\r\n--X--\r\n");
            let e = parse(body.as_bytes()).unwrap_err().to_string();
            assert!(e.contains("part 2 (application/pdf) carries SSMAX-Label"), "{e}");
        }
    }

    #[test]
    fn a_part_marked_as_protected_deeper_down_is_refused_too() {
        let body = "Content-Type: multipart/mixed; boundary=\"X\"\r\n\r\n--X\r\nContent-Type: multipart/mixed; boundary=\"Y\"\r\n\r\n--Y\r\nContent-Type: text/plain\r\n\r\nProtected attachments: [1] Board minutes\r\n--Y\r\nContent-Type: application/pdf\r\nSSMAX-Label: Board minutes\r\n\r\n%PDF\r\n--Y--\r\n--X--\r\n";
        let e = parse(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("part 1 (application/pdf) carries SSMAX-Label"), "{e}");
    }

    #[test]
    fn every_leaf_is_found_through_multiparts_and_messages_and_the_walk_is_bounded() {
        let nested = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: text/plain\r\n\r\none\r\n--a\r\nContent-Type: message/rfc822\r\n\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\ndHdv\r\n--b\r\n\r\nthree\r\n--b--\r\n--a--\r\n";
        let found = leaves(nested).unwrap();
        // The whole body first (what extraction would write), then each file in it.
        assert_eq!(&found[1..], &[b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert!(found[0].starts_with(b"--a\r\n") && found[0].ends_with(b"--a--\r\n"));
        // A file on its own is not given twice.
        assert_eq!(leaves(b"Content-Type: text/plain\r\n\r\nsolo").unwrap(), vec![b"solo".to_vec()]);
        let envelope = b"Content-Type: multipart/mixed; boundary=a\r\n\r\n--a\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\r\n\r\nMAA=\r\n--a--\r\n";
        assert!(leaves(envelope).unwrap_err().to_string().contains("S/MIME envelope inside"));
        let mut deep = b"x".to_vec();
        for _ in 0..40 {
            deep = [b"Content-Type: message/rfc822\r\n\r\n".as_slice(), &deep].concat();
        }
        assert!(leaves(&deep).unwrap_err().to_string().contains("nested deeper"));
    }

    #[test]
    fn draft_attachments_are_found_with_their_labels() {
        let draft = b"Content-Type: multipart/mixed; boundary=\"X\"\r\n\r\n--X\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--X\r\nContent-Type: application/pdf; name=\"q3.pdf\"\r\nContent-Disposition: attachment; filename=\"q3.pdf\"\r\nSSMAX-Label: Q3 figures (confidential)\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--X--\r\n";
        let e = Entity::parse(draft).unwrap();
        let p = parse_draft(&e).unwrap();
        assert_eq!(p.body.len(), 1);
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(p.attachments[0].filename, "q3.pdf");
        assert_eq!(p.attachments[0].label, "Q3 figures (confidential)");
        assert!(!String::from_utf8_lossy(&p.attachments[0].entity).contains("SSMAX-Label"));
    }

    #[test]
    fn japanese_file_names_arrive_decoded_whatever_the_encoding() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"filename*0*=UTF-8''%E8%A6%8B%E7%A9%8D; filename*1*=%E6%9B%B8.pdf",
                "2231 continuation at a character boundary",
            ),
            (
                b"filename*0*=UTF-8''%E8%A6; filename*1*=%8B%E7%A9%8D%E6%9B%B8.pdf",
                "2231 continuation inside a character",
            ),
            (b"filename*=Shift_JIS''%8C%A9%90%CF%8F%91.pdf", "2231 in Shift_JIS"),
            (
                b"filename*0*=ISO-2022-JP''%1B%24B8%2B%40Q; filename*1*==q%1B%28B.pdf",
                "2231 in ISO-2022-JP split inside an escape sequence",
            ),
            (
                b"filename=\"=?ISO-2022-JP?B?GyRCOCtAUT1xGyhC?=.pdf\"",
                "2047 inside quotes, as Outlook and Becky! write it",
            ),
            (b"filename=\"=?EUC-JP?B?uKvA0b3x?=.pdf\"", "2047 in EUC-JP"),
            (b"filename=\"\x8c\xa9\x90\xcf\x8f\x91.pdf\"", "raw Shift_JIS bytes"),
            (b"filename=\"\xe8\xa6\x8b\xe7\xa9\x8d\xe6\x9b\xb8.pdf\"", "raw UTF-8 bytes"),
        ];
        for (param, what) in cases {
            let mut raw = b"Content-Type: application/pdf\r\nContent-Disposition: attachment;\r\n ".to_vec();
            raw.extend_from_slice(param);
            raw.extend_from_slice(b"\r\n\r\nJVBERi0=\r\n");
            let e = Entity::parse(&raw).unwrap();
            assert_eq!(part_filename(&e).as_deref(), Some("見積書.pdf"), "{what}");
        }
    }
}
