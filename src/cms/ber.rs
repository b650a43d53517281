//! BER in, DER out: the encodings real clients send, rewritten once before the typed parsers.
//!
//! RFC 5652 §1 makes CMS BER; only what is signed or MACed must be DER. NSS, gpgsm, Outlook and
//! Bouncy Castle write indefinite lengths, and chunked (constructed) OCTET STRINGs around the
//! content; the `der` parsers read DER only. So outside CMS is rewritten here: indefinite
//! lengths become definite, long or padded lengths minimal, a constructed universal string one
//! primitive string, a BOOLEAN true 0xFF. Input that is DER already comes back as `None`, with
//! no copy.
//!
//! What cannot be known without the schema is left alone: a constructed string under an
//! IMPLICIT tag (EnvelopedData's `encryptedContent [0]`) stays constructed, with its chunks
//! made primitive, for the code that knows the field (decrypt.rs); SET OF order is the typed
//! parsers' business (asn1::BerSetOf).
//!
//! Bounds: nesting as deep as bounds.rs allows, at most `MAX_CONSTRUCTED` constructed values
//! (one length remembered for each), two linear passes, one output buffer of the exact size.

use super::bounds::MAX_NESTING;
use super::CmsError;

/// Constructed values in one object. Real CMS has a few thousand (a certificate has ~100, a
/// recipient ~20); a 25 MiB content in 1000-byte chunks is primitive chunks, not counted.
pub const MAX_CONSTRUCTED: usize = 1 << 20;

/// DER for `input`, or `None` when `input` is DER already (as far as encoding rules go).
pub fn normalize(input: &[u8]) -> Result<Option<Vec<u8>>, CmsError> {
    let mut w = Walk { input, lens: Vec::new(), next_len: 0, out: None };
    let (end, der_len, changed) = w.top_level()?;
    if !changed && end == input.len() {
        return Ok(None);
    }
    w.out = Some(Vec::with_capacity(der_len));
    w.top_level()?;
    Ok(w.out)
}

fn bad(what: impl Into<String>) -> CmsError {
    CmsError::Malformed(crate::tr!("ber-invalid", error = what.into()))
}

#[derive(Clone, Copy)]
enum Len {
    Definite(usize),
    Indefinite,
}

struct Header {
    /// Identifier octets.
    ident: std::ops::Range<usize>,
    constructed: bool,
    /// The universal tag number, for universal low-number tags.
    universal: Option<u8>,
    len: Len,
    /// The length was written as DER writes it.
    minimal: bool,
    content: usize,
}

/// Universal types whose BER may be constructed from chunks: BIT STRING, OCTET STRING,
/// ObjectDescriptor and the character and time strings.
fn is_string(tag: u8) -> bool {
    matches!(tag, 3 | 4 | 7 | 12 | 18..=30)
}

const BIT_STRING: u8 = 3;
const BOOLEAN: u8 = 1;

/// Bytes DER needs for a length.
fn len_len(n: usize) -> usize {
    if n < 0x80 {
        1
    } else {
        1 + (usize::BITS as usize / 8 - n.leading_zeros() as usize / 8)
    }
}

