//! Incoming and outgoing mail: header parsing, multipart splitting, canonicalisation, S/MIME
//! classification and the SSMAX body parser.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::mail::{canonicalise, check_structure, smime, Entity};

fuzz_target!(|data: &[u8]| {
    if let Ok(e) = Entity::parse(data) {
        let _ = e.from_address();
        let _ = e.content_type();
        let _ = e.decoded_body();
        let _ = check_structure(&e, 0);
        let _ = canonicalise(&e, 0);
        let _ = ssmax_card::ssmax::mail::parse_draft(&e);
    }
    let _ = smime::classify(data);
    // In-place decoding of an opaque S/MIME body must give what decoding a copy gives.
    if let Ok(Ok(taken)) = smime::take_opaque(data.to_vec()) {
        if let Ok(smime::Incoming::Opaque { cms, .. }) = smime::classify(data) {
            assert_eq!(taken.cms, cms);
        }
    }
    let _ = ssmax_card::ssmax::mail::parse(data);
    let _ = ssmax_card::ssmax::mail::opened_attachments(data);
});
