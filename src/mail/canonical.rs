//! The canonical, 7-bit-safe form S/MIME signs (RFC 8551 §3.1): checking a body that already is,
//! and rewriting one that is not.

use super::*;

/// Longest line RFC 5322 §2.1.1 allows; anything longer must be encoded.
pub(super) const MAX_LINE: usize = 998;

/// Does this body survive any SMTP relay unchanged? 7-bit, no NUL or bare CR, lines ≤ 998,
/// no trailing white space (relays strip it), no line starting "From " (mbox mangles it).
pub(super) fn transport_safe(body: &[u8]) -> bool {
    safe_lines(body, false)
}

/// Is this body already what `canonicalise` would produce from it: CRLF line ends only, and
/// transport-safe. This check sits in front of hashing on every large signature.
pub fn already_canonical(body: &[u8]) -> bool {
    safe_lines(body, true)
}

/// From how large a body `canonical_digest` hashes on a second thread while it checks.
pub(super) const DIGEST_BESIDE: usize = 1 << 20;

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
pub(super) fn safe_lines(body: &[u8], crlf_only: bool) -> bool {
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
pub(super) fn safe_window(w: &[u8], crlf_only: bool) -> bool {
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
pub(super) fn byte_classes(w: &[u8]) -> (bool, usize, usize) {
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
        return Err(MailError::Malformed(crate::tr!("mail-too-deep", levels = MAX_DEPTH)));
    }
    let ct = entity.content_type();
    if ct.mime.starts_with("multipart/") {
        let boundary = ct
            .param("boundary")
            .ok_or_else(|| MailError::Malformed(crate::tr!("mail-part-no-boundary", mime = ct.mime)))?;
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
        return Err(MailError::Malformed(crate::tr!("mail-too-deep", levels = MAX_DEPTH)));
    }
    let ct = entity.content_type();
    let mut out = Vec::new();
    if ct.mime.starts_with("multipart/") {
        let boundary = ct
            .param("boundary")
            .ok_or_else(|| MailError::Malformed(crate::tr!("mail-part-no-boundary", mime = ct.mime)))?;
        if entity.fields.iter().any(|f| f.is("Content-Transfer-Encoding")) {
            let cte = entity.transfer_encoding();
            if !matches!(cte.as_str(), "7bit" | "8bit" | "binary") {
                return Err(MailError::Malformed(crate::tr!("mail-multipart-encoding", encoding = cte)));
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
        return Err(MailError::Malformed(crate::tr!("mail-attached-message-8bit")));
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

/// Every line end is CRLF.
pub fn is_crlf(data: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', data).all(|i| i > 0 && data[i - 1] == b'\r')
}
