//! CMS from outside, BER or DER: SignedData (with and without detached content), EnvelopedData
//! and AuthEnvelopedData, PEM armour, an SSMAX attachment's binding and forward proofs. Seeded
//! with NSS's and gpgsm's BER as they wrote it, and bound attachments by us and Bouncy Castle.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::cms::{ber, cert, decrypt::Envelope, signed, unarmor, verify};
use ssmax_card::ssmax::binding;

/// A sender to check bindings against: the RFC 9216 example certificate.
fn sender() -> &'static x509_cert::Certificate {
    static SENDER: std::sync::OnceLock<x509_cert::Certificate> = std::sync::OnceLock::new();
    SENDER.get_or_init(|| {
        let pem = include_bytes!("../../softhsm-tests/interop-vectors/examples-cms/certs-and-keys/lamps-alice.crt");
        cert::parse(&cert::load_bytes(pem, "the example certificate").expect("PEM")[0]).expect("certificate")
    })
}

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
        // The binding and the forward proofs are read from the attributes: any, bounded.
        if let Ok(b) = binding::read(&env, "label") {
            let _ = binding::check(&env, &b.label, &b.filename, sender(), &[7u8; 32]);
            let mut forwarded = env.without_ciphertext();
            let _ = binding::add_forward_proof(&mut forwarded, &[7u8; 32], sender());
            let _ = binding::check(&forwarded, &b.label, &b.filename, sender(), &[7u8; 32]);
        }
        // A wrong key: every content decryption path must fail cleanly.
        let _ = env.clone().into_plaintext(&[7u8; 32]);
        let _ = env.into_plaintext(&[7u8; 16]);
    }
});
