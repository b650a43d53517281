//! SignedData with attributes whose OIDs the `const-oid` 0.9 stack cannot hold: SSMAX mints its
//! attribute OIDs under the UUID arc 2.25 (X.667), whose 128-bit arc exceeds const-oid's u32 arcs,
//! so `cms::signed_data::SignedData` rejects such a message. These types keep attribute types as
//! raw DER and reuse `cms` / `x509-cert` for everything else. Any RustCrypto `Signer` signs.

use super::CmsError;
use cms::cert::CertificateChoices;
use cms::content_info::CmsVersion;
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier};
use const_oid::db::rfc5911;
use core::cmp::Ordering;
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Any, Decode, Encode, Sequence, ValueOrd};
use signature::Signer;
use spki::{AlgorithmIdentifierOwned, DynSignatureAlgorithmIdentifier, SignatureBitStringEncoding};

/// An attribute whose type is kept as raw DER (tag 06), so any OID fits.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct RawAttribute {
    pub oid: Any,
    pub values: SetOfVec<Any>,
}

impl ValueOrd for RawAttribute {
    fn value_cmp(&self, other: &Self) -> der::Result<Ordering> {
        use der::DerOrd;
        self.to_der()?.der_cmp(&other.to_der()?)
    }
}

impl RawAttribute {
    pub fn new(oid: &Oid, value: impl Encode) -> Result<Self, CmsError> {
        let mut values = SetOfVec::new();
        values.insert(Any::from_der(&value.to_der().map_err(enc)?).map_err(enc)?).map_err(enc)?;
        Ok(RawAttribute { oid: oid.to_any()?, values })
    }

    pub fn is(&self, oid: &Oid) -> bool {
        self.oid.value() == oid.0.as_slice()
    }

    /// The single value (RFC 5652 §11: these attributes have exactly one).
    pub fn value(&self) -> Result<&Any, CmsError> {
        match self.values.as_slice() {
            [v] => Ok(v),
            _ => Err(CmsError::Verify("a signed attribute must have exactly one value".into())),
        }
    }
}

/// An OID as its DER content bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Oid(pub Vec<u8>);

impl Oid {
    pub fn from_const(oid: ObjectIdentifier) -> Oid {
        Oid(oid.as_bytes().to_vec())
    }

    /// `2.25.<uuid>.<suffix...>`: a UUID arc (ITU-T X.667) and arcs below it.
    pub fn uuid(uuid: u128, suffix: &[u32]) -> Oid {
        let mut out = vec![40 * 2 + 25];
        base128(&mut out, uuid);
        for s in suffix {
            base128(&mut out, *s as u128);
        }
        Oid(out)
    }

    pub fn to_any(&self) -> Result<Any, CmsError> {
        Any::new(der::Tag::ObjectIdentifier, self.0.clone()).map_err(enc)
    }

    /// Dotted form, for documentation and messages.
    pub fn dotted(&self) -> String {
        let mut arcs: Vec<u128> = Vec::new();
        let mut cur: u128 = 0;
        for &b in &self.0 {
            cur = (cur << 7) | (b & 0x7f) as u128;
            if b & 0x80 == 0 {
                arcs.push(cur);
                cur = 0;
            }
        }
        let mut parts = Vec::new();
        if let Some(&first) = arcs.first() {
            let (a, b) = if first < 40 { (0, first) } else if first < 80 { (1, first - 40) } else { (2, first - 80) };
            parts.push(a.to_string());
            parts.push(b.to_string());
        }
        parts.extend(arcs.iter().skip(1).map(|a| a.to_string()));
        parts.join(".")
    }
}

fn base128(out: &mut Vec<u8>, mut v: u128) {
    let mut tmp = vec![(v & 0x7f) as u8];
    v >>= 7;
    while v > 0 {
        tmp.push(0x80 | (v & 0x7f) as u8);
        v >>= 7;
    }
    tmp.reverse();
    out.extend_from_slice(&tmp);
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SignerInfo {
    pub version: CmsVersion,
    pub sid: SignerIdentifier,
    pub digest_alg: AlgorithmIdentifierOwned,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub signed_attrs: Option<SetOfVec<RawAttribute>>,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: OctetString,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub unsigned_attrs: Option<SetOfVec<RawAttribute>>,
}

impl ValueOrd for SignerInfo {
    fn value_cmp(&self, other: &Self) -> der::Result<Ordering> {
        use der::DerOrd;
        self.to_der()?.der_cmp(&other.to_der()?)
    }
}

impl SignerInfo {
    pub fn attr(&self, oid: &Oid) -> Result<Option<&Any>, CmsError> {
        let Some(attrs) = &self.signed_attrs else { return Ok(None) };
        let mut found = attrs.iter().filter(|a| a.is(oid));
        let Some(a) = found.next() else { return Ok(None) };
        if found.next().is_some() {
            return Err(CmsError::Verify(format!("signed attribute {} appears twice (RFC 5652 §11)", oid.dotted())));
        }
        a.value().map(Some)
    }
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SignedData {
    pub version: CmsVersion,
    pub digest_algorithms: SetOfVec<AlgorithmIdentifierOwned>,
    pub encap_content_info: EncapsulatedContentInfo,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub certificates: Option<SetOfVec<CertificateChoices>>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub crls: Option<SetOfVec<Any>>,
    pub signer_infos: SetOfVec<SignerInfo>,
}

fn enc(e: der::Error) -> CmsError {
    CmsError::Malformed(format!("encoding CMS: {e}"))
}

pub fn parse(der: &[u8]) -> Result<SignedData, CmsError> {
    let ci = super::content_info(der)?;
    if ci.content_type != rfc5911::ID_SIGNED_DATA {
        return Err(CmsError::Malformed(format!("content type {} is not signed-data", ci.content_type)));
    }
    ci.content.decode_as().map_err(|e| CmsError::Malformed(format!("SignedData does not parse: {e}")))
}

/// What one signature covers and carries.
pub struct SignInput<'a> {
    /// The signed content, in pieces (hashed in order; never copied into one buffer here).
    pub content: &'a [&'a [u8]],
    /// Detached (multipart/signed) or encapsulated (opaque) content.
    pub detached: bool,
    pub digest: crate::token::signer::Hash,
    pub signer_cert: &'a x509_cert::Certificate,
    pub chain: &'a [x509_cert::Certificate],
    pub extra_attributes: Vec<RawAttribute>,
}

