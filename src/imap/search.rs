//! SEARCH on what the door shows (RFC 3501 §6.4.4): header fields and text are searched in the
//! view, decoded (RFC 2047 words, base64 and quoted-printable, the part's charset), so the text
//! of an attachment that was decrypted on the card is found, and nothing of the sealed original
//! is. Flags, dates and sizes are the mirror's. Strings match as case-insensitive substrings.

use imap_next::imap_types::core::AString;
use imap_next::imap_types::datetime::{DateTime, NaiveDate};
use imap_next::imap_types::flag::{Flag, FlagFetch};
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::SequenceSet;
use mail_parser::{HeaderValue, Message, MessageParser, PartType};

/// The deepest search key the door evaluates (NOT NOT NOT …): a deeper SEARCH is refused.
const MAX_DEPTH: usize = 64;
/// The most text one message contributes to a text search (its view is at most 64 MiB; decoded
/// parts are not allowed to grow past it).
const MAX_TEXT: usize = 80 << 20;

/// One message as a search sees it; its view is read only when a key needs it.
pub struct Candidate<'a> {
    pub seq: u32,
    pub uid: u32,
    /// The largest sequence number and UID now (what `*` stands for).
    pub last_seq: u32,
    pub last_uid: u32,
    pub flags: &'a [FlagFetch<'static>],
    pub internal_date: Option<&'a DateTime>,
    pub size: u32,
    pub view: &'a mut dyn FnMut() -> Option<Vec<u8>>,
    loaded: Option<Option<Loaded>>,
}

/// A view read and searched: its decoded header fields and text.
struct Loaded {
    /// (lower-case name, decoded value lower-cased).
    fields: Vec<(String, String)>,
    body: String,
    sent: Option<(u16, u8, u8)>,
}

impl<'a> Candidate<'a> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        seq: u32,
        uid: u32,
        last_seq: u32,
        last_uid: u32,
        flags: &'a [FlagFetch<'static>],
        internal_date: Option<&'a DateTime>,
        size: u32,
        view: &'a mut dyn FnMut() -> Option<Vec<u8>>,
    ) -> Candidate<'a> {
        Candidate { seq, uid, last_seq, last_uid, flags, internal_date, size, view, loaded: None }
    }

    fn loaded(&mut self) -> Option<&Loaded> {
        if self.loaded.is_none() {
            let view = (self.view)();
            self.loaded = Some(view.and_then(|v| load(&v)));
        }
        self.loaded.as_ref().and_then(|l| l.as_ref())
    }

    fn has(&self, flag: &Flag<'_>) -> bool {
        self.flags.iter().any(|f| matches!(f, FlagFetch::Flag(g) if g == flag))
    }

    fn field_has(&mut self, name: &str, what: &AString<'_>) -> bool {
        let what = lower(what);
        let name = name.to_ascii_lowercase();
        self.loaded().is_some_and(|l| l.fields.iter().any(|(n, v)| *n == name && v.contains(&what)))
    }
}

