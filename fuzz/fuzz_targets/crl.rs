//! CRLs from files and passed descriptors (PEM or DER), and what is asked of a list about one
//! link of a path (its issuer's signature, its scope, the revoked serial): seeded with lists
//! openssl made (softhsm-tests/revocation.rs makes them alike).
#![no_main]
use der::Decode;
use libfuzzer_sys::fuzz_target;
use ssmax_card::cms::revocation;
use x509_cert::Certificate;

const EE: &[u8] = include_bytes!("../ocsp-pki/ee.der");
const CA: &[u8] = include_bytes!("../ocsp-pki/ca.der");

fuzz_target!(|data: &[u8]| {
    let (Ok(ee), Ok(ca)) = (Certificate::from_der(EE), Certificate::from_der(CA)) else { return };
    if let Ok(crls) = revocation::load_bytes(data, "fuzz") {
        let _ = revocation::as_webpki(&crls);
        for end_entity in [true, false] {
            let link = revocation::Link { cert: &ee, issuer_der: CA, issuer: &ca, end_entity };
            let _ = revocation::who_is_revoked(&[link], &crls);
            let _ = revocation::list_for(&link, &crls, std::time::SystemTime::now());
        }
    }
});
