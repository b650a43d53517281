//! CMS types the `cms` crate 0.2 lacks or gets wrong.
//!
//! - AuthEnvelopedData (RFC 5083) is missing.
//! - KeyAgreeRecipientIdentifier is declared as a SEQUENCE whose `rKeyId` is `[0] IMPLICIT`
//!   without `constructed`, so every key-agreement recipient named by subject key identifier
//!   (openssl `-keyid`) fails to parse. RFC 5652 §6.2.2 makes it a CHOICE of a constructed [0].
//!
//! - SET OF as received (`BerSetOf`): `der`'s SetOfVec refuses repeated elements (NSS carries
//!   the signer's certificate twice by default) and sorts by insertion.
//!
//! Everything else is reused from `cms`.

use super::signed::RawAttribute;
use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    EncryptedContentInfo, KekRecipientInfo, KeyTransRecipientInfo, OriginatorIdentifierOrKey, OriginatorInfo,
    OtherRecipientInfo, PasswordRecipientInfo, UserKeyingMaterial,
};
use core::cmp::Ordering;
use der::asn1::{GeneralizedTime, OctetString, SetOfVec};
use der::{Any, Choice, Encode, Sequence, ValueOrd};
use spki::AlgorithmIdentifierOwned;

/// A SET OF as received: any order, repeated elements kept, held in DER order (by each
/// element's encoding, sorted in n·log n) so that encoding it again gives the DER SET OF — what
/// RFC 5652 §5.4 checks a signature over when the signed attributes arrived in another order.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct BerSetOf<T>(Vec<T>);

impl<T: Encode> BerSetOf<T> {
    pub fn from_vec(elements: Vec<T>) -> der::Result<Self> {
        let mut keyed =
            elements.into_iter().map(|e| Ok((e.to_der()?, e))).collect::<der::Result<Vec<(Vec<u8>, T)>>>()?;
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(BerSetOf(keyed.into_iter().map(|(_, e)| e).collect()))
    }
}

impl<T> BerSetOf<T> {
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> der::FixedTag for BerSetOf<T> {
    const TAG: der::Tag = der::Tag::Set;
}

impl<'a, T: der::Decode<'a> + Encode> der::DecodeValue<'a> for BerSetOf<T> {
    fn decode_value<R: der::Reader<'a>>(reader: &mut R, header: der::Header) -> der::Result<Self> {
        use der::Reader as _;
        reader.read_nested(header.length, |r| {
            let mut elements = Vec::new();
            while !r.is_finished() {
                elements.push(T::decode(r)?);
            }
            Self::from_vec(elements)
        })
    }
}

impl<T: Encode> der::EncodeValue for BerSetOf<T> {
    fn value_len(&self) -> der::Result<der::Length> {
        self.0.iter().try_fold(der::Length::ZERO, |n, e| n + e.encoded_len()?)
    }

    fn encode_value(&self, w: &mut impl der::Writer) -> der::Result<()> {
        self.0.iter().try_for_each(|e| e.encode(w))
    }
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EnvelopedData {
    pub version: CmsVersion,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub originator_info: Option<OriginatorInfo>,
    pub recip_infos: SetOfVec<RecipientInfo>,
    pub encrypted_content: EncryptedContentInfo,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub unprotected_attrs: Option<BerSetOf<RawAttribute>>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct AuthEnvelopedData {
    pub version: CmsVersion,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub originator_info: Option<OriginatorInfo>,
    pub recip_infos: SetOfVec<RecipientInfo>,
    pub auth_encrypted_content_info: EncryptedContentInfo,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub auth_attrs: Option<BerSetOf<RawAttribute>>,
    pub mac: OctetString,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub unauth_attrs: Option<BerSetOf<RawAttribute>>,
}

#[derive(Clone, Debug, Eq, PartialEq, Choice)]
#[allow(clippy::large_enum_variant)]
pub enum RecipientInfo {
    Ktri(KeyTransRecipientInfo),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Kari(KeyAgreeRecipientInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", constructed = "true")]
    Kekri(KekRecipientInfo),
    #[asn1(context_specific = "3", tag_mode = "IMPLICIT", constructed = "true")]
    Pwri(PasswordRecipientInfo),
    #[asn1(context_specific = "4", tag_mode = "IMPLICIT", constructed = "true")]
    Ori(OtherRecipientInfo),
}

/// SET OF needs an order; DER order of the encodings, as RFC 5652 and the cms crate use.
impl ValueOrd for RecipientInfo {
    fn value_cmp(&self, other: &Self) -> der::Result<Ordering> {
        use der::DerOrd;
        self.to_der()?.der_cmp(&other.to_der()?)
    }
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct KeyAgreeRecipientInfo {
    pub version: CmsVersion,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub originator: OriginatorIdentifierOrKey,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    pub ukm: Option<UserKeyingMaterial>,
    pub key_enc_alg: AlgorithmIdentifierOwned,
    pub recipient_enc_keys: Vec<RecipientEncryptedKey>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct RecipientEncryptedKey {
    pub rid: KeyAgreeRecipientIdentifier,
    pub enc_key: OctetString,
}

#[derive(Clone, Debug, Eq, PartialEq, Choice)]
pub enum KeyAgreeRecipientIdentifier {
    IssuerAndSerialNumber(IssuerAndSerialNumber),
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true")]
    RKeyId(RecipientKeyIdentifier),
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct RecipientKeyIdentifier {
    pub subject_key_identifier: OctetString,
    #[asn1(optional = "true")]
    pub date: Option<GeneralizedTime>,
    /// OtherKeyAttribute; carried, never interpreted.
    #[asn1(optional = "true")]
    pub other: Option<Any>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use der::Decode;

    #[test]
    fn a_set_of_with_repeated_and_unsorted_elements_is_read_and_written_as_der() {
        // SET { INTEGER 5, INTEGER 3, INTEGER 5 }: unsorted, 5 twice.
        let ber = [0x31, 0x09, 0x02, 0x01, 0x05, 0x02, 0x01, 0x03, 0x02, 0x01, 0x05];
        assert!(SetOfVec::<u8>::from_der(&ber).is_err(), "der's SetOfVec refuses this; the reason BerSetOf exists");
        let set = BerSetOf::<u8>::from_der(&ber).unwrap();
        assert_eq!(set.as_slice(), &[3, 5, 5]);
        assert_eq!(set.to_der().unwrap(), [0x31, 0x09, 0x02, 0x01, 0x03, 0x02, 0x01, 0x05, 0x02, 0x01, 0x05]);
    }

    #[test]
    fn key_agreement_recipient_named_by_subject_key_identifier_round_trips() {
        let rid = KeyAgreeRecipientIdentifier::RKeyId(RecipientKeyIdentifier {
            subject_key_identifier: OctetString::new(vec![1, 2, 3]).unwrap(),
            date: None,
            other: None,
        });
        let der = rid.to_der().unwrap();
        assert_eq!(der[0], 0xa0, "[0] constructed");
        assert_eq!(KeyAgreeRecipientIdentifier::from_der(&der).unwrap(), rid);
    }
}
