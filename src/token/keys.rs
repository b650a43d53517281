//! Key and certificate lifecycle on the token: key pairs born on the token, public keys read
//! back for requests, certificates and trust anchors stored next to the keys.

use super::calls::Mech;
use super::objects::{hex, KeyObject};
use super::{Token, TokenError};
use cryptoki::object::{Attribute, AttributeType, CertificateType, KeyType, ObjectClass};
use der::asn1::{BitString, ObjectIdentifier};
use der::{Decode, Encode};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySpec {
    Rsa2048,
    Rsa3072,
    P256,
}

const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

impl Token {
    /// Switch to a read-write session (keeping the login): object creation needs one.
    pub fn make_rw(&mut self) -> Result<(), TokenError> {
        let rw = self.module.lib.open_session(self.slot, true)?;
        // Open the new session before the old one closes: closing the last one would log out.
        let _old = std::mem::replace(&mut self.session, rw);
        self.invalidate_objects();
        Ok(())
    }

    /// The smallest one-byte CKA_ID no object uses yet.
    pub fn free_id(&self) -> Result<Vec<u8>, TokenError> {
        let handles = self.session.find_objects(&[])?;
        let mut used = Vec::new();
        for h in handles {
            if let Ok(attrs) = self.session.get_attributes(h, &[AttributeType::Id]) {
                for a in attrs {
                    if let Attribute::Id(v) = a {
                        used.push(v);
                    }
                }
            }
        }
        (1u8..=0xff)
            .map(|i| vec![i])
            .find(|id| !used.contains(id))
            .ok_or_else(|| TokenError::NoKey(crate::tr!("key-no-free-id")))
    }

    /// Generate a key pair on the token: sensitive, never extractable, with `id` and `label`.
    pub fn generate(&self, spec: KeySpec, id: &[u8], label: &str) -> Result<(), TokenError> {
        let common = |private: bool| {
            vec![
                Attribute::Token(true),
                Attribute::Private(private),
                Attribute::Id(id.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
            ]
        };
        let mut public = common(false);
        let mut private = common(true);
        private.extend([Attribute::Sensitive(true), Attribute::Extractable(false), Attribute::Sign(true)]);
        public.push(Attribute::Verify(true));
        let mechanism = match spec {
            KeySpec::Rsa2048 | KeySpec::Rsa3072 => {
                let bits: u64 = if spec == KeySpec::Rsa2048 { 2048 } else { 3072 };
                public.extend([
                    Attribute::ModulusBits(bits.into()),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                    Attribute::Encrypt(true),
                ]);
                private.push(Attribute::Decrypt(true));
                Mech::RsaKeyPairGen
            }
            KeySpec::P256 => {
                public.push(Attribute::EcParams(P256_PARAMS.to_vec()));
                private.push(Attribute::Derive(true));
                Mech::EcKeyPairGen
            }
        };
        self.session.generate_key_pair(&mechanism, &public, &private)?;
        self.invalidate_objects();
        Ok(())
    }

    /// The public key with CKA_ID `id`, as a SubjectPublicKeyInfo (readable without a PIN).
    pub fn public_key(&self, id: &[u8]) -> Result<SubjectPublicKeyInfoOwned, TokenError> {
        let handles =
            self.session.find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Id(id.to_vec())])?;
        let h = *handles
            .first()
            .ok_or_else(|| TokenError::NoKey(crate::tr!("key-no-public-key", id = hex(id), token = self.label)))?;
        let attrs = self.session.get_attributes(
            h,
            &[
                AttributeType::KeyType,
                AttributeType::Modulus,
                AttributeType::PublicExponent,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )?;
        let (mut kt, mut n, mut e, mut params, mut point) = (None, None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(k) => kt = Some(k),
                Attribute::Modulus(v) => n = Some(v),
                Attribute::PublicExponent(v) => e = Some(v),
                Attribute::EcParams(v) => params = Some(v),
                Attribute::EcPoint(v) => point = Some(v),
                _ => {}
            }
        }
        let bad = |what: &str| TokenError::NoKey(crate::tr!("key-public-unusable", id = hex(id), reason = what));
        match kt {
            Some(KeyType::RSA) => {
                use rsa::pkcs8::EncodePublicKey;
                let key = rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(&n.ok_or_else(|| bad("no modulus"))?),
                    rsa::BigUint::from_bytes_be(&e.ok_or_else(|| bad("no exponent"))?),
                )
                .map_err(|_| bad("invalid RSA key"))?;
                let der = key.to_public_key_der().map_err(|_| bad("cannot encode"))?;
                SubjectPublicKeyInfoOwned::from_der(der.as_bytes()).map_err(|_| bad("cannot encode"))
            }
            Some(KeyType::EC) => {
                let params = params.ok_or_else(|| bad("no curve"))?;
                if params != P256_PARAMS && params != P384_PARAMS {
                    return Err(bad("a curve other than P-256 / P-384"));
                }
                let point = point.ok_or_else(|| bad("no point"))?;
                // CKA_EC_POINT is a DER OCTET STRING (PKCS#11 v2.40); some modules give it raw.
                let raw = der::asn1::OctetString::from_der(&point).map(|o| o.as_bytes().to_vec()).unwrap_or(point);
                let curve = ObjectIdentifier::from_der(&params).map_err(|_| bad("curve"))?;
                Ok(SubjectPublicKeyInfoOwned {
                    algorithm: AlgorithmIdentifierOwned {
                        oid: ObjectIdentifier::new_unwrap("1.2.840.10045.2.1"),
                        parameters: Some(der::Any::encode_from(&curve).map_err(|_| bad("curve"))?),
                    },
                    subject_public_key: BitString::from_bytes(&raw).map_err(|_| bad("point"))?,
                })
            }
            _ => Err(bad("not RSA or EC")),
        }
    }

    /// Store a certificate object (CKA_ID `id`) next to its key, or as an anchor.
    pub fn store_certificate(&self, cert: &x509_cert::Certificate, id: &[u8], label: &str) -> Result<(), TokenError> {
        let enc = |e: der::Error| TokenError::NoKey(crate::tr!("key-cannot-encode-certificate", error = e.to_string()));
        let tbs = &cert.tbs_certificate;
        let template = vec![
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Id(id.to_vec()),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Subject(tbs.subject.to_der().map_err(enc)?),
            Attribute::Issuer(tbs.issuer.to_der().map_err(enc)?),
            Attribute::SerialNumber(tbs.serial_number.to_der().map_err(enc)?),
            Attribute::Value(cert.to_der().map_err(enc)?),
        ];
        self.session.create_object(&template)?;
        self.invalidate_objects();
        Ok(())
    }

    /// The key stays for decryption of old mail; it may no longer sign (CKA_SIGN false).
    pub fn retire_for_signing(&self, key: &KeyObject) -> Result<(), TokenError> {
        self.session.update_attributes(key.handle, &[Attribute::Sign(false)])?;
        self.invalidate_objects();
        Ok(())
    }
}
