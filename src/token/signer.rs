//! A token key as a RustCrypto `Signer`, so the `cms` / `x509-cert` builders use it unchanged.
//! The message is hashed here and the raw mechanism (CKM_RSA_PKCS, CKM_RSA_PKCS_PSS, CKM_ECDSA)
//! signs on the token: every card we support offers those, while hash-combined mechanisms vary
//! (SoftHSM lacks CKM_ECDSA_SHA256).

use super::calls::{Digest, Mech};
use super::objects::{Curve, KeyKind, KeyObject};
use super::raw::Op;
use super::{Token, TokenError};
use crate::cms::signed::{self, RawAttribute, SignError, SignInput};
use crate::cms::CmsError;
use const_oid::db::rfc5912;
use der::asn1::BitString;
use signature::Keypair;
use spki::{
    AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding, SubjectPublicKeyInfoOwned,
};
use std::cell::RefCell;
use x509_cert::Certificate;

pub use crate::cms::digest::Hash;

/// What the token needs to know about a hash: the PKCS#1 v1.5 DigestInfo prefix and the
/// digest RSA-PSS names (its hash and MGF1).
trait OnToken {
    fn digest_info_prefix(self) -> &'static [u8];
    fn mechanism_digest(self) -> Digest;
}

impl OnToken for Hash {
    /// The DER DigestInfo prefix for PKCS#1 v1.5 signatures (RFC 8017 §9.2 note 1).
    fn digest_info_prefix(self) -> &'static [u8] {
        match self {
            Hash::Sha256 => &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
                0x04, 0x20,
            ],
            Hash::Sha384 => &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
                0x04, 0x30,
            ],
            Hash::Sha512 => &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00,
                0x04, 0x40,
            ],
        }
    }

    fn mechanism_digest(self) -> Digest {
        match self {
            Hash::Sha256 => Digest::Sha256,
            Hash::Sha384 => Digest::Sha384,
            Hash::Sha512 => Digest::Sha512,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    RsaPkcs1(Hash),
    RsaPss(Hash),
    Ecdsa(Hash, Curve),
}

impl Scheme {
    pub fn hash(self) -> Hash {
        match self {
            Scheme::RsaPkcs1(h) | Scheme::RsaPss(h) | Scheme::Ecdsa(h, _) => h,
        }
    }

    /// The scheme for a key: `pss` picks RSA-PSS over PKCS#1 v1.5; EC keys use their curve's hash.
    pub fn for_key(kind: &KeyKind, pss: bool) -> Result<Scheme, TokenError> {
        match kind {
            KeyKind::Rsa { .. } if pss => Ok(Scheme::RsaPss(Hash::Sha256)),
            KeyKind::Rsa { .. } => Ok(Scheme::RsaPkcs1(Hash::Sha256)),
            KeyKind::Ec(Some(Curve::P256)) => Ok(Scheme::Ecdsa(Hash::Sha256, Curve::P256)),
            KeyKind::Ec(Some(Curve::P384)) => Ok(Scheme::Ecdsa(Hash::Sha384, Curve::P384)),
            other => Err(TokenError::NoKey(crate::tr!("key-cannot-sign-kind", kind = other.to_string()))),
        }
    }

    pub fn describe(self) -> String {
        let h = match self.hash() {
            Hash::Sha256 => "SHA-256",
            Hash::Sha384 => "SHA-384",
            Hash::Sha512 => "SHA-512",
        };
        match self {
            Scheme::RsaPkcs1(_) => format!("RSA PKCS#1 v1.5 {h}"),
            Scheme::RsaPss(_) => format!("RSA-PSS {h}"),
            Scheme::Ecdsa(_, Curve::P256) => format!("ECDSA P-256 {h}"),
            Scheme::Ecdsa(_, Curve::P384) => format!("ECDSA P-384 {h}"),
        }
    }

    fn mechanism_name(self) -> &'static str {
        match self {
            Scheme::RsaPkcs1(_) => "RSA_PKCS",
            Scheme::RsaPss(_) => "RSA_PKCS_PSS",
            Scheme::Ecdsa(..) => "ECDSA",
        }
    }
}

/// A signature as the token returned it, DER-encoded for ECDSA.
#[derive(Debug, Clone)]
pub struct TokenSignature(pub Vec<u8>);

impl SignatureBitStringEncoding for TokenSignature {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

pub struct TokenSigner<'t> {
    token: &'t Token,
    key: KeyObject,
    scheme: Scheme,
    spki: SubjectPublicKeyInfoOwned,
    /// CKA_ALWAYS_AUTHENTICATE: the login sits between C_SignInit and C_Sign.
    context_login: bool,
    /// The token error behind a failed `try_sign`, so the caller can report it exactly
    /// (the builders only pass on an opaque `signature::Error`).
    failure: RefCell<Option<TokenError>>,
}

impl<'t> TokenSigner<'t> {
    pub fn new(
        token: &'t Token,
        key: KeyObject,
        scheme: Scheme,
        spki: SubjectPublicKeyInfoOwned,
    ) -> Result<Self, TokenError> {
        if !key.can_sign {
            return Err(TokenError::NoKey(crate::tr!("key-may-not-sign", key = key.label, token = token.label)));
        }
        if !token.profile.allows_sign(scheme.mechanism_name()) {
            return Err(TokenError::NoKey(crate::tr!(
                "key-mechanism-not-offered",
                token = token.label,
                profile = token.profile.name,
                mechanism = scheme.mechanism_name()
            )));
        }
        let context_login = key.always_authenticate;
        Ok(TokenSigner { token, key, scheme, spki, context_login, failure: RefCell::new(None) })
    }

