//! Transfer encodings: quoted-printable and base64 written in 76-character lines, base64 read
//! liberally and in place.

use super::*;

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
pub(super) struct Base64Runs {
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
            .map_err(|e| MailError::Malformed(crate::tr!("mail-base64", error = e.to_string())))
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
