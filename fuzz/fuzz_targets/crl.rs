//! CRLs from files and passed descriptors (PEM or DER), and the lookup that names a revoked
//! certificate: seeded with lists openssl made (softhsm-tests/revocation.rs makes them alike).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::cms::revocation;

fuzz_target!(|data: &[u8]| {
    if let Ok(crls) = revocation::load_bytes(data, "fuzz") {
        let _ = revocation::as_webpki(&crls);
        let _ = revocation::who_is_revoked(&[data], &crls);
    }
});