    pub fn take_failure(&self) -> Option<TokenError> {
        self.failure.borrow_mut().take()
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Hash `msg` and sign the hash on the token.
    pub fn sign_on_token(&self, msg: &[u8]) -> Result<Vec<u8>, TokenError> {
        let hash = self.scheme.hash();
        let digest = hash.digest(msg);
        let pss = Mech::RsaPss { digest: hash.mechanism_digest(), salt: hash.output_len() as u64 };
        let (mechanism, data) = match self.scheme {
            Scheme::RsaPkcs1(h) => (Mech::RsaPkcs, [h.digest_info_prefix(), &digest].concat()),
            Scheme::RsaPss(_) => (pss, digest),
            Scheme::Ecdsa(..) => (Mech::Ecdsa, digest),
        };
        let session = self.token.session();
        let raw_sig = if self.context_login {
            session.single_call(Op::Sign, &mechanism, self.key.handle, Some(self.token.context_pin()?), &data)
        } else {
            session.sign(&mechanism, self.key.handle, &data)
        }
        .map_err(|e| self.token.explain_failure(e))?;
        match self.scheme {
            Scheme::Ecdsa(_, curve) => ecdsa_to_der(curve, &raw_sig),
            _ => Ok(raw_sig),
        }
    }
}

/// PKCS#11 returns r‖s; CMS wants Ecdsa-Sig-Value (RFC 5753 §7.2).
fn ecdsa_to_der(curve: Curve, raw: &[u8]) -> Result<Vec<u8>, TokenError> {
    let bad =
        || TokenError::BadAnswer { function: "C_Sign", what: format!("an ECDSA signature of {} bytes", raw.len()) };
    Ok(match curve {
        Curve::P256 => p256::ecdsa::Signature::from_slice(raw).map_err(|_| bad())?.to_der().as_bytes().to_vec(),
        Curve::P384 => p384::ecdsa::Signature::from_slice(raw).map_err(|_| bad())?.to_der().as_bytes().to_vec(),
    })
}

/// The public half of a token key, as the x509-cert request builder wants it.
#[derive(Clone, Debug)]
pub struct TokenPublicKey(pub SubjectPublicKeyInfoOwned);

impl spki::EncodePublicKey for TokenPublicKey {
    fn to_public_key_der(&self) -> spki::Result<spki::Document> {
        Ok(spki::Document::encode_msg(&self.0)?)
    }
}

impl Keypair for TokenSigner<'_> {
    type VerifyingKey = TokenPublicKey;
    fn verifying_key(&self) -> Self::VerifyingKey {
        TokenPublicKey(self.spki.clone())
    }
}

impl DynSignatureAlgorithmIdentifier for TokenSigner<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        signature_algorithm(self.scheme)
    }
}

pub fn signature_algorithm(scheme: Scheme) -> spki::Result<AlgorithmIdentifierOwned> {
    let null = Some(der::Any::null());
    Ok(match scheme {
        Scheme::RsaPkcs1(h) => AlgorithmIdentifierOwned {
            oid: match h {
                Hash::Sha256 => rfc5912::SHA_256_WITH_RSA_ENCRYPTION,
                Hash::Sha384 => rfc5912::SHA_384_WITH_RSA_ENCRYPTION,
                Hash::Sha512 => rfc5912::SHA_512_WITH_RSA_ENCRYPTION,
            },
            parameters: null,
        },
        Scheme::RsaPss(Hash::Sha256) => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha256>()?,
        Scheme::RsaPss(Hash::Sha384) => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha384>()?,
        Scheme::RsaPss(Hash::Sha512) => rsa::pss::get_default_pss_signature_algo_id::<sha2::Sha512>()?,
        Scheme::Ecdsa(h, _) => AlgorithmIdentifierOwned {
            oid: match h {
                Hash::Sha256 => rfc5912::ECDSA_WITH_SHA_256,
                Hash::Sha384 => rfc5912::ECDSA_WITH_SHA_384,
                Hash::Sha512 => rfc5912::ECDSA_WITH_SHA_512,
            },
            parameters: None,
        },
    })
}

impl signature::Signer<TokenSignature> for TokenSigner<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<TokenSignature, signature::Error> {
        self.sign_on_token(msg).map(TokenSignature).map_err(|e| {
            *self.failure.borrow_mut() = Some(e);
            signature::Error::new()
        })
    }
}

/// Sign `content` (already canonical) on the token; DER ContentInfo with detached content out.
/// `certificates`: the DER of `cert` and of its chain, to carry in the signature; `sha256`: the
/// content's SHA-256 if already taken.
pub fn sign_detached(
    signer: &TokenSigner<'_>,
    cert: &Certificate,
    certificates: &[&[u8]],
    content: &[&[u8]],
    sha256: Option<&[u8]>,
    extra: Vec<RawAttribute>,
) -> Result<Vec<u8>, CmsError> {
    let input = SignInput {
        content,
        detached: true,
        digest: signer.scheme().hash(),
        sha256,
        signer_cert: cert,
        certificates,
        extra_attributes: extra,
    };
    match signed::sign(signer, input, crate::cms::sign::standard_attributes()?) {
        Ok(der) => Ok(der),
        Err(SignError::Cms(e)) => Err(e),
        // The token's own error says what went wrong (PIN, removal, mechanism).
        Err(SignError::Signer) => Err(signer
            .take_failure()
            .map(CmsError::from)
            .unwrap_or_else(|| CmsError::Malformed("the token did not sign".into()))),
    }
}
