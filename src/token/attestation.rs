//! YubiKey PIV attestation: proof that a key was born on the device, offered with the CSR.
//! Fetching needs a YubiKey (cargo feature `yubikey`, untested on hardware here); binding the
//! attestation to the request is plain certificate work and is unit-tested.

use x509_cert::request::CertReq;
use x509_cert::Certificate;

#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    #[error("the attestation certificate is for another key than the request's")]
    KeyMismatch,
    #[error("malformed attestation: {0}")]
    Malformed(String),
    #[error("YubiKey: {0}")]
    Device(String),
}

/// The CSR followed by the attestation chain (attestation certificate, then the device's F9
/// intermediate), PEM, after checking the attestation certifies the very key the CSR is for.
pub fn attach(csr_pem: &str, chain: &[Vec<u8>]) -> Result<String, AttestationError> {
    use der::{DecodePem, Encode, EncodePem};
    let req =
        CertReq::from_pem(csr_pem.as_bytes()).map_err(|e| AttestationError::Malformed(format!("request: {e}")))?;
    let first = chain.first().ok_or_else(|| AttestationError::Malformed("empty attestation chain".into()))?;
    let att = <Certificate as der::Decode>::from_der(first)
        .map_err(|e| AttestationError::Malformed(format!("attestation certificate: {e}")))?;
    let same = att.tbs_certificate.subject_public_key_info.to_der().ok() == req.info.public_key.to_der().ok();
    if !same {
        return Err(AttestationError::KeyMismatch);
    }
    let mut out = csr_pem.to_string();
    for der in chain {
        let c = <Certificate as der::Decode>::from_der(der).map_err(|e| AttestationError::Malformed(e.to_string()))?;
        out.push_str(&c.to_pem(der::pem::LineEnding::LF).map_err(|e| AttestationError::Malformed(e.to_string()))?);
    }
    Ok(out)
}

/// The attestation for PIV slot 9C (signature) and the device's attestation intermediate (F9).
#[cfg(feature = "yubikey")]
pub fn fetch_signature_slot() -> Result<Vec<Vec<u8>>, AttestationError> {
    use der::Encode;
    use yubikey::piv::{attest, SlotId};
    let dev = |e: yubikey::Error| AttestationError::Device(e.to_string());
    let mut yk = yubikey::YubiKey::open().map_err(dev)?;
    let att = attest(&mut yk, SlotId::Signature).map_err(dev)?.to_vec();
    let f9 = yubikey::certificate::Certificate::read(&mut yk, SlotId::Attestation).map_err(dev)?;
    Ok(vec![att, f9.cert.to_der().map_err(|e| AttestationError::Malformed(e.to_string()))?])
}

#[cfg(not(feature = "yubikey"))]
pub fn fetch_signature_slot() -> Result<Vec<Vec<u8>>, AttestationError> {
    Err(AttestationError::Device("this ssmax-card was built without the 'yubikey' feature".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::{Decode, EncodePem};
    use rsa::pkcs1v15::SigningKey;
    use std::str::FromStr;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile, RequestBuilder};
    use x509_cert::name::Name;

    fn key() -> SigningKey<sha2::Sha256> {
        SigningKey::new(rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).unwrap())
    }

    /// A stand-in for the YubiKey's attestation: a certificate for `subject_key` signed by `ca`.
    fn attestation_for(subject_key: &SigningKey<sha2::Sha256>, ca: &SigningKey<sha2::Sha256>) -> Vec<u8> {
        use rsa::pkcs8::EncodePublicKey;
        use signature::Keypair;
        let spki_der = subject_key.verifying_key().to_public_key_der().unwrap();
        let spki = spki::SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).unwrap();
        let b = CertificateBuilder::new(
            Profile::Leaf {
                issuer: Name::from_str("CN=Yubico PIV Attestation").unwrap(),
                enable_key_agreement: false,
                enable_key_encipherment: false,
                // The yubikey crate turns on x509-cert's "hazmat", which adds this field.
                #[cfg(feature = "yubikey")]
                include_subject_key_identifier: true,
            },
            x509_cert::serial_number::SerialNumber::from(7u32),
            x509_cert::time::Validity::from_now(std::time::Duration::from_secs(3600)).unwrap(),
            Name::from_str("CN=YubiKey PIV Attestation 9c").unwrap(),
            spki,
            ca,
        )
        .unwrap();
        der::Encode::to_der(&b.build::<rsa::pkcs1v15::Signature>().unwrap()).unwrap()
    }

    fn csr_for(k: &SigningKey<sha2::Sha256>) -> String {
        let b = RequestBuilder::new(Name::from_str("CN=alice@example.jp").unwrap(), k).unwrap();
        b.build::<rsa::pkcs1v15::Signature>().unwrap().to_pem(der::pem::LineEnding::LF).unwrap()
    }

    #[test]
    fn attestation_of_the_same_key_is_attached_after_the_request() {
        let (k, ca) = (key(), key());
        let csr = csr_for(&k);
        let bundle = attach(&csr, &[attestation_for(&k, &ca)]).unwrap();
        assert!(bundle.starts_with(&csr));
        assert_eq!(bundle.matches("-----BEGIN CERTIFICATE-----").count(), 1);
    }

    #[test]
    fn attestation_of_another_key_is_refused() {
        let (k, other, ca) = (key(), key(), key());
        assert!(matches!(attach(&csr_for(&k), &[attestation_for(&other, &ca)]), Err(AttestationError::KeyMismatch)));
    }
}
