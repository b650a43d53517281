//! What the IMAP door derives from a message's bytes for a client: BODYSTRUCTURE, BODY,
//! ENVELOPE, every section (imap/structure.rs), and what SEARCH reads of it (imap/search.rs).
//! Seeds: real mail (Thunderbird's S/MIME samples, openssl's, Japanese multipart, SSMAX).
#![no_main]
use imap_next::imap_types::core::{AString, Vec1};
use imap_next::imap_types::fetch::{Part, Section};
use imap_next::imap_types::search::SearchKey;
use libfuzzer_sys::fuzz_target;
use ssmax_card::imap::search::{matches, Candidate};
use ssmax_card::imap::structure::Tree;
use std::num::NonZeroU32;

fn part(path: &[u32]) -> Part {
    let path: Vec<NonZeroU32> = path.iter().filter_map(|&n| NonZeroU32::new(n)).collect();
    Part(Vec1::try_from(path).expect("a path"))
}

fn names(n: &[&str]) -> Vec1<AString<'static>> {
    Vec1::try_from(n.iter().map(|s| AString::try_from(s.to_string()).expect("an atom")).collect::<Vec<_>>())
        .expect("names")
}

/// Sections as clients ask them: parts, their MIME headers, forwarded messages' headers and
/// text, header fields.
fn sections() -> Vec<Section<'static>> {
    vec![
        Section::Part(part(&[1])),
        Section::Part(part(&[2])),
        Section::Part(part(&[2, 1])),
        Section::Part(part(&[1, 2, 3])),
        Section::Mime(part(&[2])),
        Section::Header(Some(part(&[3]))),
        Section::Text(Some(part(&[3]))),
        Section::HeaderFields(None, names(&["Subject", "From"])),
        Section::HeaderFieldsNot(Some(part(&[2])), names(&["Content-Type"])),
    ]
}

fn a(s: &str) -> AString<'static> {
    AString::try_from(s.to_string()).expect("an atom")
}

fuzz_target!(|data: &[u8]| {
    let tree = Tree::parse(data);
    let _ = tree.body_structure(true);
    let _ = tree.body_structure(false);
    let _ = tree.envelope();
    // The whole message, and its header and text together, are its bytes, exactly.
    assert_eq!(tree.section(None).as_deref(), Some(data));
    let header = tree.section(Some(&Section::Header(None))).unwrap_or_default();
    let text = tree.section(Some(&Section::Text(None))).unwrap_or_default();
    assert_eq!([header.as_slice(), text.as_slice()].concat(), data);
    // What the door shows of a plain mail is made from its header alone and the rest as it
    // is (mirror.rs takes such mail in by its header): the same as made from the whole.
    let whole = ssmax_card::ops::view::untouched(data, "ssmax-card.local");
    let by_header = ssmax_card::ops::view::untouched(&header, "ssmax-card.local");
    assert_eq!([by_header.as_slice(), text.as_slice()].concat(), whole);
    for s in sections() {
        let _ = tree.section(Some(&s));
    }
    let keys =
        [SearchKey::Or(Box::new(SearchKey::Text(a("revenue"))), Box::new(SearchKey::Header(a("Subject"), a("見積"))))];
    let mut view = || Some(data.to_vec());
    let mut c = Candidate::new(1, 1, 1, 1, &[], None, data.len() as u32, &mut view);
    let _ = matches(&keys, &mut c);
});
