//! Header fields as Japanese mail really carries them, and as we write them: MIME parameters
//! and unstructured text.
//!
//! Reading (`param`): RFC 2231 extended values, with continuations (`filename*0*=`,
//! `filename*1*=`) joined as bytes *before* the charset is decoded — a character, or an
//! ISO-2022-JP escape sequence, may be split across segments, which decoding each segment on
//! its own (as mail-parser does) turns into replacement characters. Else RFC 2047 encoded
//! words inside the value (RFC 2047 §5 forbids them there, but Outlook and Becky! write them).
//! Else raw 8-bit bytes, as old Japanese clients send them: UTF-8 if valid, else the part's
//! charset, else Shift_JIS. Charsets are mail-parser's (`full_encoding`: encoding_rs).
//!
//! Writing: parameters (`write_param`) quoted when the value is printable ASCII, else
//! RFC 2231 `name*=UTF-8''…` — never an encoded word inside a parameter (RFC 2047 §5) —
//! continued in segments; unstructured text (`unstructured`: Subject, Content-Description,
//! SSMAX-Label) as RFC 2047 encoded words when it is not ASCII; address lists folded after a
//! comma. No line we write passes 78 characters (RFC 5322 §2.1.1) where a fold can be put.

/// Most continuation segments joined for one parameter (real names need a handful).
const MAX_SEGMENTS: usize = 100;

/// The value of parameter `name` (case-insensitive) in a structured field's value (after the
/// colon, folded or not), decoded to text. `part_charset`: the charset of the part, the second
/// guess for raw 8-bit bytes.
pub fn param(value: &[u8], name: &str, part_charset: Option<&str>) -> Option<String> {
    let mut plain: Option<Vec<u8>> = None;
    let mut single: Option<Vec<u8>> = None;
    // (index, percent-encoded?, raw value)
    let mut segments: Vec<(usize, bool, Vec<u8>)> = Vec::new();
    for (pname, pvalue) in split_params(value) {
        let lower = pname.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix(&name.to_ascii_lowercase()) else { continue };
        if rest.is_empty() {
            plain.get_or_insert(pvalue);
        } else if rest == "*" {
            single.get_or_insert(pvalue);
        } else if let Some(section) = rest.strip_prefix('*') {
            let (digits, extended) = match section.strip_suffix('*') {
                Some(d) => (d, true),
                None => (section, false),
            };
            let Ok(index) = digits.parse::<usize>() else { continue };
            if index < MAX_SEGMENTS && !segments.iter().any(|(i, _, _)| *i == index) {
                segments.push((index, extended, pvalue));
            }
        }
    }
    if let Some(v) = single {
        if let Some(text) = extended_value(&[(true, v)]) {
            return Some(text);
        }
    }
    if !segments.is_empty() {
        segments.sort_by_key(|(i, _, _)| *i);
        // Sections must count up from 0 (RFC 2231 §3); a gap ends the value.
        let joined: Vec<(bool, Vec<u8>)> =
            segments.into_iter().enumerate().take_while(|(n, (i, _, _))| n == i).map(|(_, (_, e, v))| (e, v)).collect();
        if let Some(text) = extended_value(&joined) {
            return Some(text);
        }
    }
    plain.map(|v| plain_value(&v, part_charset))
}

/// Every form parameter `name` is given in (plain, RFC 2231 single, RFC 2231 sections), each
/// decoded; `None` for a form that cannot be read (sections not counting up from 0, a bad
/// charset). Where a reader picks one form and another reader another, they must agree.
pub fn param_forms(value: &[u8], name: &str, part_charset: Option<&str>) -> Vec<Option<String>> {
    let (mut plain, mut single, mut segments) = (Vec::new(), Vec::new(), Vec::new());
    for (pname, pvalue) in split_params(value) {
        let lower = pname.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix(&name.to_ascii_lowercase()) else { continue };
        if rest.is_empty() {
            plain.push(Some(plain_value(&pvalue, part_charset)));
        } else if rest == "*" {
            single.push(extended_value(&[(true, pvalue)]));
        } else if let Some(section) = rest.strip_prefix('*') {
            let (digits, extended) = match section.strip_suffix('*') {
                Some(d) => (d, true),
                None => (section, false),
            };
            match digits.parse::<usize>() {
                Ok(index) if index < MAX_SEGMENTS => segments.push((index, extended, pvalue)),
                _ => return vec![None],
            }
        }
    }
    let mut forms: Vec<Option<String>> = plain.into_iter().chain(single).collect();
    if !segments.is_empty() {
        segments.sort_by_key(|(i, _, _)| *i);
        let counts_up = segments.iter().enumerate().all(|(n, (i, _, _))| n == *i);
        let joined: Vec<(bool, Vec<u8>)> = segments.into_iter().map(|(_, e, v)| (e, v)).collect();
        forms.push(if counts_up { extended_value(&joined) } else { None });
    }
    forms
}

