//! Making envelopes: AES-256-GCM AuthEnvelopedData (RFC 5083/5084) to a certificate, and the
//! RecipientInfo that re-keying puts on an existing envelope. Only public-key operations here.

use super::algorithms::{x963_kdf, GcmParams, OaepParams, ID_MGF1, ID_RSAES_OAEP};
use super::asn1::{KeyAgreeRecipientIdentifier, KeyAgreeRecipientInfo, RecipientEncryptedKey, RecipientInfo};
use super::decrypt::Envelope;
use super::oaep::OaepHash;
use super::CmsError;
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    EncryptedContentInfo, KeyTransRecipientInfo, OriginatorIdentifierOrKey, OriginatorPublicKey, RecipientIdentifier,
};
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{BitString, ObjectIdentifier, OctetString, SetOfVec};
use der::Any;
use rand_core::{OsRng, RngCore};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use zeroize::Zeroizing;

const AES256_GCM: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46");
const AES256_WRAP: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.45");
const ECDH_SHA256_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.11.1");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

fn enc(e: der::Error) -> CmsError {
    CmsError::Malformed(format!("encoding CMS: {e}"))
}

fn ias(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    }
}

fn sha256_id() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid: rfc5912::ID_SHA_256, parameters: Some(Any::null()) }
}

/// A RecipientInfo that gives `cek` to the holder of `cert`'s private key:
/// RSA → RSA-OAEP (SHA-256) key transport; EC P-256/P-384 → ECDH ephemeral-static + AES-256 key wrap.
pub fn recipient_info(cert: &Certificate, cek: &[u8]) -> Result<RecipientInfo, CmsError> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key_bits = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| CmsError::Malformed("recipient public key is not whole bytes".into()))?;
    if spki.algorithm.oid == rfc5912::RSA_ENCRYPTION {
        use rsa::pkcs1::DecodeRsaPublicKey;
        let key = rsa::RsaPublicKey::from_pkcs1_der(key_bits)
            .map_err(|e| CmsError::Malformed(format!("recipient RSA key: {e}")))?;
        let wrapped = key
            .encrypt(&mut OsRng, rsa::Oaep::new::<sha2::Sha256>(), cek)
            .map_err(|e| CmsError::Unsupported(format!("RSA-OAEP to this key: {e}")))?;
        let params = OaepParams {
            hash: Some(sha256_id()),
            mgf: Some(AlgorithmIdentifierOwned {
                oid: ID_MGF1,
                parameters: Some(Any::encode_from(&sha256_id()).map_err(enc)?),
            }),
            psource: None,
        };
        return Ok(RecipientInfo::Ktri(KeyTransRecipientInfo {
            version: CmsVersion::V0,
            rid: RecipientIdentifier::IssuerAndSerialNumber(ias(cert)),
            key_enc_alg: AlgorithmIdentifierOwned {
                oid: ID_RSAES_OAEP,
                parameters: Some(Any::encode_from(&params).map_err(enc)?),
            },
            enc_key: OctetString::new(wrapped).map_err(enc)?,
        }));
    }
    if spki.algorithm.oid == ID_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let (ephemeral_point, z): (Vec<u8>, Zeroizing<Vec<u8>>) = match curve {
            Some(c) if c == P256 => {
                let peer = p256::PublicKey::from_sec1_bytes(key_bits)
                    .map_err(|_| CmsError::Malformed("recipient P-256 key".into()))?;
                let eph = p256::ecdh::EphemeralSecret::random(&mut OsRng);
                let point = p256::EncodedPoint::from(eph.public_key()).as_bytes().to_vec();
                (point, Zeroizing::new(eph.diffie_hellman(&peer).raw_secret_bytes().to_vec()))
            }
            Some(c) if c == P384 => {
                let peer = p384::PublicKey::from_sec1_bytes(key_bits)
                    .map_err(|_| CmsError::Malformed("recipient P-384 key".into()))?;
                let eph = p384::ecdh::EphemeralSecret::random(&mut OsRng);
                let point = p384::EncodedPoint::from(eph.public_key()).as_bytes().to_vec();
                (point, Zeroizing::new(eph.diffie_hellman(&peer).raw_secret_bytes().to_vec()))
            }
            _ => return Err(CmsError::Unsupported("recipient EC key on a curve other than P-256 / P-384".into())),
        };
        let kek = x963_kdf(OaepHash::Sha256, &z, &AES256_WRAP, None)?;
        let kek = <aes_kw::KwAes256 as aes_kw::cipher::KeyInit>::new_from_slice(&kek[..])
            .map_err(|_| CmsError::Malformed("KEK length".into()))?;
        let mut wrapped = vec![0u8; cek.len() + aes_kw::IV_LEN];
        kek.wrap_key(cek, &mut wrapped).map_err(|_| CmsError::Malformed("AES key wrap of the content key".into()))?;
        let wrap_alg = AlgorithmIdentifierOwned { oid: AES256_WRAP, parameters: None };
        return Ok(RecipientInfo::Kari(KeyAgreeRecipientInfo {
            version: CmsVersion::V3,
            originator: OriginatorIdentifierOrKey::OriginatorKey(OriginatorPublicKey {
                algorithm: AlgorithmIdentifierOwned { oid: ID_EC_PUBLIC_KEY, parameters: None },
                public_key: BitString::from_bytes(&ephemeral_point).map_err(enc)?,
            }),
            ukm: None,
            key_enc_alg: AlgorithmIdentifierOwned {
                oid: ECDH_SHA256_KDF,
                parameters: Some(Any::encode_from(&wrap_alg).map_err(enc)?),
            },
            recipient_enc_keys: vec![RecipientEncryptedKey {
                rid: KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias(cert)),
                enc_key: OctetString::new(wrapped).map_err(enc)?,
            }],
        }));
    }
    Err(CmsError::Unsupported(format!("encrypting to a {} key", spki.algorithm.oid)))
}

