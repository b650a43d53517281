//! SignedData with attributes whose OIDs the `const-oid` 0.9 stack cannot hold: SSMAX mints its
//! attribute OIDs under the UUID arc 2.25 (X.667), whose 128-bit arc exceeds const-oid's u32 arcs,
//! so `cms::signed_data::SignedData` rejects such a message. These types keep attribute types as
//! raw DER and reuse `cms` / `x509-cert` for everything else. Any RustCrypto `Signer` signs.

use super::asn1::BerSetOf;
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
    pub values: BerSetOf<Any>,
}

impl ValueOrd for RawAttribute {
    fn value_cmp(&self, other: &Self) -> der::Result<Ordering> {
        use der::DerOrd;
        self.to_der()?.der_cmp(&other.to_der()?)
    }
}

impl RawAttribute {
    pub fn new(oid: &Oid, value: impl Encode) -> Result<Self, CmsError> {
        let values =
            BerSetOf::from_vec(vec![Any::from_der(&value.to_der().map_err(enc)?).map_err(enc)?]).map_err(enc)?;
        Ok(RawAttribute { oid: oid.to_any()?, values })
    }

    pub fn is(&self, oid: &Oid) -> bool {
        // The type must be an OBJECT IDENTIFIER: the same bytes under another tag are not it.
        der::Tagged::tag(&self.oid) == der::Tag::ObjectIdentifier && self.oid.value() == oid.0.as_slice()
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
            let (a, b) = if first < 40 {
                (0, first)
            } else if first < 80 {
                (1, first - 40)
            } else {
                (2, first - 80)
            };
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
    pub signed_attrs: Option<BerSetOf<RawAttribute>>,
    pub signature_algorithm: AlgorithmIdentifierOwned,
    pub signature: OctetString,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub unsigned_attrs: Option<BerSetOf<RawAttribute>>,
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
    pub digest_algorithms: BerSetOf<AlgorithmIdentifierOwned>,
    pub encap_content_info: EncapsulatedContentInfo,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub certificates: Option<BerSetOf<CertificateChoices>>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub crls: Option<BerSetOf<Any>>,
    pub signer_infos: BerSetOf<SignerInfo>,
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

/// The content an opaque signature carries: an id-data eContent's octets (other types carry
/// their DER), or None when it is detached.
pub fn econtent(sd: &SignedData) -> Option<Vec<u8>> {
    sd.encap_content_info.econtent.as_ref().map(|c| {
        der::asn1::OctetString::from_der(&c.to_der().unwrap_or_default())
            .map(|o| o.as_bytes().to_vec())
            .unwrap_or_else(|_| c.value().to_vec())
    })
}

/// What one signature covers and carries.
pub struct SignInput<'a> {
    /// The signed content, in pieces (hashed in order; never copied into one buffer here).
    pub content: &'a [&'a [u8]],
    /// Detached (multipart/signed) or encapsulated (opaque) content.
    pub detached: bool,
    pub digest: crate::cms::digest::Hash,
    /// The content's SHA-256, when the caller took it already (beside the canonical check,
    /// before the token was needed); used when `digest` is SHA-256.
    pub sha256: Option<&'a [u8]>,
    pub signer_cert: &'a x509_cert::Certificate,
    /// The certificates to carry (the signer's and its chain), as the DER they were read as: any
    /// order, duplicates allowed. Spliced in as they are: encoding the parsed certificates again
    /// was a fifth of the agent's own work on a small signature.
    pub certificates: &'a [&'a [u8]],
    pub extra_attributes: Vec<RawAttribute>,
}

/// Build a DER ContentInfo(SignedData) with one signer: content type, signing time, message
/// digest, S/MIME capabilities and `extra_attributes` signed by `signer`.
pub fn sign<S, Sig>(signer: &S, input: SignInput<'_>, mut standard: Vec<RawAttribute>) -> Result<Vec<u8>, SignError>
where
    S: Signer<Sig> + DynSignatureAlgorithmIdentifier,
    Sig: SignatureBitStringEncoding,
{
    let digest = match input.sha256 {
        Some(d) if input.digest == crate::cms::digest::Hash::Sha256 => d.to_vec(),
        _ => input.digest.digest_pieces(input.content),
    };
    standard.push(RawAttribute::new(&Oid::from_const(rfc5911::ID_CONTENT_TYPE), rfc5911::ID_DATA)?);
    standard
        .push(RawAttribute::new(&Oid::from_const(rfc5911::ID_MESSAGE_DIGEST), OctetString::new(digest).map_err(enc)?)?);
    standard.extend(input.extra_attributes);
    let attrs = BerSetOf::from_vec(standard).map_err(enc)?;
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
    let econtent = if input.detached {
        None
    } else {
        Some(Any::encode_from(&OctetString::new(input.content.concat()).map_err(enc)?).map_err(enc)?)
    };
    let sd = SignedDataOut {
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).map_err(enc)?,
        encap_content_info: EncapsulatedContentInfo { econtent_type: rfc5911::ID_DATA, econtent },
        certificates: CertificateSetDer::new(input.certificates).map_err(enc)?,
        signer_infos: SetOfVec::try_from(vec![si]).map_err(enc)?,
    };
    let sd = sd.to_der().map_err(enc)?;
    let ci = super::ContentInfoRef {
        content_type: rfc5911::ID_SIGNED_DATA,
        content: der::AnyRef::from_der(&sd).map_err(enc)?,
    };
    Ok(ci.to_der().map_err(enc)?)
}