/// RFC 2231 §4: `charset'language'%XX…` in the first segment, the charset applied once to all
/// segments' bytes.
fn extended_value(segments: &[(bool, Vec<u8>)]) -> Option<String> {
    let (first_extended, first) = segments.first()?;
    let (charset, mut bytes) = if *first_extended {
        let mut parts = first.splitn(3, |&b| b == b'\'');
        let charset = parts.next()?.to_vec();
        let _language = parts.next()?;
        (charset, percent_decode(parts.next()?))
    } else {
        (b"us-ascii".to_vec(), first.clone())
    };
    for (extended, v) in &segments[1..] {
        if *extended {
            bytes.extend(percent_decode(v));
        } else {
            bytes.extend_from_slice(v);
        }
    }
    Some(decode_charset(&bytes, std::str::from_utf8(&charset).ok()))
}

/// A plain (or quoted) value: encoded words decoded where they appear, raw 8-bit guessed.
fn plain_value(v: &[u8], part_charset: Option<&str>) -> String {
    if v.is_ascii() {
        let text = String::from_utf8_lossy(v);
        if text.contains("=?") && text.contains("?=") {
            if let Some(decoded) = decode_words(&text) {
                return decoded;
            }
        }
        return text.into_owned();
    }
    if let Ok(s) = std::str::from_utf8(v) {
        return s.to_string();
    }
    match part_charset.filter(|c| !c.eq_ignore_ascii_case("us-ascii") && !c.eq_ignore_ascii_case("utf-8")) {
        Some(c) => decode_charset(v, Some(c)),
        None => decode_charset(v, Some("shift_jis")),
    }
}

/// RFC 2047 encoded words anywhere in `text`, even touching other characters (`=?…?=.pdf`),
/// decoded by mail-parser one word at a time; None when a word does not decode.
fn decode_words(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = text;
    let mut last_was_word = false;
    while let Some(start) = rest.find("=?") {
        let after = &rest[start + 2..];
        // =?charset?enc?text?= : three more '?' then '='.
        let q1 = after.find('?')?;
        let q2 = q1 + 1 + after[q1 + 1..].find('?')?;
        let end = q2 + 1 + after[q2 + 1..].find("?=")?;
        let word = &rest[start..start + 2 + end + 2];
        let between = &rest[..start];
        // White space between two encoded words is not part of the text (RFC 2047 §6.2).
        if !(last_was_word && between.trim().is_empty()) {
            out.push_str(between);
        }
        // As a field value: mail-parser wants the line end that closes a field.
        let field = format!(" {word}\r\n");
        let parsed = mail_parser::parsers::MessageStream::new(field.as_bytes()).parse_unstructured();
        out.push_str(parsed.as_text()?.trim());
        rest = &rest[start + 2 + end + 2..];
        last_was_word = true;
    }
    out.push_str(rest);
    Some(out)
}