/// Build a DER ContentInfo(SignedData) with one signer: content type, signing time, message
/// digest, S/MIME capabilities and `extra_attributes` signed by `signer`.
pub fn sign<S, Sig>(signer: &S, input: SignInput<'_>, mut standard: Vec<RawAttribute>) -> Result<Vec<u8>, SignError>
where
    S: Signer<Sig> + DynSignatureAlgorithmIdentifier,
    Sig: SignatureBitStringEncoding,
{
    let digest = input.digest.digest_pieces(input.content);
    standard.push(RawAttribute::new(&Oid::from_const(rfc5911::ID_CONTENT_TYPE), rfc5911::ID_DATA)?);
    standard.push(RawAttribute::new(&Oid::from_const(rfc5911::ID_MESSAGE_DIGEST), OctetString::new(digest).map_err(enc)?)?);
    standard.extend(input.extra_attributes);
    let attrs = SetOfVec::try_from(standard).map_err(enc)?;
    let to_sign = attrs.to_der().map_err(enc)?;
    let sig = signer.try_sign(&to_sign).map_err(|_| SignError::Signer)?;
    let sig = sig.to_bitstring().map_err(enc)?;
    let signature = OctetString::new(sig.raw_bytes()).map_err(enc)?;
    let cert = input.signer_cert;
    let digest_alg = AlgorithmIdentifierOwned { oid: input.digest.oid(), parameters: None };
    let si = SignerInfo {
        version: CmsVersion::V1,
        sid: SignerIdentifier::IssuerAndSerialNumber(cms::cert::IssuerAndSerialNumber {
            issuer: cert.tbs_certificate.issuer.clone(),
            serial_number: cert.tbs_certificate.serial_number.clone(),
        }),
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(attrs),
        signature_algorithm: signer.signature_algorithm_identifier().map_err(|e| CmsError::Malformed(e.to_string()))?,
        signature,
        unsigned_attrs: None,
    };
    let mut certs = SetOfVec::new();
    for c in std::iter::once(cert).chain(input.chain) {
        let choice = CertificateChoices::Certificate(c.clone());
        if !certs.iter().any(|x| *x == choice) {
            certs.insert(choice).map_err(enc)?;
        }
    }
    let econtent = if input.detached { None } else { Some(Any::encode_from(&OctetString::new(input.content.concat()).map_err(enc)?).map_err(enc)?) };
    let sd = SignedData {
        version: CmsVersion::V1,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(enc)?,
        encap_content_info: EncapsulatedContentInfo { econtent_type: rfc5911::ID_DATA, econtent },
        certificates: Some(certs),
        crls: None,
        signer_infos: SetOfVec::try_from(vec![si]).map_err(enc)?,
    };
    let ci = cms::content_info::ContentInfo { content_type: rfc5911::ID_SIGNED_DATA, content: Any::from_der(&sd.to_der().map_err(enc)?).map_err(enc)? };
    Ok(ci.to_der().map_err(enc)?)
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(transparent)]
    Cms(#[from] CmsError),
    /// The signer failed; the caller holds the reason (e.g. the token's error).
    #[error("the signer failed")]
    Signer,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_oids_encode_like_x667_says() {
        // 2.25.329800735698586629295641978511506172918 is X.667's own example.
        let oid = Oid::uuid(329800735698586629295641978511506172918, &[]);
        assert_eq!(oid.dotted(), "2.25.329800735698586629295641978511506172918");
        assert_eq!(Oid::uuid(1, &[7]).dotted(), "2.25.1.7");
        assert_eq!(Oid::from_const(rfc5911::ID_DATA).dotted(), "1.2.840.113549.1.7.1");
    }
}