/// `SignedData` as we write it: version 1, no CRLs, certificates as DER already.
struct SignedDataOut<'a> {
    digest_algorithms: SetOfVec<AlgorithmIdentifierOwned>,
    encap_content_info: EncapsulatedContentInfo,
    certificates: CertificateSetDer<'a>,
    signer_infos: SetOfVec<SignerInfo>,
}

impl der::FixedTag for SignedDataOut<'_> {
    const TAG: der::Tag = der::Tag::Sequence;
}

impl der::EncodeValue for SignedDataOut<'_> {
    fn value_len(&self) -> der::Result<der::Length> {
        CmsVersion::V1.encoded_len()?
            + self.digest_algorithms.encoded_len()?
            + self.encap_content_info.encoded_len()?
            + self.certificates.encoded_len()?
            + self.signer_infos.encoded_len()?
    }

    fn encode_value(&self, w: &mut impl der::Writer) -> der::Result<()> {
        CmsVersion::V1.encode(w)?;
        self.digest_algorithms.encode(w)?;
        self.encap_content_info.encode(w)?;
        self.certificates.encode(w)?;
        self.signer_infos.encode(w)
    }
}

/// `certificates [0] IMPLICIT CertificateSet` from certificates' DER: each checked to be one
/// certificate, duplicates dropped, in the order DER gives a SET OF (by their encodings).
struct CertificateSetDer<'a> {
    sorted: Vec<&'a [u8]>,
    len: der::Length,
}

impl<'a> CertificateSetDer<'a> {
    fn new(certs: &[&'a [u8]]) -> der::Result<Self> {
        for c in certs {
            // One whole TLV each (callers pass the DER a certificate was parsed from; parsing it
            // again here would cost what splicing saves).
            let h = der::Header::decode(&mut der::SliceReader::new(c)?)?;
            if h.tag != der::Tag::Sequence || usize::try_from((h.encoded_len()? + h.length)?)? != c.len() {
                return Err(der::ErrorKind::Length { tag: der::Tag::Sequence }.into());
            }
        }
        let mut sorted = certs.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let len = sorted.iter().try_fold(der::Length::ZERO, |n, c| n + der::Length::try_from(c.len())?)?;
        Ok(CertificateSetDer { sorted, len })
    }
}

impl Encode for CertificateSetDer<'_> {
    fn encoded_len(&self) -> der::Result<der::Length> {
        self.len.for_tlv()
    }

    fn encode(&self, w: &mut impl der::Writer) -> der::Result<()> {
        der::Header::new(der::Tag::ContextSpecific { constructed: true, number: der::TagNumber::N0 }, self.len)?
            .encode(w)?;
        self.sorted.iter().try_for_each(|c| w.write(c))
    }
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
    fn carried_certificates_are_the_given_der_once_each_in_set_order() {
        use rsa::pkcs8::DecodePrivateKey;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("softhsm-tests/interop-vectors/examples-cms/certs-and-keys");
        let der_of = |name: &str| crate::cms::cert::load_file(&dir.join(name)).unwrap().remove(0);
        let (alice, bob) = (der_of("lamps-alice.crt"), der_of("lamps-bob.encrypt.crt"));
        let alice_cert = x509_cert::Certificate::from_der(&alice).unwrap();
        let pem = std::fs::read_to_string(dir.join("lamps-alice.p8.pem")).unwrap();
        let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa::RsaPrivateKey::from_pkcs8_pem(&pem).unwrap());
        // The signer's certificate twice (as leaf and again in a chain), in the wrong order.
        let given: Vec<&[u8]> = vec![&bob, &alice, &alice];
        let input = SignInput {
            content: &[b"hello"],
            detached: true,
            digest: crate::cms::digest::Hash::Sha256,
            sha256: None,
            signer_cert: &alice_cert,
            certificates: &given,
            extra_attributes: vec![],
        };
        let der = sign::<_, rsa::pkcs1v15::Signature>(&key, input, vec![]).unwrap();
        // Decoding a SET OF checks its DER order; the certificates come back byte for byte.
        let sd = parse(&der).unwrap();
        let carried: Vec<Vec<u8>> = sd.certificates.unwrap().iter().map(|c| c.to_der().unwrap()).collect();
        let mut expected = vec![alice.clone(), bob.clone()];
        expected.sort();
        assert_eq!(carried, expected);
        // Anything but one whole certificate-shaped TLV is refused, not spliced in.
        let mut trailing = alice.clone();
        trailing.push(0);
        let bad: Vec<&[u8]> = vec![&trailing];
        let input = SignInput {
            content: &[b"hello"],
            detached: true,
            digest: crate::cms::digest::Hash::Sha256,
            sha256: None,
            signer_cert: &alice_cert,
            certificates: &bad,
            extra_attributes: vec![],
        };
        assert!(sign::<_, rsa::pkcs1v15::Signature>(&key, input, vec![]).is_err());
    }

    #[test]
    fn uuid_oids_encode_like_x667_says() {
        // 2.25.329800735698586629295641978511506172918 is X.667's own example.
        let oid = Oid::uuid(329800735698586629295641978511506172918, &[]);
        assert_eq!(oid.dotted(), "2.25.329800735698586629295641978511506172918");
        assert_eq!(Oid::uuid(1, &[7]).dotted(), "2.25.1.7");
        assert_eq!(Oid::from_const(rfc5911::ID_DATA).dotted(), "1.2.840.113549.1.7.1");
    }
}
