//! CMS from outside, BER or DER: SignedData (with and without detached content), EnvelopedData
//! and AuthEnvelopedData, PEM armour. Seeded with NSS's and gpgsm's BER as they wrote it.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::cms::{ber, decrypt::Envelope, signed, unarmor, verify};

fuzz_target!(|data: &[u8]| {
    // BER in, DER out: what comes out is DER by the same rules (nothing left to rewrite).
    if let Ok(Some(der)) = ber::normalize(data) {
        assert!(matches!(ber::normalize(&der), Ok(None)), "normalized output is not DER");
    }
    let Ok(der) = unarmor(data) else { return };
    let _ = signed::parse(&der);
    let trust = verify::Trust::default();
    let _ = verify::verify(&der, None, &trust, std::time::SystemTime::now());
    let _ = verify::verify(&der, Some(b"content"), &trust, std::time::SystemTime::now());
    // Taking the DER whole must see what parsing a copy sees (the ciphertext moves, nothing else).
    let moved = Envelope::parse_owned(der.to_vec()).map(|e| format!("{e:?}"));
    let copied = Envelope::parse(&der).map(|e| format!("{e:?}"));
    assert_eq!(moved.is_ok(), copied.is_ok());
    if let (Ok(a), Ok(b)) = (&moved, &copied) {
        assert_eq!(a, b);
    }
    if let Ok(env) = Envelope::parse(&der) {
        let _ = env.content_alg();
        // A wrong key: every content decryption path must fail cleanly.
        let _ = env.clone().into_plaintext(&[7u8; 32]);
        let _ = env.into_plaintext(&[7u8; 16]);
    }
});
