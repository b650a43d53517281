//! OCSP answers as a responder sends them: seeded with answers `openssl ocsp` made (good,
//! revoked, unknown, from a delegated responder) about fuzz/ocsp-pki's certificate.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::cms::{cert, ocsp};
use std::time::{Duration, SystemTime};

fuzz_target!(|data: &[u8]| {
    let (Ok(ee), Ok(ca)) =
        (cert::parse(include_bytes!("../ocsp-pki/ee.der")), cert::parse(include_bytes!("../ocsp-pki/ca.der")))
    else {
        return;
    };
    // When the seeds were current, so the checks run to the end.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_222_700);
    if let Ok(a) = ocsp::check(data, &ee, &ca, Some(&[0x8a; 16]), now) {
        let _ = a.about(&ee, &ca) && a.current(now);
    }
    let _ = ocsp::check(data, &ee, &ca, None, now);
});
