//! Algorithm identifiers and parameters both directions use: RSAES-OAEP, GCM and the
//! ECC-CMS-SharedInfo of RFC 5753 with its X9.63 KDF, and the hashes they name.

use super::oaep::OaepHash;
use super::CmsError;
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Encode, Sequence};
use zeroize::Zeroizing;

pub(crate) const ID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");

pub(crate) const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");

pub(crate) const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");

pub(crate) const ID_CHACHA20_POLY1305: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.3.18");

pub(crate) const ID_P_SPECIFIED: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.9");

/// RSAES-OAEP-params (RFC 8017 A.2.1): every field has a SHA-1 default.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct OaepParams {
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) hash: Option<spki::AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) mgf: Option<spki::AlgorithmIdentifierOwned>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    pub(crate) psource: Option<spki::AlgorithmIdentifierOwned>,
}

/// GCMParameters (RFC 5084 §3.2).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct GcmParams {
    pub(crate) nonce: OctetString,
    #[asn1(optional = "true")]
    pub(crate) icv_len: Option<u8>,
}

/// ECC-CMS-SharedInfo (RFC 5753 §7.2).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub(crate) struct EccCmsSharedInfo {
    key_info: spki::AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    entity_u_info: Option<OctetString>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT")]
    supp_pub_info: OctetString,
}

pub(crate) fn hash_of(oid: &ObjectIdentifier) -> Option<OaepHash> {
    match *oid {
        ID_SHA1 => Some(OaepHash::Sha1),
        rfc5912::ID_SHA_256 => Some(OaepHash::Sha256),
        rfc5912::ID_SHA_384 => Some(OaepHash::Sha384),
        rfc5912::ID_SHA_512 => Some(OaepHash::Sha512),
        _ => None,
    }
}

/// ANSI X9.63 KDF as RFC 5753 §7.2 applies it.
pub(crate) fn x963_kdf(
    hash: OaepHash,
    z: &[u8],
    wrap: &ObjectIdentifier,
    ukm: Option<&[u8]>,
) -> Result<Zeroizing<Vec<u8>>, CmsError> {
    use sha2::digest::DynDigest;
    let len = wrap_key_len(wrap)?;
    let info = EccCmsSharedInfo {
        key_info: spki::AlgorithmIdentifierOwned { oid: *wrap, parameters: None },
        entity_u_info: ukm.map(OctetString::new).transpose().map_err(|e| CmsError::Malformed(e.to_string()))?,
        supp_pub_info: OctetString::new(((len * 8) as u32).to_be_bytes().to_vec())
            .map_err(|e| CmsError::Malformed(e.to_string()))?,
    }
    .to_der()
    .map_err(|e| CmsError::Malformed(e.to_string()))?;
    let mut out = Zeroizing::new(Vec::with_capacity(len + 64));
    let mut counter = 1u32;
    while out.len() < len {
        let mut h: Box<dyn DynDigest> = match hash {
            OaepHash::Sha1 => Box::new(<sha1::Sha1 as sha2::Digest>::new()),
            OaepHash::Sha256 => Box::new(<sha2::Sha256 as sha2::Digest>::new()),
            OaepHash::Sha384 => Box::new(<sha2::Sha384 as sha2::Digest>::new()),
            OaepHash::Sha512 => Box::new(<sha2::Sha512 as sha2::Digest>::new()),
        };
        h.update(z);
        h.update(&counter.to_be_bytes());
        h.update(&info);
        out.extend_from_slice(&h.finalize());
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

pub(crate) fn wrap_key_len(oid: &ObjectIdentifier) -> Result<usize, CmsError> {
    match *oid {
        rfc5911::ID_AES_128_WRAP => Ok(16),
        rfc5911::ID_AES_192_WRAP => Ok(24),
        rfc5911::ID_AES_256_WRAP => Ok(32),
        other => Err(CmsError::CannotDecrypt(format!("key-wrap algorithm {other}"))),
    }
}

/// dhSinglePass-stdDH-sha1kdf-scheme and its cofactor variant (X9.63; const-oid names neither).
const STD_DH_SHA1_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.133.16.840.63.0.2");
const COFACTOR_DH_SHA1_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.133.16.840.63.0.3");
/// dhSinglePass-stdDH-sha{256,384,512}kdf-scheme and the cofactor variants (SEC 1).
const STD_DH_SHA256_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.11.1");
const STD_DH_SHA384_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.11.2");
const STD_DH_SHA512_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.11.3");
const COFACTOR_DH_SHA256_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.14.1");
const COFACTOR_DH_SHA384_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.14.2");
const COFACTOR_DH_SHA512_KDF: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.1.14.3");

/// The KDF hash of an ECDH key-agreement scheme (cofactor 1 on P-256/P-384 makes the cofactor
/// variants the same computation).
pub(crate) fn kdf_hash_of(oid: &ObjectIdentifier) -> Option<OaepHash> {
    Some(match *oid {
        STD_DH_SHA1_KDF | COFACTOR_DH_SHA1_KDF => OaepHash::Sha1,
        STD_DH_SHA256_KDF | COFACTOR_DH_SHA256_KDF => OaepHash::Sha256,
        STD_DH_SHA384_KDF | COFACTOR_DH_SHA384_KDF => OaepHash::Sha384,
        STD_DH_SHA512_KDF | COFACTOR_DH_SHA512_KDF => OaepHash::Sha512,
        _ => return None,
    })
}
