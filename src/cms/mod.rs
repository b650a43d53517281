//! CMS (RFC 5652): SignedData built with a token signer and verified against trust anchors;
//! EnvelopedData / AuthEnvelopedData opened with the key on the token.

pub mod algorithms;
pub mod asn1;
pub mod ber;
pub mod bounds;
pub mod cert;
pub mod decrypt;
pub mod digest;
pub mod encrypt;
pub mod oaep;
pub mod ocsp;
pub mod pss;
pub mod revocation;
pub mod sign;
pub mod signed;
pub mod verify;

use der::Decode;

// Bounds on what one CMS object may carry. Real mail stays far below them; past them the input
// is refused with a message naming the bound, before any work per element (README: limits).
/// RecipientInfos in one EnvelopedData (a mail to a large list still has one per address);
/// enforced for every SET by bounds.rs, before parsing.
pub const MAX_RECIPIENTS: usize = 1000;
/// Certificates carried in one SignedData (a chain is a handful).
pub const MAX_CERTIFICATES: usize = 100;
/// SignerInfos in one SignedData.
pub const MAX_SIGNERS: usize = 16;
/// One certificate's DER (real ones are 1–4 KiB; a huge one is an extension stuffed to hurt).
pub const MAX_CERT_SIZE: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    #[error("{}", crate::tr!("cms-malformed", detail = .0))]
    Malformed(String),
    /// Something we are asked to write that we do not (encrypting to an unknown key type).
    #[error("{}", crate::tr!("cms-unsupported", detail = .0))]
    Unsupported(String),
    /// A well-formed envelope we cannot open: an algorithm we refuse or do not know, or a key
    /// the token cannot use for it. Not malformed input.
    #[error("{}", crate::tr!("cms-cannot-decrypt", detail = .0))]
    CannotDecrypt(String),
    #[error("{}", crate::tr!("cms-verify-failed", detail = .0))]
    Verify(String),
    #[error("{}", crate::tr!("cms-decrypt-failed", detail = .0))]
    Decrypt(String),
    #[error("{}", crate::tr!("cms-no-key", detail = .0))]
    NoKey(String),
    /// The key's own failure (a token's: wrong PIN, card removed, mechanism refused), kept whole
    /// so the edge can tell which; cms knows keys only through the Signer and Decryptor seams.
    #[error(transparent)]
    Key(Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Read(#[from] crate::files::ReadError),
}

/// Accept DER or PEM ("CMS", "PKCS7"); return DER (borrowed when it already is).
pub fn unarmor(data: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CmsError> {
    let trimmed = data.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(trimmed).map_err(|_| CmsError::Malformed(crate::tr!("pem-not-text")))?;
        let (label, der) = der::pem::decode_vec(text.as_bytes())
            .map_err(|e| CmsError::Malformed(crate::tr!("pem-undecodable", error = e.to_string())))?;
        if !matches!(label, "CMS" | "PKCS7" | "PKCS #7 SIGNED DATA") {
            return Err(CmsError::Malformed(crate::tr!("pem-not-cms", label = label)));
        }
        return Ok(std::borrow::Cow::Owned(der));
    }
    Ok(std::borrow::Cow::Borrowed(data))
}

/// ContentInfo with its content borrowed from the input.
#[derive(Clone, Debug, der::Sequence)]
pub struct ContentInfoRef<'a> {
    pub content_type: der::oid::ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub content: der::AnyRef<'a>,
}

/// A ContentInfo from BER or DER (ber.rs rewrites BER first).
pub fn content_info(input: &[u8]) -> Result<cms::content_info::ContentInfo, CmsError> {
    let normalized = ber::normalize(input)?;
    let der = normalized.as_deref().unwrap_or(input);
    bounds::check(der)?;
    cms::content_info::ContentInfo::from_der(der)
        .map_err(|e| CmsError::Malformed(crate::tr!("cms-not-content-info", error = e.to_string())))
}

#[cfg(test)]
mod robustness {
    //! Mutated CMS and MIME must give errors, never panics. Deterministic, bounded, in-process.
    use super::decrypt::{Decryptor, RsaOp};
    use super::*;
    use x509_cert::Certificate;
    use zeroize::Zeroizing;

    struct NoKeys(Vec<Certificate>);

    impl Decryptor for NoKeys {
        fn certificates(&self) -> &[Certificate] {
            &self.0
        }
        fn supports(&self, _: usize, _: RsaOp) -> bool {
            true
        }
        fn rsa_decrypt(&mut self, _: usize, _: RsaOp, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
            // Whatever comes back from a token must be handled: echo the input.
            Ok(Zeroizing::new(data.iter().take(32).copied().collect()))
        }
        fn ecdh(&mut self, _: usize, p: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
            Ok(Zeroizing::new(p.iter().take(32).copied().collect()))
        }
    }

    fn vectors() -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("softhsm-tests/interop-vectors/examples-cms/binary-files");
        let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .expect("softhsm-tests/interop-vectors")
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path()).ok())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn mutated_cms_never_panics_in_verify_or_decrypt() {
        let bob = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("softhsm-tests/interop-vectors/examples-cms/certs-and-keys/lamps-bob.encrypt.crt");
        let bob = cert::load_file(&bob).unwrap();
        let mut keys = NoKeys(bob.iter().map(|d| cert::parse(d).unwrap()).collect());
        let trust = verify::Trust { anchors: bob.clone(), ..Default::default() };
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for v in vectors() {
            for _ in 0..400 {
                let mut m = v.clone();
                for _ in 0..1 + next() % 4 {
                    let i = (next() as usize) % m.len();
                    match next() % 3 {
                        0 => m[i] ^= 1 << (next() % 8),
                        1 => m.truncate(i.max(1)),
                        _ => m[i] = (next() & 0xff) as u8,
                    }
                }
                let _ = verify::verify(&m, Some(b"x"), &trust, std::time::SystemTime::now());
                let _ = verify::verify(&m, None, &trust, std::time::SystemTime::now());
                let _ = decrypt::open(&m, &mut keys);
                let _ = crate::mail::smime::classify(&m);
                let _ = crate::mail::smime::take_opaque(m.clone());
                envelopes_agree(&m);
            }
        }
    }

    /// `parse_owned` moves the encrypted content instead of copying it; it must see the same
    /// envelope `parse` sees, and refuse what `parse` refuses.
    fn envelopes_agree(der: &[u8]) {
        let copied = decrypt::Envelope::parse(der).map(|e| format!("{e:?}"));
        let moved = decrypt::Envelope::parse_owned(der.to_vec()).map(|e| format!("{e:?}"));
        match (copied, moved) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(_), Err(_)) => {}
            (a, b) => panic!("parse and parse_owned disagree: {:?} / {:?}", a.map(|_| ()), b.map(|_| ())),
        }
    }

    #[test]
    fn an_envelope_taken_whole_is_the_envelope_parsed_from_a_copy() {
        let mut enveloped = 0;
        for v in vectors() {
            envelopes_agree(&v);
            enveloped += usize::from(decrypt::Envelope::parse(&v).is_ok());
        }
        assert!(enveloped >= 4, "the interop vectors hold enveloped and auth-enveloped data");
    }
}
