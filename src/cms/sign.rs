//! SignedData for S/MIME: detached (multipart/signed) with the signature made on the token.

use super::CmsError;
use crate::token::signer::{TokenSignature, TokenSigner};
use cms::builder::{create_signing_time_attribute, SignedDataBuilder, SignerInfoBuilder};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{ObjectIdentifier, SetOfVec};
use der::{Any, Encode, Sequence};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attribute;
use x509_cert::Certificate;

/// SMIMECapability (RFC 8551 §2.5.2).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SmimeCapability {
    capability_id: ObjectIdentifier,
    #[asn1(optional = "true")]
    parameters: Option<Any>,
}

/// What we can read, strongest first (RFC 8551 §2.7.1): AES-256/128-GCM, then AES-256/128-CBC.
fn smime_capabilities() -> Result<Attribute, CmsError> {
    let caps: Vec<SmimeCapability> = ["2.16.840.1.101.3.4.1.46", "2.16.840.1.101.3.4.1.6", "2.16.840.1.101.3.4.1.42", "2.16.840.1.101.3.4.1.2"]
        .iter()
        .map(|o| SmimeCapability { capability_id: ObjectIdentifier::new_unwrap(o), parameters: None })
        .collect();
    let value = Any::encode_from(&caps).map_err(|e| CmsError::Malformed(e.to_string()))?;
    let mut values = SetOfVec::new();
    values.insert(value).map_err(|e| CmsError::Malformed(e.to_string()))?;
    Ok(Attribute { oid: rfc5911::SMIME_CAPABILITIES, values })
}

/// Sign `content` (already canonical) and return a DER ContentInfo with detached content.
pub fn sign_detached(
    signer: &TokenSigner<'_>,
    cert: &Certificate,
    chain: &[Certificate],
    content: &[u8],
    extra_attributes: Vec<Attribute>,
) -> Result<Vec<u8>, CmsError> {
    let hash = signer.scheme().hash();
    let digest = hash.digest(content);
    let eci = EncapsulatedContentInfo { econtent_type: rfc5911::ID_DATA, econtent: None };
    let digest_alg = AlgorithmIdentifierOwned { oid: hash.oid(), parameters: None };
    let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    });
    let internal = |e: &dyn std::fmt::Display| CmsError::Malformed(format!("building SignedData: {e}"));
    let mut sib = SignerInfoBuilder::new(signer, sid, digest_alg.clone(), &eci, Some(&digest)).map_err(|e| internal(&e))?;
    sib.add_signed_attribute(create_signing_time_attribute().map_err(|e| internal(&e))?).map_err(|e| internal(&e))?;
    sib.add_signed_attribute(smime_capabilities()?).map_err(|e| internal(&e))?;
    for a in extra_attributes {
        sib.add_signed_attribute(a).map_err(|e| internal(&e))?;
    }
    let mut builder = SignedDataBuilder::new(&eci);
    builder.add_digest_algorithm(digest_alg).map_err(|e| internal(&e))?;
    builder.add_certificate(CertificateChoices::Certificate(cert.clone())).map_err(|e| internal(&e))?;
    for c in chain {
        builder.add_certificate(CertificateChoices::Certificate(c.clone())).map_err(|e| internal(&e))?;
    }
    if let Err(e) = builder.add_signer_info::<_, TokenSignature>(sib) {
        // The token's own error says what went wrong (PIN, removal, mechanism); prefer it.
        return Err(match signer.take_failure() {
            Some(t) => CmsError::Token(t),
            None => internal(&e),
        });
    }
    let ci = builder.build().map_err(|e| internal(&e))?;
    ci.to_der().map_err(|e| internal(&e))
}

/// The digest OIDs we accept on verification; SHA-1 is refused (RFC 8551 §2.1).
pub fn digest_for(oid: &ObjectIdentifier) -> Option<crate::token::signer::Hash> {
    use crate::token::signer::Hash;
    match *oid {
        rfc5912::ID_SHA_256 => Some(Hash::Sha256),
        rfc5912::ID_SHA_384 => Some(Hash::Sha384),
        rfc5912::ID_SHA_512 => Some(Hash::Sha512),
        _ => None,
    }
}
