//! CMS types the `cms` crate 0.2 lacks or gets wrong.
//!
//! - AuthEnvelopedData (RFC 5083) is missing.
//! - KeyAgreeRecipientIdentifier is declared as a SEQUENCE whose `rKeyId` is `[0] IMPLICIT`
//!   without `constructed`, so every key-agreement recipient named by subject key identifier
//!   (openssl `-keyid`) fails to parse. RFC 5652 §6.2.2 makes it a CHOICE of a constructed [0].
//!
//! Everything else is reused from `cms`.

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::CmsVersion;
use cms::enveloped_data::{
    EncryptedContentInfo, KekRecipientInfo, KeyTransRecipientInfo, OriginatorIdentifierOrKey, OriginatorInfo, OtherRecipientInfo,
    PasswordRecipientInfo, UserKeyingMaterial,
};
use core::cmp::Ordering;
use der::asn1::{GeneralizedTime, OctetString, SetOfVec};
use der::{Any, Choice, Sequence, ValueOrd};
use spki::AlgorithmIdentifierOwned;
use x509_cert::attr::Attributes;

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EnvelopedData {
    pub version: CmsVersion,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub originator_info: Option<OriginatorInfo>,
    pub recip_infos: SetOfVec<RecipientInfo>,
    pub encrypted_content: EncryptedContentInfo,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub unprotected_attrs: Option<Attributes>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct AuthEnvelopedData {
    pub version: CmsVersion,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub originator_info: Option<OriginatorInfo>,
    pub recip_infos: SetOfVec<RecipientInfo>,
    pub auth_encrypted_content_info: EncryptedContentInfo,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub auth_attrs: Option<Attributes>,
    pub mac: OctetString,
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT", constructed = "true", optional = "true")]
    pub unauth_attrs: Option<Attributes>,
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
        use der::{DerOrd, Encode};
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
    use der::{Decode, Encode};

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