fn write_len(out: &mut Vec<u8>, n: usize) {
    if n < 0x80 {
        out.push(n as u8);
    } else {
        let bytes = n.to_be_bytes();
        let skip = n.leading_zeros() as usize / 8;
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

struct Walk<'a> {
    input: &'a [u8],
    /// Pass 1 records the DER content length of every constructed value in pre-order; pass 2
    /// reads them back in the same order to write headers before contents.
    lens: Vec<usize>,
    next_len: usize,
    /// None in pass 1 (measuring), Some in pass 2 (writing).
    out: Option<Vec<u8>>,
}

impl Walk<'_> {
    /// The top-level values: (where they end, DER length, whether anything changes). Trailing
    /// zero bytes after the first value (padding some writers leave) are dropped.
    fn top_level(&mut self) -> Result<(usize, usize, bool), CmsError> {
        self.next_len = 0;
        let (mut pos, mut total, mut changed) = (0, 0, false);
        while pos < self.input.len() {
            if pos > 0 && self.input[pos..].iter().all(|&b| b == 0) {
                return Ok((pos, total, true));
            }
            let (next, len, c) = self.value(pos, self.input.len(), 0)?;
            pos = next;
            total += len;
            changed |= c;
        }
        Ok((pos, total, changed))
    }

    fn header(&self, pos: usize, end: usize) -> Result<Header, CmsError> {
        let at = |i: usize| {
            if i < end {
                Ok(self.input[i])
            } else {
                Err(bad("a value runs past its end"))
            }
        };
        let first = at(pos)?;
        let constructed = first & 0x20 != 0;
        let mut p = pos + 1;
        let universal = if first & 0x1f == 0x1f {
            // High tag number: base-128, at most 4 octets (tag numbers below 2^28).
            for n in 0.. {
                if n == 4 {
                    return Err(bad("a tag number longer than 4 octets"));
                }
                let b = at(p)?;
                p += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
            None
        } else {
            (first >> 6 == 0).then_some(first & 0x1f)
        };
        let ident = pos..p;
        let l = at(p)?;
        p += 1;
        let (len, minimal) = match l {
            0..=0x7f => (Len::Definite(l as usize), true),
            0x80 if constructed => (Len::Indefinite, false),
            0x80 => return Err(bad("a primitive value with indefinite length")),
            0xff => return Err(bad("length octet 0xff (reserved)")),
            _ => {
                let n = (l & 0x7f) as usize;
                let mut v: usize = 0;
                for _ in 0..n {
                    let b = at(p)?;
                    p += 1;
                    v = v
                        .checked_mul(256)
                        .and_then(|v| v.checked_add(b as usize))
                        .ok_or_else(|| bad("a length too large"))?;
                }
                (Len::Definite(v), v >= 0x80 && len_len(v) == n + 1)
            }
        };
        if let Len::Definite(n) = len {
            if n > end - p {
                return Err(bad("a value is longer than what contains it"));
            }
        }
        Ok(Header { ident, constructed, universal, len, minimal, content: p })
    }

    /// Is there an end-of-contents marker at `pos`?
    fn eoc(&self, pos: usize, end: usize) -> bool {
        end - pos >= 2 && self.input[pos] == 0 && self.input[pos + 1] == 0
    }

    /// One value at `pos` (inside `..end`): (where it ends, its DER length, whether it changes).
    fn value(&mut self, pos: usize, end: usize, depth: usize) -> Result<(usize, usize, bool), CmsError> {
        if depth > MAX_NESTING {
            return Err(CmsError::Malformed(crate::tr!("ber-too-deep", levels = MAX_NESTING)));
        }
        let h = self.header(pos, end)?;
        if self.input[pos] == 0 {
            return Err(bad("an end-of-contents marker where a value belongs"));
        }
        let ident_len = h.ident.len();
        if !h.constructed {
            let Len::Definite(n) = h.len else {
                return Err(bad("a primitive value with indefinite length"));
            };
            let content = &self.input[h.content..h.content + n];
            let fix_bool = h.universal == Some(BOOLEAN) && n == 1 && content[0] != 0 && content[0] != 0xff;
            if let Some(out) = &mut self.out {
                out.extend_from_slice(&self.input[h.ident.clone()]);
                write_len(out, n);
                if fix_bool {
                    out.push(0xff);
                } else {
                    out.extend_from_slice(content);
                }
            }
            return Ok((h.content + n, ident_len + len_len(n) + n, !h.minimal || fix_bool));
        }
        let slot = self.slot()?;
        if let Some(tag) = h.universal.filter(|t| is_string(*t)) {
            // A chunked string becomes one primitive string of the same type.
            if let Some(out) = &mut self.out {
                out.push(self.input[pos] & !0x20);
                write_len(out, self.lens[slot]);
                if tag == BIT_STRING {
                    let unused = self.lens[slot + 1];
                    out.push(unused as u8);
                }
            }
            let mut acc = StringAcc { tag, len: 0, last_unused: None, bits_slot: None };
            if tag == BIT_STRING {
                acc.bits_slot = Some(self.slot()?);
            }
            let next = self.chunks(&h, end, depth, &mut acc)?;
            let content_len = if tag == BIT_STRING { acc.len + 1 } else { acc.len };
            if self.out.is_none() {
                self.lens[slot] = content_len;
                if let Some(s) = acc.bits_slot {
                    self.lens[s] = acc.last_unused.unwrap_or(0) as usize;
                }
            }
            return Ok((next, 1 + len_len(content_len) + content_len, true));
        }
        if let Some(out) = &mut self.out {
            out.extend_from_slice(&self.input[h.ident.clone()]);
            write_len(out, self.lens[slot]);
        }
        let (mut p, mut content_len, mut changed) = (h.content, 0usize, !h.minimal);
        let stop = match h.len {
            Len::Definite(n) => h.content + n,
            Len::Indefinite => end,
        };
        loop {
            match h.len {
                Len::Definite(_) if p == stop => break,
                Len::Indefinite if self.eoc(p, stop) => {
                    p += 2;
                    break;
                }
                _ => {}
            }
            let (next, len, c) = self.value(p, stop, depth + 1)?;
            p = next;
            content_len += len;
            changed |= c;
        }
        if self.out.is_none() {
            self.lens[slot] = content_len;
        }
        Ok((p, ident_len + len_len(content_len) + content_len, changed))
    }

    /// The chunks of a constructed string, each of the same type, primitive or (BER allows it)
    /// constructed again; their contents are measured or written in order.
    fn chunks(&mut self, h: &Header, end: usize, depth: usize, acc: &mut StringAcc) -> Result<usize, CmsError> {
        if depth > MAX_NESTING {
            return Err(CmsError::Malformed(crate::tr!("ber-too-deep", levels = MAX_NESTING)));
        }
        let stop = match h.len {
            Len::Definite(n) => h.content + n,
            Len::Indefinite => end,
        };
        let mut p = h.content;
        loop {
            match h.len {
                Len::Definite(_) if p == stop => return Ok(p),
                Len::Indefinite if self.eoc(p, stop) => return Ok(p + 2),
                _ => {}
            }
            let c = self.header(p, stop)?;
            if c.universal != Some(acc.tag) {
                return Err(bad("a chunk of a constructed string has another type"));
            }
            if c.constructed {
                p = self.chunks(&c, stop, depth + 1, acc)?;
                continue;
            }
            let Len::Definite(n) = c.len else {
                return Err(bad("a primitive value with indefinite length"));
            };
            let mut data = &self.input[c.content..c.content + n];
            if acc.tag == BIT_STRING {
                let (&unused, rest) = data.split_first().ok_or_else(|| bad("an empty BIT STRING chunk"))?;
                if acc.last_unused.is_some_and(|u| u != 0) {
                    return Err(bad("a BIT STRING chunk with unused bits before the last chunk"));
                }
                if unused > 7 || (rest.is_empty() && unused != 0) {
                    return Err(bad("a BIT STRING chunk with a wrong unused-bits count"));
                }
                acc.last_unused = Some(unused);
                data = rest;
            }
            acc.len += data.len();
            if let Some(out) = &mut self.out {
                out.extend_from_slice(data);
            }
            p = c.content + n;
        }
    }

    /// Where the next constructed value's length goes (pass 1) or comes from (pass 2).
    fn slot(&mut self) -> Result<usize, CmsError> {
        let i = self.next_len;
        self.next_len += 1;
        if self.out.is_none() {
            if self.lens.len() >= MAX_CONSTRUCTED {
                return Err(CmsError::Malformed(crate::tr!("ber-too-many-values", most = MAX_CONSTRUCTED)));
            }
            self.lens.push(0);
        }
        Ok(i)
    }
}

struct StringAcc {
    tag: u8,
    len: usize,
    last_unused: Option<u8>,
    bits_slot: Option<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(b: &[u8]) -> Vec<u8> {
        normalize(b).unwrap().unwrap_or_else(|| b.to_vec())
    }

    #[test]
    fn der_input_is_returned_as_none_without_a_copy() {
        let der = [0x30, 0x06, 0x02, 0x01, 0x05, 0x04, 0x01, 0xaa];
        assert!(normalize(&der).unwrap().is_none());
    }

    #[test]
    fn indefinite_lengths_become_definite() {
        let ber = [0x30, 0x80, 0x02, 0x01, 0x05, 0x30, 0x80, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(norm(&ber), [0x30, 0x07, 0x02, 0x01, 0x05, 0x30, 0x02, 0x05, 0x00]);
    }

    #[test]
    fn a_chunked_octet_string_becomes_one_primitive_string() {
        // Indefinite, with a nested constructed chunk: BER allows both.
        let ber = [0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x24, 0x03, 0x04, 0x01, b'c', 0x04, 0x00, 0x00, 0x00];
        assert_eq!(norm(&ber), [0x04, 0x03, b'a', b'b', b'c']);
    }

    #[test]
    fn a_chunked_bit_string_keeps_the_last_chunks_unused_bits() {
        let ber = [0x23, 0x80, 0x03, 0x02, 0x00, 0xff, 0x03, 0x02, 0x04, 0xf0, 0x00, 0x00];
        assert_eq!(norm(&ber), [0x03, 0x03, 0x04, 0xff, 0xf0]);
        let wrong = [0x23, 0x80, 0x03, 0x02, 0x04, 0xff, 0x03, 0x02, 0x00, 0xf0, 0x00, 0x00];
        assert!(normalize(&wrong).is_err());
    }

    #[test]
    fn long_and_padded_lengths_become_minimal() {
        assert_eq!(norm(&[0x04, 0x81, 0x01, 0xaa]), [0x04, 0x01, 0xaa]);
        assert_eq!(norm(&[0x04, 0x84, 0x00, 0x00, 0x00, 0x01, 0xaa]), [0x04, 0x01, 0xaa]);
        let mut long = vec![0x04, 0x82, 0x00, 0x80];
        long.extend([7u8; 128]);
        let mut want = vec![0x04, 0x81, 0x80];
        want.extend([7u8; 128]);
        assert_eq!(norm(&long), want);
    }

    #[test]
    fn an_implicitly_tagged_chunked_string_keeps_its_chunks_for_the_schema() {
        // encryptedContent [0] IMPLICIT OCTET STRING, constructed, as gpgsm writes it.
        let ber = [0xa0, 0x80, 0x24, 0x80, 0x04, 0x01, b'x', 0x00, 0x00, 0x04, 0x01, b'y', 0x00, 0x00];
        assert_eq!(norm(&ber), [0xa0, 0x06, 0x04, 0x01, b'x', 0x04, 0x01, b'y']);
    }

    #[test]
    fn a_boolean_true_is_written_as_ff() {
        assert_eq!(norm(&[0x30, 0x03, 0x01, 0x01, 0x01]), [0x30, 0x03, 0x01, 0x01, 0xff]);
    }

    #[test]
    fn trailing_zero_padding_is_dropped_and_other_trailing_values_kept() {
        assert_eq!(norm(&[0x05, 0x00, 0x00, 0x00, 0x00]), [0x05, 0x00]);
        assert_eq!(norm(&[0x30, 0x80, 0x00, 0x00, 0x05, 0x00]), [0x30, 0x00, 0x05, 0x00]);
    }

    #[test]
    fn broken_ber_is_refused_with_a_reason() {
        for (bytes, why) in [
            (&[0x30, 0x80, 0x02, 0x01, 0x05][..], "an unterminated indefinite value"),
            (&[0x04, 0x80, 0x00, 0x00][..], "a primitive indefinite value"),
            (&[0x04, 0x05, 0x00][..], "a length past the end"),
            (&[0x24, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00][..], "a chunk of another type"),
            (&[0x04, 0xff][..], "a reserved length octet"),
            (&[0x04, 0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0][..], "a length over usize"),
            (&[0x00, 0x00][..], "an end-of-contents marker alone"),
        ] {
            assert!(normalize(bytes).is_err(), "{why} must be refused");
        }
    }

    #[test]
    fn nesting_past_the_limit_is_refused() {
        let mut v = Vec::new();
        for _ in 0..100 {
            v.extend([0x30, 0x80]);
        }
        v.extend([0x05, 0x00]);
        for _ in 0..100 {
            v.extend([0x00, 0x00]);
        }
        assert!(normalize(&v).unwrap_err().to_string().contains("nested deeper"));
    }

    #[test]
    fn too_many_constructed_values_are_refused_before_memory_grows() {
        let mut v = vec![0x30, 0x80];
        for _ in 0..MAX_CONSTRUCTED {
            v.extend([0x30, 0x00]);
        }
        v.extend([0x00, 0x00]);
        assert!(normalize(&v).unwrap_err().to_string().contains("constructed values"));
    }
}