/// Whether the keys nest deeper than the door evaluates (looked at no deeper than that).
pub fn too_deep(keys: &[SearchKey<'_>]) -> bool {
    fn deeper(k: &SearchKey<'_>, depth: usize) -> bool {
        if depth > MAX_DEPTH {
            return true;
        }
        match k {
            SearchKey::And(keys) => keys.as_ref().iter().any(|k| deeper(k, depth + 1)),
            SearchKey::Or(a, b) => deeper(a, depth + 1) || deeper(b, depth + 1),
            SearchKey::Not(a) => deeper(a, depth + 1),
            _ => false,
        }
    }
    keys.iter().any(|k| deeper(k, 0))
}

/// Whether the message matches every key (the keys of one SEARCH are ANDed). Keys `too_deep`
/// refuses match nothing.
pub fn matches(keys: &[SearchKey<'_>], c: &mut Candidate<'_>) -> bool {
    !too_deep(keys) && keys.iter().all(|k| key(k, c))
}

fn key(k: &SearchKey<'_>, c: &mut Candidate<'_>) -> bool {
    let date = || c.internal_date.map(ymd_of);
    match k {
        SearchKey::And(keys) => keys.as_ref().iter().all(|k| key(k, c)),
        SearchKey::Or(a, b) => key(a, c) || key(b, c),
        SearchKey::Not(a) => !key(a, c),
        SearchKey::All | SearchKey::Old => true,
        // \Recent belongs to the upstream's session: none is recent here (SELECT says 0).
        SearchKey::New | SearchKey::Recent => false,
        SearchKey::SequenceSet(set) => contains(set, c.seq, c.last_seq),
        SearchKey::Uid(set) => contains(set, c.uid, c.last_uid),
        SearchKey::Answered => c.has(&Flag::Answered),
        SearchKey::Deleted => c.has(&Flag::Deleted),
        SearchKey::Draft => c.has(&Flag::Draft),
        SearchKey::Flagged => c.has(&Flag::Flagged),
        SearchKey::Seen => c.has(&Flag::Seen),
        SearchKey::Unanswered => !c.has(&Flag::Answered),
        SearchKey::Undeleted => !c.has(&Flag::Deleted),
        SearchKey::Undraft => !c.has(&Flag::Draft),
        SearchKey::Unflagged => !c.has(&Flag::Flagged),
        SearchKey::Unseen => !c.has(&Flag::Seen),
        SearchKey::Keyword(atom) => c.has(&Flag::Keyword(atom.clone())),
        SearchKey::Unkeyword(atom) => !c.has(&Flag::Keyword(atom.clone())),
        SearchKey::Larger(n) => c.size > *n,
        SearchKey::Smaller(n) => c.size < *n,
        SearchKey::Before(d) => date().is_some_and(|x| x < ymd(d)),
        SearchKey::On(d) => date().is_some_and(|x| x == ymd(d)),
        SearchKey::Since(d) => date().is_some_and(|x| x >= ymd(d)),
        SearchKey::SentBefore(d) => c.loaded().and_then(|l| l.sent).is_some_and(|x| x < ymd(d)),
        SearchKey::SentOn(d) => c.loaded().and_then(|l| l.sent).is_some_and(|x| x == ymd(d)),
        SearchKey::SentSince(d) => c.loaded().and_then(|l| l.sent).is_some_and(|x| x >= ymd(d)),
        SearchKey::Bcc(s) => c.field_has("bcc", s),
        SearchKey::Cc(s) => c.field_has("cc", s),
        SearchKey::From(s) => c.field_has("from", s),
        SearchKey::To(s) => c.field_has("to", s),
        SearchKey::Subject(s) => c.field_has("subject", s),
        SearchKey::Header(name, s) => {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            c.field_has(&name, s)
        }
        SearchKey::Body(s) => {
            let s = lower(s);
            c.loaded().is_some_and(|l| l.body.contains(&s))
        }
        SearchKey::Text(s) => {
            let s = lower(s);
            c.loaded().is_some_and(|l| l.body.contains(&s) || l.fields.iter().any(|(_, v)| v.contains(&s)))
        }
        // Keys of extensions the door does not announce.
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

fn lower(s: &AString<'_>) -> String {
    String::from_utf8_lossy(s.as_ref()).to_lowercase()
}

/// Whether `value` is in `set` (`*` being `largest`), looked up, never expanded.
pub fn contains(set: &SequenceSet, value: u32, largest: u32) -> bool {
    use imap_next::imap_types::sequence::{SeqOrUid, Sequence};
    let v = |s: &SeqOrUid| match s {
        SeqOrUid::Value(n) => n.get(),
        SeqOrUid::Asterisk => largest,
    };
    set.0.as_ref().iter().any(|s| match s {
        Sequence::Single(a) => v(a) == value,
        Sequence::Range(a, b) => {
            let (lo, hi) = (v(a).min(v(b)), v(a).max(v(b)));
            (lo..=hi).contains(&value)
        }
    })
}

/// A date as (year, month, day), from its ISO form.
fn ymd(d: &NaiveDate) -> (u16, u8, u8) {
    parse_iso(&d.as_ref().to_string()).unwrap_or((0, 0, 0))
}

/// The date of an internal date, in its own zone (RFC 3501: time and zone disregarded).
fn ymd_of(d: &DateTime) -> (u16, u8, u8) {
    parse_iso(&d.as_ref().date_naive().to_string()).unwrap_or((0, 0, 0))
}

fn parse_iso(s: &str) -> Option<(u16, u8, u8)> {
    let mut it = s.splitn(3, '-');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// The most of one header field a search reads (mail-parser makes a structure of every
/// address: a field of a million tiny ones would cost a hundred times its size).
const MAX_FIELD: usize = 16 << 10;

fn load(view: &[u8]) -> Option<Loaded> {
    let tree = super::structure::Tree::parse(view);
    let cut = tree.with_fields_cut(MAX_FIELD);
    let msg = MessageParser::default().parse(cut.as_ref())?;
    let mut fields = Vec::new();
    for h in msg.headers() {
        fields.push((h.name().to_ascii_lowercase(), header_text(h.value()).to_lowercase()));
    }
    let sent = msg.date().map(|d| (d.year, d.month, d.day));
    let mut body = String::new();
    text_of(&msg, &mut body, 0);
    Some(Loaded { fields, body: body.to_lowercase(), sent })
}

/// A header field's value as text: names and addresses of an address list, the decoded text.
fn header_text(v: &HeaderValue<'_>) -> String {
    match v {
        HeaderValue::Address(a) => a
            .iter()
            .map(|x| format!("{} <{}>", x.name().unwrap_or_default(), x.address().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(", "),
        HeaderValue::Text(t) => t.to_string(),
        HeaderValue::TextList(l) => l.join(" "),
        HeaderValue::DateTime(d) => d.to_rfc822(),
        HeaderValue::ContentType(ct) => format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or_default()),
        _ => String::new(),
    }
}

/// Every part's text, decoded; a binary part when it is UTF-8 text (a decrypted .txt or .csv).
fn text_of(msg: &Message<'_>, out: &mut String, depth: usize) {
    if depth > 8 {
        return;
    }
    for part in &msg.parts {
        if out.len() > MAX_TEXT {
            return;
        }
        match &part.body {
            PartType::Text(t) | PartType::Html(t) => push(out, t),
            PartType::Binary(b) | PartType::InlineBinary(b) => {
                if let Ok(t) = std::str::from_utf8(b) {
                    push(out, t);
                }
            }
            PartType::Message(m) => {
                for h in m.headers() {
                    push(out, &header_text(h.value()));
                }
                text_of(m, out, depth + 1);
            }
            PartType::Multipart(_) => {}
        }
    }
}

fn push(out: &mut String, text: &str) {
    let room = MAX_TEXT.saturating_sub(out.len());
    let mut end = text.len().min(room);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.push_str(&text[..end]);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_next::imap_types::core::Vec1;

    fn search(view: &[u8], flags: &[FlagFetch<'static>], keys: Vec<SearchKey<'static>>) -> bool {
        let owned = view.to_vec();
        let mut get = move || Some(owned.clone());
        let mut c = Candidate::new(1, 7, 1, 7, flags, None, view.len() as u32, &mut get);
        matches(&keys, &mut c)
    }

    fn a(s: &str) -> AString<'static> {
        AString::try_from(s.to_string()).unwrap()
    }

    const VIEW: &[u8] = b"From: =?UTF-8?B?5bGx55Sw?= <yamada@example.jp>\r\nSubject: =?UTF-8?B?6KaL56mN5pu4?=\r\nDate: Mon, 7 Dec 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n--b\r\nContent-Type: text/csv; name=\"figures.csv\"\r\nContent-Disposition: attachment; filename=\"figures.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nUTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo=\r\n--b--\r\n";

    #[test]
    fn a_decrypted_attachments_text_is_found_and_its_base64_is_not_what_is_searched() {
        assert!(search(VIEW, &[], vec![SearchKey::Body(a("revenue: 1,234"))]));
        assert!(search(VIEW, &[], vec![SearchKey::Text(a("REVENUE"))]));
        assert!(!search(VIEW, &[], vec![SearchKey::Body(a("UTMgcmV2"))]));
    }

    #[test]
    fn header_keys_search_decoded_japanese_text_case_insensitively() {
        assert!(search(VIEW, &[], vec![SearchKey::Subject(a("見積書"))]));
        assert!(search(VIEW, &[], vec![SearchKey::From(a("山田"))]));
        assert!(search(VIEW, &[], vec![SearchKey::From(a("YAMADA@example.jp"))]));
        assert!(!search(VIEW, &[], vec![SearchKey::To(a("yamada"))]));
        assert!(search(VIEW, &[], vec![SearchKey::Header(a("content-type"), a("multipart"))]));
    }

    #[test]
    fn flags_and_logic_combine_as_rfc_3501_says() {
        let seen = [FlagFetch::Flag(Flag::Seen)];
        assert!(search(VIEW, &seen, vec![SearchKey::Seen, SearchKey::Unflagged]));
        assert!(!search(VIEW, &seen, vec![SearchKey::Unseen]));
        let or = SearchKey::Or(Box::new(SearchKey::Flagged), Box::new(SearchKey::Not(Box::new(SearchKey::Deleted))));
        assert!(search(VIEW, &seen, vec![or]));
        let and = SearchKey::And(Vec1::try_from(vec![SearchKey::Seen, SearchKey::Deleted]).unwrap());
        assert!(!search(VIEW, &seen, vec![and]));
        assert!(!search(VIEW, &seen, vec![SearchKey::New]));
    }

    #[test]
    fn a_field_of_a_million_addresses_is_searched_in_its_first_16_kib() {
        let mut mail = b"Subject: hello\r\nFrom: ".to_vec();
        mail.extend(std::iter::repeat_n(b",a".as_slice(), 1 << 20).flatten());
        mail.extend_from_slice(b"\r\nTo: bob@example.jp\r\n\r\nbody text\r\n");
        assert!(search(&mail, &[], vec![SearchKey::To(a("bob@example.jp"))]));
        assert!(search(&mail, &[], vec![SearchKey::Body(a("body text"))]));
        assert!(search(&mail, &[], vec![SearchKey::Subject(a("hello"))]));
    }

    #[test]
    fn a_deeply_nested_key_is_refused_not_recursed() {
        let mut k = SearchKey::All;
        for _ in 0..1_000 {
            k = SearchKey::Not(Box::new(k));
        }
        // Refused whole, whatever the parity: no stack overflow, no answer that depends on it.
        assert!(too_deep(std::slice::from_ref(&k)));
        assert!(!search(VIEW, &[], vec![k.clone()]));
        assert!(!search(VIEW, &[], vec![SearchKey::Not(Box::new(k))]));
    }
}