/// Bytes in `charset` as text; unknown charsets are read as UTF-8, lossily.
fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    let label = charset.unwrap_or("utf-8");
    if label.eq_ignore_ascii_case("utf-8") || label.eq_ignore_ascii_case("us-ascii") {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    match mail_parser::decoders::charsets::map::charset_decoder(label.as_bytes()) {
        Some(decode) => decode(bytes),
        None => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn percent_decode(v: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'%' && i + 2 < v.len() {
            if let (Some(h), Some(l)) = (hex(v[i + 1]), hex(v[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    out
}

/// `(name, value)` for each `; name=value` of a structured field value, quoted strings
/// unquoted. Folding (CRLF + white space) is unfolded first; comments are not supported.
fn split_params(value: &[u8]) -> Vec<(String, Vec<u8>)> {
    let unfolded: Vec<u8> = value.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    let mut out = Vec::new();
    let mut i = match unfolded.iter().position(|&b| b == b';') {
        Some(p) => p + 1,
        None => return out,
    };
    let n = unfolded.len();
    while i < n {
        while i < n && matches!(unfolded[i], b' ' | b'\t' | b';') {
            i += 1;
        }
        let name_start = i;
        while i < n && unfolded[i] != b'=' && unfolded[i] != b';' {
            i += 1;
        }
        let name = String::from_utf8_lossy(&unfolded[name_start..i]).trim().to_string();
        if i >= n || unfolded[i] == b';' {
            continue;
        }
        i += 1; // '='
        while i < n && matches!(unfolded[i], b' ' | b'\t') {
            i += 1;
        }
        let mut v = Vec::new();
        if i < n && unfolded[i] == b'"' {
            i += 1;
            while i < n && unfolded[i] != b'"' {
                if unfolded[i] == b'\\' && i + 1 < n {
                    i += 1;
                }
                v.push(unfolded[i]);
                i += 1;
            }
            i += 1; // closing quote
            while i < n && unfolded[i] != b';' {
                i += 1;
            }
        } else {
            while i < n && unfolded[i] != b';' {
                v.push(unfolded[i]);
                i += 1;
            }
            while v.last().is_some_and(|b| b.is_ascii_whitespace()) {
                v.pop();
            }
        }
        if !name.is_empty() {
            out.push((name, v));
        }
    }
    out
}

/// The longest line we write (RFC 5322 §2.1.1).
const MAX: usize = 78;

/// `Name: text\r\n` for an unstructured field: the text as it is when it is printable ASCII
/// (folded at spaces), else RFC 2047 encoded words (UTF-8, base64), each at most 75
/// characters, whole characters only, one per line.
pub fn unstructured(name: &str, text: &str) -> String {
    let mut out = format!("{name}:");
    let mut line = out.len();
    let plain = text.bytes().all(|b| (0x20..0x7f).contains(&b)) && !text.contains("=?");
    if plain {
        for (i, word) in text.split(' ').enumerate() {
            if i > 0 && line + 1 + word.len() > MAX {
                out.push_str("\r\n");
                line = 0;
            }
            out.push(' ');
            out.push_str(word);
            line += 1 + word.len();
        }
    } else {
        use base64::Engine;
        // "=?UTF-8?B?" + 60 base64 characters + "?=" is 72: within 75, and within 78 after a fold.
        const BYTES: usize = 45;
        let mut chunk = String::new();
        let flush = |out: &mut String, line: &mut usize, chunk: &str| {
            let word = format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(chunk.as_bytes()));
            if *line + 1 + word.len() > MAX {
                out.push_str("\r\n");
                *line = 0;
            }
            out.push(' ');
            out.push_str(&word);
            *line += 1 + word.len();
        };
        for c in text.chars() {
            if chunk.len() + c.len_utf8() > BYTES {
                flush(&mut out, &mut line, &chunk);
                chunk.clear();
            }
            chunk.push(c);
        }
        flush(&mut out, &mut line, &chunk);
    }
    out.push_str("\r\n");
    out
}

/// `Name: a, b, c\r\n`, folded after a comma where the next address would pass 78.
pub fn address_list(name: &str, addresses: &[String]) -> String {
    let mut out = format!("{name}:");
    let mut line = out.len();
    for (i, a) in addresses.iter().enumerate() {
        let sep = usize::from(i > 0);
        if i > 0 {
            out.push(',');
        }
        if i > 0 && line + sep + 1 + a.len() > MAX {
            out.push_str("\r\n");
            line = 0;
        }
        out.push(' ');
        out.push_str(a);
        line += sep + 1 + a.len();
    }
    out.push_str("\r\n");
    out
}

/// `; name=value` to append to a field whose text so far ends `line_len` characters into its
/// current line; folds before the parameter and splits an RFC 2231 value into continuation
/// segments so that no line passes 78 characters (RFC 5322 §2.1.1).
pub fn write_param(out: &mut String, line_len: &mut usize, name: &str, value: &str) {
    // "; " + piece, or ";\r\n " + piece when it would not fit.
    fn emit(out: &mut String, line_len: &mut usize, piece: &str) {
        if *line_len + 2 + piece.len() > MAX {
            out.push_str(";\r\n ");
            *line_len = 1;
        } else {
            out.push_str("; ");
            *line_len += 2;
        }
        out.push_str(piece);
        *line_len += piece.len();
    }
    if value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        // Quoted even when a token would do: some clients read only quoted names.
        let piece = format!("{name}=\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""));
        if piece.len() < MAX {
            emit(out, line_len, &piece);
            return;
        }
    }
    // RFC 2231: UTF-8, percent-encoded outside attribute-char, whole characters per segment.
    let encode = |c: char| -> String {
        let mut buf = [0u8; 4];
        c.encode_utf8(&mut buf)
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let whole = format!("{name}*=UTF-8''{}", value.chars().map(encode).collect::<String>());
    if whole.len() < MAX {
        emit(out, line_len, &whole);
        return;
    }
    let mut segment = String::new();
    let mut n = 0;
    let head = |n: usize| if n == 0 { format!("{name}*0*=UTF-8''") } else { format!("{name}*{n}*=") };
    for c in value.chars() {
        let e = encode(c);
        // Each segment goes on its own line: one space, the segment, and ';'.
        if 1 + head(n).len() + segment.len() + e.len() + 1 > MAX && !segment.is_empty() {
            emit(out, line_len, &format!("{}{segment}", head(n)));
            segment.clear();
            n += 1;
        }
        segment.push_str(&e);
    }
    emit(out, line_len, &format!("{}{segment}", head(n)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_names_read_back_and_no_line_passes_78() {
        for name in ["q3.pdf", "見積書_2026年12月.pdf", "a name with \"quotes\" and spaces.txt", &"長い名前".repeat(30)]
        {
            let mut field = String::from("Content-Disposition: attachment");
            let mut len = field.len();
            write_param(&mut field, &mut len, "filename", name);
            for line in field.split("\r\n") {
                assert!(line.len() <= 78, "{line}");
            }
            assert!(field.is_ascii());
            assert!(!field.contains("=?"), "never an encoded word in a parameter: {field}");
            let value = field.split_once(':').unwrap().1;
            assert_eq!(param(value.as_bytes(), "filename", None).as_deref(), Some(name), "{field}");
        }
    }

    #[test]
    fn unstructured_text_is_encoded_words_of_whole_characters_folded_at_78() {
        for text in ["quarterly figures", "社外秘: 見積 Q3", &"長い件名".repeat(40), &"word ".repeat(40)] {
            let field = unstructured("Subject", text.trim_end());
            for line in field.trim_end().split("\r\n") {
                assert!(line.len() <= 78, "{line}");
            }
            let value = field.split_once(':').unwrap().1;
            let parsed = mail_parser::parsers::MessageStream::new(value.as_bytes()).parse_unstructured();
            assert_eq!(parsed.as_text().unwrap().trim(), text.trim_end(), "{field}");
        }
    }

    #[test]
    fn address_lists_fold_after_a_comma() {
        let many: Vec<String> = (0..20).map(|i| format!("person{i}@partner.example")).collect();
        let field = address_list("To", &many);
        assert!(field.trim_end().split("\r\n").all(|l| l.len() <= 78), "{field}");
        assert_eq!(field.matches('@').count(), 20);
    }

    #[test]
    fn extended_value_wins_over_the_plain_one() {
        let v = b"attachment; filename=\"fallback.pdf\"; filename*=UTF-8''%E8%A6%8B.pdf";
        assert_eq!(param(v, "filename", None).as_deref(), Some("見.pdf"));
    }

    #[test]
    fn a_gap_in_the_sections_ends_the_value() {
        let v = b"attachment; filename*0=a; filename*2=c";
        assert_eq!(param(v, "filename", None).as_deref(), Some("a"));
    }

    #[test]
    fn raw_bytes_follow_the_parts_charset_before_shift_jis() {
        // 見積 in EUC-JP: B8AB C0D1.
        let v = b"attachment; filename=\"\xb8\xab\xc0\xd1.txt\"";
        assert_eq!(param(v, "filename", Some("euc-jp")).as_deref(), Some("見積.txt"));
    }
}