/// Encrypt `content` with a fresh AES-256-GCM key for `recipients` (DER ContentInfo out). The
/// buffer is encrypted in place: the plaintext is gone once this returns, and a large
/// attachment is not held twice.
pub fn encrypt(content: Vec<u8>, recipients: &[Certificate]) -> Result<Vec<u8>, CmsError> {
    encrypt_with(content, recipients, None)
}

/// As `encrypt`, with authenticated attributes: their DER (a SET OF, RFC 5083 §2.2) is the
/// GCM additional data, so they cannot be changed or moved to another envelope unseen, and
/// re-keying carries them unchanged.
pub fn encrypt_with(
    content: Vec<u8>,
    recipients: &[Certificate],
    auth_attrs: Option<super::asn1::BerSetOf<super::signed::RawAttribute>>,
) -> Result<Vec<u8>, CmsError> {
    let mut cek = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(&mut cek[..]);
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    // ring's AES-GCM: the assembly BoringSSL uses. A fresh key per message, so the random nonce
    // is unique for it.
    let failed = |_| CmsError::Malformed("AES-GCM encryption failed".into());
    let key =
        ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &cek[..]).map_err(failed)?);
    // The tag travels separately (the MAC field).
    let aad = match &auth_attrs {
        Some(a) => der::Encode::to_der(a).map_err(enc)?,
        None => Vec::new(),
    };
    let mut sealed = content;
    let tag = key
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(&aad[..]),
            &mut sealed,
        )
        .map_err(failed)?
        .as_ref()
        .to_vec();
    let params = GcmParams { nonce: OctetString::new(nonce.to_vec()).map_err(enc)?, icv_len: Some(16) };
    let infos = recipients.iter().map(|c| recipient_info(c, &cek[..])).collect::<Result<Vec<_>, _>>()?;
    let env = Envelope {
        authenticated: true,
        originator_info: None,
        infos: SetOfVec::new(),
        eci: EncryptedContentInfo {
            content_type: rfc5911::ID_DATA,
            content_enc_alg: AlgorithmIdentifierOwned {
                oid: AES256_GCM,
                parameters: Some(Any::encode_from(&params).map_err(enc)?),
            },
            encrypted_content: Some(OctetString::new(sealed).map_err(enc)?),
        },
        auth_attrs,
        mac: Some(OctetString::new(tag).map_err(enc)?),
        other_attrs: None,
    };
    env.into_der(infos)
}

