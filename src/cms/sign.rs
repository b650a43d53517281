//! What every S/MIME signature we make carries (signing time, S/MIME capabilities) and the
//! digests we accept in the ones we verify.

use super::digest::Hash;
use super::signed::{Oid, RawAttribute};
use super::CmsError;
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::ObjectIdentifier;
use der::{Any, Sequence};

/// SMIMECapability (RFC 8551 §2.5.2).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SmimeCapability {
    capability_id: ObjectIdentifier,
    #[asn1(optional = "true")]
    parameters: Option<Any>,
}

/// AES-256-GCM, AES-128-GCM, AES-256-CBC, AES-128-CBC: parsed at compile time, not per signature.
const CAPABILITIES: [ObjectIdentifier; 4] = [
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.46"),
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.6"),
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.42"),
    ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.1.2"),
];

/// Signing time (UTCTime until 2049, RFC 5652 §11.3) and what we can read, strongest first
/// (RFC 8551 §2.7.1): AES-256/128-GCM, then AES-256/128-CBC.
pub fn standard_attributes() -> Result<Vec<RawAttribute>, CmsError> {
    let bad = |e: der::Error| CmsError::Malformed(format!("signed attributes: {e}"));
    let now = der::DateTime::from_system_time(std::time::SystemTime::now()).map_err(bad)?;
    let time = if (1950..2050).contains(&now.year()) {
        RawAttribute::new(
            &Oid::from_const(rfc5911::ID_SIGNING_TIME),
            der::asn1::UtcTime::from_date_time(now).map_err(bad)?,
        )?
    } else {
        RawAttribute::new(&Oid::from_const(rfc5911::ID_SIGNING_TIME), der::asn1::GeneralizedTime::from_date_time(now))?
    };
    let caps: Vec<SmimeCapability> =
        CAPABILITIES.iter().map(|&o| SmimeCapability { capability_id: o, parameters: None }).collect();
    Ok(vec![time, RawAttribute::new(&Oid::from_const(rfc5911::SMIME_CAPABILITIES), caps)?])
}

/// The digest OIDs we accept on verification; SHA-1 is refused (RFC 8551 §2.1).
pub fn digest_for(oid: &ObjectIdentifier) -> Option<Hash> {
    match *oid {
        rfc5912::ID_SHA_256 => Some(Hash::Sha256),
        rfc5912::ID_SHA_384 => Some(Hash::Sha384),
        rfc5912::ID_SHA_512 => Some(Hash::Sha512),
        _ => None,
    }
}
