//! Opening EnvelopedData and AuthEnvelopedData: find the recipient info for a key we hold, have
//! the token recover the content-encryption key (RSA key transport or ECDH key agreement), then
//! decrypt the content here (AES-CBC, AES-GCM, ChaCha20-Poly1305).

mod content;
mod envelope;
mod recipients;

use content::*;
pub use envelope::*;
use recipients::*;

use super::algorithms::*;
use super::asn1::{AuthEnvelopedData, EnvelopedData, KeyAgreeRecipientIdentifier, RecipientInfo};
use super::oaep::{self, OaepHash};
use super::{cert, CmsError};
use cms::enveloped_data::{EncryptedContentInfo, OriginatorIdentifierOrKey, RecipientIdentifier};
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode};
use x509_cert::Certificate;
use zeroize::Zeroizing;

pub const ID_CT_AUTH_ENVELOPED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.23");

/// RSA decryption the token is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaOp {
    Pkcs1v15,
    /// CKM_RSA_PKCS_OAEP with this hash for label and MGF1.
    Oaep(OaepHash),
    /// CKM_RSA_X_509: raw RSA, padding removed here.
    Raw,
}

/// The private-key side, as narrow as decryption needs. `certificates` is readable without a
/// PIN; the operations may ask for one on first use.
pub trait Decryptor {
    fn certificates(&self) -> &[Certificate];
    fn supports(&self, index: usize, op: RsaOp) -> bool;
    fn rsa_decrypt(&mut self, index: usize, op: RsaOp, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError>;
    /// The raw ECDH shared secret Z with the peer's uncompressed point.
    fn ecdh(&mut self, index: usize, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError>;
    /// Why this key holder cannot decrypt at all (JPKI), if so.
    fn cannot_decrypt(&self) -> Option<String> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentAlg {
    /// DES-EDE3-CBC: read so that old mail stays readable, never written.
    DesEde3Cbc,
    AesCbc(usize),
    AesGcm(usize),
    ChaCha20Poly1305,
}

impl ContentAlg {
    pub fn name(self) -> String {
        match self {
            ContentAlg::DesEde3Cbc => "DES-EDE3-CBC, a legacy algorithm".into(),
            ContentAlg::AesCbc(n) => format!("AES-{}-CBC", n * 8),
            ContentAlg::AesGcm(n) => format!("AES-{}-GCM", n * 8),
            ContentAlg::ChaCha20Poly1305 => "ChaCha20-Poly1305".into(),
        }
    }
}

#[derive(Debug)]
pub struct Opened {
    pub content: Vec<u8>,
    pub content_alg: ContentAlg,
    pub key_transport: &'static str,
    pub recipient: String,
}

/// Open an EnvelopedData or AuthEnvelopedData ContentInfo.
pub fn open(der: &[u8], keys: &mut dyn Decryptor) -> Result<Opened, CmsError> {
    Envelope::parse(der)?.open(keys)
}

impl Envelope {
    /// Recover the content key with `keys` and decrypt the content (a key that does not unwrap
    /// fails as the content does: `cek_for_reading`).
    pub fn open(self, keys: &mut dyn Decryptor) -> Result<Opened, CmsError> {
        let (cek, key_transport, recipient) = self.cek_for_reading(keys)?;
        let content_alg = self.content_alg()?;
        let content = self.into_plaintext(&cek)?;
        Ok(Opened { content, content_alg, key_transport, recipient })
    }
}
