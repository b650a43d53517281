//! `Authentication-Results` (RFC 8601) as the IMAP door writes it, with the S/MIME method of
//! RFC 7281: the door's verdict, and the fields that only claim to be it.

use super::Field;

/// The default authserv-id of the door's Authentication-Results.
pub const AUTHSERV_ID: &str = "ssmax-card.local";

/// Whether `field` is an Authentication-Results field under `authserv_id`: one the door writes,
/// so one that arrived with the mail is a claim the door removes (RFC 8601 §5).
pub fn is_ours(field: &Field, authserv_id: &str) -> bool {
    if !field.is("Authentication-Results") {
        return false;
    }
    let value = crate::mail::field_value(field);
    authserv_id_of(&value).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
}

/// `raw` with every bare CR in its header block made a space: readers differ on whether a lone
/// CR ends a line, so a field could hide another behind one (`Subject: x\rAuthentication-
/// Results: …`). Mail with none comes back untouched (None).
pub fn header_without_bare_cr(raw: &[u8]) -> Option<Vec<u8>> {
    let head_end = super::header_end(raw).map(|(h, _)| h).unwrap_or(raw.len());
    let bare = |i: usize| raw[i] == b'\r' && raw.get(i + 1) != Some(&b'\n');
    if !(0..head_end).any(bare) {
        return None;
    }
    let mut out = raw.to_vec();
    for (i, b) in out.iter_mut().enumerate().take(head_end) {
        if *b == b'\r' && raw.get(i + 1) != Some(&b'\n') {
            *b = b' ';
        }
    }
    Some(out)
}

/// `raw` without the header fields that claim `authserv_id`'s verdict, every other byte as it
/// was; None when there is none. Read line by line, not through the MIME parser: a header the
/// parser refuses must not carry a claim through.
pub fn strip_ours(raw: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    let head_end = super::header_end(raw).map(|(h, _)| h).unwrap_or(raw.len());
    let head = &raw[..head_end];
    // Each field: its first line and the continuation lines after it, as byte ranges.
    let mut fields: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let continued = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        match fields.last_mut() {
            Some(last) if continued => last.1 = at + line.len(),
            _ => fields.push((at, at + line.len())),
        }
        at += line.len();
    }
    let ours = |(start, end): &(usize, usize)| {
        let text = String::from_utf8_lossy(&head[*start..*end]);
        let Some((name, value)) = text.split_once(':') else { return false };
        let value = value.replace("\r\n", "").replace('\n', "");
        name.trim().eq_ignore_ascii_case("Authentication-Results")
            && authserv_id_of(&value).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id))
    };
    if !fields.iter().any(ours) {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    for f in fields.iter().filter(|f| !ours(f)) {
        out.extend_from_slice(&head[f.0..f.1]);
    }
    out.extend_from_slice(&raw[head_end..]);
    Some(out)
}

/// The authserv-id a field value starts with, as a reader would take it: comments removed
/// wherever they are (nested, with quoted-pairs), a quoted string unquoted, up to white space,
/// ';' or a comment. A comment that never closes leaves no id anyone can rely on.
fn authserv_id_of(value: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = value.chars().peekable();
    let mut depth = 0usize;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 || quoted => {
                let escaped = chars.next()?;
                if quoted {
                    out.push(escaped);
                }
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => {
                depth -= 1;
                // A comment ends a token that came before it.
                if depth == 0 && !out.is_empty() {
                    break;
                }
            }
            _ if depth > 0 => {}
            '"' => quoted = !quoted,
            ';' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if !out.is_empty() {
                    break;
                }
            }
            c => out.push(c),
        }
    }
    (depth == 0 && !out.is_empty()).then_some(out)
}

/// The door's verdict on a mail's S/MIME signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Smime {
    Pass,
    Fail,
}

/// `Authentication-Results: <id>; smime=pass|fail header.smime-identifier=<address>`.
pub fn field(authserv_id: &str, verdict: &Smime, identifier: Option<&str>) -> Field {
    let result = match verdict {
        Smime::Pass => "pass",
        Smime::Fail => "fail",
    };
    let mut value = format!("{authserv_id}; smime={result}");
    // An addr-spec as mail-parser read it: printable ASCII without specials that would end it.
    if let Some(id) = identifier.filter(|a| a.bytes().all(|b| b.is_ascii_graphic() && !b";()\"\\".contains(&b))) {
        value.push_str(&format!(" header.smime-identifier={id}"));
    }
    Field::new("Authentication-Results", &value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(v: &str) -> Field {
        Field::new("Authentication-Results", v)
    }

    #[test]
    fn a_verdict_under_our_authserv_id_is_a_claim_whatever_its_spelling() {
        for v in [
            "ssmax-card.local; smime=pass header.smime-identifier=ceo@example.jp",
            "SSMAX-Card.Local 1; smime=pass",
            " (looks harmless) ssmax-card.local;smime=pass",
            "(a (nested) comment) ssmax-card.local ; none",
            "\"ssmax-card.local\"; smime=pass",
            "ssmax-card.local(c); smime=pass",
            "(\\() ssmax-card.local; smime=pass",
            "(;) ssmax-card.local; smime=pass",
        ] {
            assert!(is_ours(&f(v), "ssmax-card.local"), "{v}");
        }
        for v in ["mx.example.jp; smime=pass", "ssmax-card.local.evil; dkim=pass", "(unclosed ssmax-card.local; x"] {
            assert!(!is_ours(&f(v), "ssmax-card.local"), "{v}");
        }
        assert!(!is_ours(&Field::new("X-Authentication-Results", "ssmax-card.local; smime=pass"), "ssmax-card.local"));
    }

    #[test]
    fn claims_are_taken_out_of_any_mail_line_by_line_and_nothing_else_changes() {
        let mail = b"Received: x\nAuthentication-Results:\n ssmax-card.local; smime=pass\nauthentication-results : SSMAX-CARD.LOCAL;\tsmime=pass\nAuthentication-Results: mx.example; spf=pass\nbad line without colon\n\nbody\nAuthentication-Results: ssmax-card.local; smime=pass\n";
        let out = strip_ours(mail, "ssmax-card.local").unwrap();
        assert_eq!(
            out,
            b"Received: x\nAuthentication-Results: mx.example; spf=pass\nbad line without colon\n\nbody\nAuthentication-Results: ssmax-card.local; smime=pass\n"
        );
        assert!(strip_ours(
            b"Subject: x\r\n\r\nAuthentication-Results: ssmax-card.local; smime=pass\r\n",
            "ssmax-card.local"
        )
        .is_none());
    }

    #[test]
    fn the_field_names_the_verdict_and_a_plain_address_only() {
        let pass = field("ssmax-card.local", &Smime::Pass, Some("alice@example.jp"));
        assert_eq!(
            pass.raw,
            b"Authentication-Results: ssmax-card.local; smime=pass header.smime-identifier=alice@example.jp\r\n"
        );
        let odd = field("ssmax-card.local", &Smime::Fail, Some("a;b@example.jp"));
        assert_eq!(odd.raw, b"Authentication-Results: ssmax-card.local; smime=fail\r\n");
    }
}
