//! Incoming and outgoing mail: header parsing, multipart splitting, canonicalisation, S/MIME
//! classification, the sender (one From field, one mailbox), the SSMAX body parser, and what the
//! IMAP door reads of a mail before judging it (is it SSMAX; which verdicts claim to be its own).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::mail::{canonicalise, check_structure, smime, Entity};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entity::parse(data) {
        // A sender is named only by exactly one From field holding exactly one address.
        if let Ok(from) = e.from_address() {
            assert_eq!(e.fields.iter().filter(|f| f.is("From")).count(), 1);
            assert_eq!(from.matches('@').count(), 1, "{from}");
            assert!(!from.contains(char::is_whitespace), "{from}");
        }
        let _ = e.content_type();
        let _ = e.decoded_body();
        let _ = check_structure(&e, 0);
        let _ = canonicalise(&e, 0);
        let _ = ssmax_card::ssmax::mail::parse_draft(&e);
        for f in &e.fields {
            let _ = ssmax_card::mail::auth_results::is_ours(f, "ssmax-card.local");
        }
    }
    let _ = ssmax_card::ops::view::is_ssmax(data);
    // Signed content as it arrives inside a signature: its sender, if it names one.
    let _ = ssmax_card::mail::sender_inside(data, "alice@example.jp");
    let _ = smime::classify(data);
    // In-place decoding of an opaque S/MIME body must give what decoding a copy gives.
    if let Ok(Ok(taken)) = smime::take_opaque(data.to_vec()) {
        if let Ok(smime::Incoming::Opaque { cms, .. }) = smime::classify(data) {
            assert_eq!(taken.cms, cms);
        }
    }
    let _ = ssmax_card::ssmax::mail::parse(data);
    let _ = ssmax_card::ssmax::mail::opened_attachments(data);
    // What an organisation's inspection is given: every file, through multiparts and messages.
    let _ = ssmax_card::ssmax::mail::leaves(data);
});