/// A software key in the Decryptor seat, to check our envelopes open (unit tests only: a
/// user's key is never a software key).
#[cfg(test)]
pub(crate) mod soft {
    use super::*;
    use crate::cms::decrypt::{Decryptor, RsaOp};

    pub(crate) struct Soft(pub Vec<Certificate>, pub rsa::RsaPrivateKey);

    impl Decryptor for Soft {
        fn certificates(&self) -> &[Certificate] {
            &self.0
        }
        fn supports(&self, _: usize, op: RsaOp) -> bool {
            matches!(op, RsaOp::Oaep(OaepHash::Sha256))
        }
        fn rsa_decrypt(&mut self, _: usize, op: RsaOp, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
            assert_eq!(op, RsaOp::Oaep(OaepHash::Sha256));
            Ok(Zeroizing::new(self.1.decrypt(rsa::Oaep::new::<sha2::Sha256>(), data).unwrap()))
        }
        fn ecdh(&mut self, _: usize, _: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
            unreachable!()
        }
    }

    /// The RFC 9216 example recipient: certificate and key.
    pub(crate) fn bob() -> (Certificate, rsa::RsaPrivateKey) {
        use rsa::pkcs8::DecodePrivateKey;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("softhsm-tests/interop-vectors/examples-cms/certs-and-keys");
        let cert = crate::cms::cert::load_file(&dir.join("lamps-bob.encrypt.crt")).unwrap();
        let key =
            rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(dir.join("lamps-bob.decrypt.p8.pem")).unwrap())
                .unwrap();
        (crate::cms::cert::parse(&cert[0]).unwrap(), key)
    }
}

#[cfg(test)]
mod tests {
    use super::soft::{bob, Soft};
    use super::*;
    use crate::cms::decrypt::open;

    #[test]
    fn envelope_opens_and_rekeying_keeps_the_ciphertext() {
        let (cert, key) = bob();
        let der = encrypt(b"attachment bytes".to_vec(), std::slice::from_ref(&cert)).unwrap();
        let mut soft = Soft(vec![cert.clone()], key);
        assert_eq!(open(&der, &mut soft).unwrap().content, b"attachment bytes");
        let env = Envelope::parse(&der).unwrap();
        let (cek, _, _) = env.recover_cek(&mut soft).unwrap();
        let rekeyed = env.with_recipients(vec![recipient_info(&cert, &cek).unwrap()]).unwrap();
        assert_ne!(rekeyed, der, "a new RecipientInfo");
        assert_eq!(Envelope::parse(&rekeyed).unwrap().ciphertext(), env.ciphertext());
        assert_eq!(open(&rekeyed, &mut soft).unwrap().content, b"attachment bytes");
    }

    #[test]
    fn authenticated_attributes_are_bound_to_the_content() {
        use crate::cms::asn1::BerSetOf;
        use crate::cms::signed::{Oid, RawAttribute};
        let (cert, key) = bob();
        let attr = |v: &str| {
            let a = RawAttribute::new(
                &Oid::from_const(ObjectIdentifier::new_unwrap("1.2.3.4")),
                der::asn1::Utf8StringRef::new(v).unwrap(),
            )
            .unwrap();
            BerSetOf::from_vec(vec![a]).unwrap()
        };
        let der = encrypt_with(b"payroll".to_vec(), std::slice::from_ref(&cert), Some(attr("label one"))).unwrap();
        let mut soft = Soft(vec![cert.clone()], key);
        assert_eq!(open(&der, &mut soft).unwrap().content, b"payroll");
        let mut env = Envelope::parse(&der).unwrap();
        env.auth_attrs = Some(attr("label two"));
        let swapped = env.with_recipients(env.infos.iter().cloned().collect()).unwrap();
        assert!(open(&swapped, &mut soft).is_err(), "another label must not open");
    }
}
