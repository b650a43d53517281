//! Opening EnvelopedData and AuthEnvelopedData: find the recipient info for a key we hold, have
//! the token recover the content-encryption key (RSA key transport or ECDH key agreement), then
//! decrypt the content here (AES-CBC, AES-GCM, ChaCha20-Poly1305).

use super::asn1::{AuthEnvelopedData, EnvelopedData, KeyAgreeRecipientIdentifier, RecipientInfo};
use super::oaep::{self, OaepHash};
use super::{cert, CmsError};
use cms::enveloped_data::{EncryptedContentInfo, OriginatorIdentifierOrKey, RecipientIdentifier};
use const_oid::db::{rfc5911, rfc5912};
use der::asn1::{ObjectIdentifier, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence};
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

pub(crate) const ID_RSAES_OAEP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.7");
pub(crate) const ID_MGF1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.8");
pub(crate) const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_CHACHA20_POLY1305: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.3.18");
const ID_P_SPECIFIED: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.9");

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
struct EccCmsSharedInfo {
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

/// A parsed EnvelopedData or AuthEnvelopedData: what opening and re-keying need.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub authenticated: bool,
    pub originator_info: Option<cms::enveloped_data::OriginatorInfo>,
    pub infos: SetOfVec<RecipientInfo>,
    pub eci: EncryptedContentInfo,
    pub auth_attrs: Option<x509_cert::attr::Attributes>,
    pub mac: Option<OctetString>,
    pub other_attrs: Option<x509_cert::attr::Attributes>,
}

/// (header, header length, content length) of the TLV at `pos`, which must fit in `der`.
fn tlv_at(der: &[u8], pos: usize) -> Option<(der::Header, usize, usize)> {
    use der::Decode;
    let h = der::Header::decode(&mut der::SliceReader::new(der.get(pos..)?).ok()?).ok()?;
    let hl = usize::try_from(der::Encode::encoded_len(&h).ok()?).ok()?;
    let cl = usize::try_from(h.length).ok()?;
    (pos + hl + cl <= der.len()).then_some((h, hl, cl))
}

/// The outline of an (Auth)EnvelopedData ContentInfo up to its RecipientInfos. None when the
/// structure is not the expected one (the typed parser then says what is wrong).
struct Outline {
    /// (where, header, header length, content length) of the ContentInfo, its [0] and the
    /// envelope SEQUENCE: each encloses the next.
    enclosing: Vec<(usize, der::Header, usize, usize)>,
    /// Where the RecipientInfos SET starts, its header length and content length.
    set: (usize, usize, usize),
}

fn outline(der: &[u8]) -> Option<Outline> {
    use der::Tag;
    let tlv = |pos| tlv_at(der, pos);
    let (h, hl, cl) = tlv(0)?;
    (h.tag == Tag::Sequence).then_some(())?;
    let mut enclosing = vec![(0, h, hl, cl)];
    let (_, thl, tcl) = tlv(hl)?; // contentType
    let mut pos = hl + thl + tcl;
    for _ in 0..2 {
        let (h, hl, cl) = tlv(pos)?; // [0] EXPLICIT, then the (Auth)EnvelopedData SEQUENCE
        enclosing.push((pos, h, hl, cl));
        pos += hl;
    }
    let (_, vhl, vcl) = tlv(pos)?; // version
    pos += vhl + vcl;
    let (mut h, mut hl, mut cl) = tlv(pos)?;
    if h.tag != Tag::Set {
        pos += hl + cl; // originatorInfo [0]
        (h, hl, cl) = tlv(pos)?;
    }
    (h.tag == Tag::Set).then_some(Outline { enclosing, set: (pos, hl, cl) })
}

/// Where the RecipientInfos are: the SET's content and each element, as byte ranges.
fn recipient_elements(der: &[u8]) -> Option<(std::ops::Range<usize>, Vec<std::ops::Range<usize>>)> {
    let (pos, hl, cl) = outline(der)?.set;
    let content = pos + hl..pos + hl + cl;
    let mut elements = Vec::new();
    let mut at = content.start;
    while at < content.end {
        let (_, ehl, ecl) = tlv_at(der, at)?;
        elements.push(at..at + ehl + ecl);
        at += ehl + ecl;
    }
    (at == content.end).then_some((content, elements))
}

/// Where the encryptedContent of an (Auth)EnvelopedData ContentInfo is, and the same DER without
/// it: the four enclosing lengths shortened, nothing else changed. The content is one primitive
/// `[0]`, or a constructed `[0]` of OCTET STRING chunks as BER writers send it (ber.rs leaves
/// the IMPLICIT tag alone); the chunks' contents are returned in order. None when the field is
/// not where the schema puts it (the typed parser then judges).
fn without_content(der: &[u8]) -> Option<(Vec<u8>, Vec<std::ops::Range<usize>>)> {
    use der::{Encode, Header, Tag, TagNumber};
    let tlv = |pos| tlv_at(der, pos);
    let Outline { mut enclosing, set: (set_at, set_hl, set_cl) } = outline(der)?;
    let mut pos = set_at + set_hl + set_cl;
    let (h, hl, cl) = tlv(pos)?;
    (h.tag == Tag::Sequence).then_some(())?;
    enclosing.push((pos, h, hl, cl));
    let eci_end = pos + hl + cl;
    pos += hl;
    for _ in 0..2 {
        let (_, fhl, fcl) = tlv(pos)?; // contentType, contentEncryptionAlgorithm
        pos += fhl + fcl;
    }
    let (h, hl, cl) = tlv(pos)?;
    (pos + hl + cl == eci_end).then_some(())?;
    let field = pos..eci_end;
    let content = if h.tag == (Tag::ContextSpecific { constructed: false, number: TagNumber::N0 }) {
        std::iter::once(pos + hl..eci_end).collect()
    } else if h.tag == (Tag::ContextSpecific { constructed: true, number: TagNumber::N0 }) {
        let mut chunks = Vec::new();
        let mut at = pos + hl;
        while at < eci_end {
            let (c, chl, ccl) = tlv(at)?;
            (c.tag == Tag::OctetString).then_some(())?;
            chunks.push(at + chl..at + chl + ccl);
            at += chl + ccl;
        }
        chunks
    } else {
        return None;
    };
    // From the inside out: a shorter length can take fewer bytes to write, and the header
    // around it then shrinks by that much more.
    let mut shrink = field.len();
    let mut headers = Vec::with_capacity(4);
    for &(_, h, hl, cl) in enclosing.iter().rev() {
        let mut new = Vec::with_capacity(hl);
        Header::new(h.tag, cl.checked_sub(shrink)?).ok()?.encode_to_vec(&mut new).ok()?;
        shrink += hl.checked_sub(new.len())?;
        headers.push(new);
    }
    let mut out = Vec::with_capacity(der.len() - shrink);
    let mut copied = 0;
    for (&(at, _, hl, _), new) in enclosing.iter().zip(headers.iter().rev()) {
        out.extend_from_slice(&der[copied..at]);
        out.extend_from_slice(new);
        copied = at + hl;
    }
    out.extend_from_slice(&der[copied..field.start]);
    out.extend_from_slice(&der[field.end..]);
    Some((out, content))
}

impl Envelope {
    /// An envelope from BER or DER; see `parse_owned`.
    pub fn parse(input: &[u8]) -> Result<Envelope, CmsError> {
        Self::parse_owned(input.to_vec())
    }

    /// An envelope from BER or DER, taking the buffer: the encrypted content stays in it (its
    /// chunks moved to the front) instead of being copied out, so a large DER mail is in memory
    /// once; BER is rewritten as DER first (ber.rs), one more copy while both exist.
    pub fn parse_owned(mut der: Vec<u8>) -> Result<Envelope, CmsError> {
        if let Some(normalized) = super::ber::normalize(&der)? {
            der = normalized;
        }
        // Bounds first: this is where a list of recipients would otherwise be sorted (bounds.rs).
        super::bounds::check(&der)?;
        let Some((rest, chunks)) = without_content(&der) else { return Self::parse_sorted(&der) };
        let mut env = Self::parse_sorted(&rest)?;
        let mut len = 0;
        for chunk in chunks {
            let n = chunk.len();
            der.copy_within(chunk, len);
            len += n;
        }
        der.truncate(len);
        der.shrink_to_fit();
        env.eci.encrypted_content =
            Some(OctetString::new(der).map_err(|e| CmsError::Malformed(format!("encrypted content: {e}")))?);
        Ok(env)
    }

    /// The typed parse of DER, after putting a long list of recipients in order.
    fn parse_sorted(der: &[u8]) -> Result<Envelope, CmsError> {
        // The DER parser sorts a SET OF by insertion, re-encoding both sides of every comparison:
        // a mail to a long list arrives in sender order and costs n²/2 comparisons (~0.9 s for
        // 1000). Order the RecipientInfos with the parser's own comparison, but in n·log n
        // comparisons, in a copy; the parser then only confirms the order (n - 1 comparisons).
        // Recipients are not covered by any MAC, so their order carries no meaning.
        if let Some((set, elements)) = recipient_elements(der).filter(|(_, e)| e.len() > 64) {
            let decoded: Option<Vec<RecipientInfo>> =
                elements.iter().map(|r| RecipientInfo::from_der(&der[r.clone()]).ok()).collect();
            if let Some(decoded) = decoded {
                use der::DerOrd;
                let before = |a: &RecipientInfo, b: &RecipientInfo| a.der_cmp(b).unwrap_or(std::cmp::Ordering::Equal);
                if decoded.windows(2).any(|w| before(&w[0], &w[1]) == std::cmp::Ordering::Greater) {
                    let mut order: Vec<usize> = (0..decoded.len()).collect();
                    order.sort_by(|&a, &b| before(&decoded[a], &decoded[b]));
                    let mut copy = der.to_vec();
                    let mut at = set.start;
                    for i in order {
                        let r = elements[i].clone();
                        copy[at..at + r.len()].copy_from_slice(&der[r.clone()]);
                        at += r.len();
                    }
                    return Self::parse_checked(&copy);
                }
            }
        }
        Self::parse_checked(der)
    }

    fn parse_checked(der: &[u8]) -> Result<Envelope, CmsError> {
        // Borrow the content: an owned ContentInfo would be one more copy of a large mail.
        let ci = super::ContentInfoRef::from_der(der)
            .map_err(|e| CmsError::Malformed(format!("not a CMS ContentInfo: {e}")))?;
        if ci.content_type == rfc5911::ID_ENVELOPED_DATA {
            let ed: EnvelopedData = ci
                .content
                .decode_as()
                .map_err(|e| CmsError::Malformed(format!("EnvelopedData does not parse: {e}")))?;
            Ok(Envelope {
                authenticated: false,
                originator_info: ed.originator_info,
                infos: ed.recip_infos,
                eci: ed.encrypted_content,
                auth_attrs: None,
                mac: None,
                other_attrs: ed.unprotected_attrs,
            })
        } else if ci.content_type == ID_CT_AUTH_ENVELOPED_DATA {
            let ad: AuthEnvelopedData = ci
                .content
                .decode_as()
                .map_err(|e| CmsError::Malformed(format!("AuthEnvelopedData does not parse: {e}")))?;
            Ok(Envelope {
                authenticated: true,
                originator_info: ad.originator_info,
                infos: ad.recip_infos,
                eci: ad.auth_encrypted_content_info,
                auth_attrs: ad.auth_attrs,
                mac: Some(ad.mac),
                other_attrs: ad.unauth_attrs,
            })
        } else {
            Err(CmsError::Malformed(format!(
                "content type {} is neither enveloped-data nor auth-enveloped-data",
                ci.content_type
            )))
        }
    }

    /// The content-encryption key, recovered by the key holder (the token's key never leaves it).
    pub fn recover_cek(
        &self,
        keys: &mut dyn Decryptor,
    ) -> Result<(Zeroizing<Vec<u8>>, &'static str, String), CmsError> {
        if let Some(why) = keys.cannot_decrypt() {
            return Err(CmsError::NoKey(why));
        }
        // Refuse unsupported content before anyone is asked for a PIN.
        content_alg(&self.eci, self.authenticated)?;
        recover_cek(&self.infos, keys)
    }

    pub fn content_alg(&self) -> Result<ContentAlg, CmsError> {
        content_alg(&self.eci, self.authenticated)
    }

    pub fn decrypt(&self, cek: &[u8]) -> Result<Vec<u8>, CmsError> {
        self.clone().into_plaintext(cek)
    }

    /// Decrypt in place: the ciphertext buffer becomes the plaintext (no second copy of a large mail).
    pub fn into_plaintext(mut self, cek: &[u8]) -> Result<Vec<u8>, CmsError> {
        let alg = content_alg(&self.eci, self.authenticated)?;
        let auth = match (&self.auth_attrs, &self.mac) {
            (attrs, Some(mac)) => Some((
                attrs.as_ref().map(|a| a.to_der()).transpose().map_err(|e| CmsError::Malformed(e.to_string()))?,
                mac.as_bytes().to_vec(),
            )),
            _ => None,
        };
        let ciphertext =
            self.eci.encrypted_content.take().ok_or_else(|| {
                CmsError::Malformed("no encrypted content (detached content is not supported)".into())
            })?;
        decrypt_content(alg, &self.eci, cek, ciphertext.into_bytes(), auth.as_ref())
    }

    /// The same envelope — same encrypted content, same MAC — for new recipients only.
    pub fn with_recipients(&self, infos: Vec<RecipientInfo>) -> Result<Vec<u8>, CmsError> {
        self.clone().into_der(infos)
    }

    /// The envelope for `infos`, encoded straight into one buffer of its final size (a 40 MiB
    /// attachment is not copied into an intermediate encoding and then again into the ContentInfo).
    pub fn into_der(self, infos: Vec<RecipientInfo>) -> Result<Vec<u8>, CmsError> {
        let enc = |e: der::Error| CmsError::Malformed(format!("encoding the envelope: {e}"));
        let set = SetOfVec::try_from(infos).map_err(enc)?;
        if self.authenticated {
            let mac = self.mac.ok_or_else(|| CmsError::Malformed("auth-enveloped data without a MAC".into()))?;
            let ad = AuthEnvelopedData {
                version: cms::content_info::CmsVersion::V0,
                originator_info: self.originator_info,
                recip_infos: set,
                auth_encrypted_content_info: self.eci,
                auth_attrs: self.auth_attrs,
                mac,
                unauth_attrs: self.other_attrs,
            };
            content_info_der(ID_CT_AUTH_ENVELOPED_DATA, &ad).map_err(enc)
        } else {
            let version = if self.originator_info.is_some()
                || self.other_attrs.is_some()
                || set.iter().any(|r| !matches!(r, RecipientInfo::Ktri(_)))
            {
                cms::content_info::CmsVersion::V2
            } else {
                cms::content_info::CmsVersion::V0
            };
            let ed = EnvelopedData {
                version,
                originator_info: self.originator_info,
                recip_infos: set,
                encrypted_content: self.eci,
                unprotected_attrs: self.other_attrs,
            };
            content_info_der(rfc5911::ID_ENVELOPED_DATA, &ed).map_err(enc)
        }
    }

    /// The raw encrypted content bytes (what re-keying must leave identical).
    #[cfg(test)]
    pub fn ciphertext(&self) -> &[u8] {
        self.eci.encrypted_content.as_ref().map(|o| o.as_bytes()).unwrap_or(&[])
    }
}

/// ContentInfo { content_type, [0] EXPLICIT content } written into one buffer of the final size.
fn content_info_der(content_type: ObjectIdentifier, content: &impl Encode) -> der::Result<Vec<u8>> {
    use der::{Header, Tag, TagNumber};
    let inner_len = content.encoded_len()?;
    let explicit = Header::new(Tag::ContextSpecific { constructed: true, number: TagNumber::N0 }, inner_len)?;
    let seq_len = (content_type.encoded_len()? + explicit.encoded_len()?)? + inner_len;
    let seq_len = seq_len?;
    let seq = Header::new(Tag::Sequence, seq_len)?;
    let total = (seq.encoded_len()? + seq_len)?;
    let mut out = Vec::with_capacity(usize::try_from(total)?);
    seq.encode_to_vec(&mut out)?;
    content_type.encode_to_vec(&mut out)?;
    explicit.encode_to_vec(&mut out)?;
    content.encode_to_vec(&mut out)?;
    Ok(out)
}

/// Open an EnvelopedData or AuthEnvelopedData ContentInfo.
pub fn open(der: &[u8], keys: &mut dyn Decryptor) -> Result<Opened, CmsError> {
    let env = Envelope::parse(der)?;
    let (cek, key_transport, recipient) = env.recover_cek(keys)?;
    let content_alg = env.content_alg()?;
    let content = env.into_plaintext(&cek)?;
    Ok(Opened { content, content_alg, key_transport, recipient })
}

/// Find the recipient info addressed to one of our certificates and have the token unwrap the key.
fn recover_cek(
    infos: &SetOfVec<RecipientInfo>,
    keys: &mut dyn Decryptor,
) -> Result<(Zeroizing<Vec<u8>>, &'static str, String), CmsError> {
    let certs: Vec<Certificate> = keys.certificates().to_vec();
    let matches_ias = |ias: &cms::cert::IssuerAndSerialNumber, c: &Certificate| {
        c.tbs_certificate.issuer == ias.issuer && c.tbs_certificate.serial_number == ias.serial_number
    };
    let matches_ski = |ski: &[u8], c: &Certificate| cert::subject_key_id(c).as_deref() == Some(ski);
    let mut kinds_seen = Vec::new();
    for ri in infos.iter() {
        match ri {
            RecipientInfo::Ktri(k) => {
                kinds_seen.push("key transport");
                let idx = certs.iter().position(|c| match &k.rid {
                    RecipientIdentifier::IssuerAndSerialNumber(ias) => matches_ias(ias, c),
                    RecipientIdentifier::SubjectKeyIdentifier(ski) => matches_ski(ski.0.as_bytes(), c),
                });
                let Some(idx) = idx else { continue };
                let who = cert::subject(&certs[idx]);
                let enc = k.enc_key.as_bytes();
                let (cek, name) = if k.key_enc_alg.oid == rfc5912::RSA_ENCRYPTION {
                    (keys.rsa_decrypt(idx, RsaOp::Pkcs1v15, enc)?, "RSA PKCS#1 v1.5")
                } else if k.key_enc_alg.oid == ID_RSAES_OAEP {
                    let (hash, mgf, label) = oaep_params(&k.key_enc_alg)?;
                    let name = match hash {
                        OaepHash::Sha1 => "RSA-OAEP (SHA-1)",
                        OaepHash::Sha256 => "RSA-OAEP (SHA-256)",
                        OaepHash::Sha384 => "RSA-OAEP (SHA-384)",
                        OaepHash::Sha512 => "RSA-OAEP (SHA-512)",
                    };
                    if hash == mgf && label.is_empty() && keys.supports(idx, RsaOp::Oaep(hash)) {
                        (keys.rsa_decrypt(idx, RsaOp::Oaep(hash), enc)?, name)
                    } else if keys.supports(idx, RsaOp::Raw) {
                        // The token lacks this OAEP variant: raw RSA on the token, unpadding here.
                        let k_len = rsa_modulus_len(&certs[idx])?;
                        let em = keys.rsa_decrypt(idx, RsaOp::Raw, enc)?;
                        let m = oaep::decode(&em, k_len, hash, mgf, &label).ok_or_else(|| {
                            CmsError::Decrypt(
                                "the content key does not unwrap with the key on the token (OAEP padding check failed)"
                                    .into(),
                            )
                        })?;
                        (m, name)
                    } else {
                        return Err(CmsError::CannotDecrypt(format!(
                            "the token offers neither OAEP with {} nor raw RSA",
                            hash.name()
                        )));
                    }
                } else {
                    return Err(CmsError::CannotDecrypt(format!("key transport algorithm {}", k.key_enc_alg.oid)));
                };
                return Ok((cek, name, who));
            }
            RecipientInfo::Kari(kari) => {
                kinds_seen.push("key agreement");
                for rek in &kari.recipient_enc_keys {
                    let idx = certs.iter().position(|c| match &rek.rid {
                        KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias) => matches_ias(ias, c),
                        KeyAgreeRecipientIdentifier::RKeyId(r) => matches_ski(r.subject_key_identifier.as_bytes(), c),
                    });
                    let Some(idx) = idx else { continue };
                    let who = cert::subject(&certs[idx]);
                    let OriginatorIdentifierOrKey::OriginatorKey(opk) = &kari.originator else {
                        return Err(CmsError::CannotDecrypt("key agreement with a static originator key".into()));
                    };
                    let point = opk
                        .public_key
                        .as_bytes()
                        .ok_or_else(|| CmsError::Malformed("originator key is not whole bytes".into()))?;
                    let (kdf_hash, wrap) = kari_algs(&kari.key_enc_alg)?;
                    let z = keys.ecdh(idx, point)?;
                    let kek = x963_kdf(kdf_hash, &z, &wrap, kari.ukm.as_ref().map(|u| u.as_bytes()))?;
                    let cek = aes_unwrap(&kek, rek.enc_key.as_bytes())?;
                    return Ok((cek, "ECDH ephemeral-static + AES key wrap", who));
                }
            }
            RecipientInfo::Kekri(_) => kinds_seen.push("pre-shared key (KEKRecipientInfo)"),
            RecipientInfo::Pwri(_) => kinds_seen.push("password (PasswordRecipientInfo)"),
            RecipientInfo::Ori(_) => kinds_seen.push("other recipient type"),
        }
    }
    let ours: Vec<String> =
        certs.iter().map(|c| format!("{} (serial {})", cert::subject(c), c.tbs_certificate.serial_number)).collect();
    Err(CmsError::NoKey(format!(
        "the message is not encrypted for any key on the token (recipient types: {}; token certificates: {})",
        if kinds_seen.is_empty() { "none".into() } else { kinds_seen.join(", ") },
        if ours.is_empty() { "none".into() } else { ours.join("; ") }
    )))
}

fn rsa_modulus_len(c: &Certificate) -> Result<usize, CmsError> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::traits::PublicKeyParts;
    let spki = c.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    let key =
        rsa::RsaPublicKey::from_pkcs1_der(spki).map_err(|e| CmsError::Malformed(format!("recipient RSA key: {e}")))?;
    Ok(key.size())
}

fn oaep_params(alg: &spki::AlgorithmIdentifierOwned) -> Result<(OaepHash, OaepHash, Vec<u8>), CmsError> {
    let p = match &alg.parameters {
        Some(any) => {
            any.decode_as::<OaepParams>().map_err(|e| CmsError::Malformed(format!("RSA-OAEP parameters: {e}")))?
        }
        None => OaepParams { hash: None, mgf: None, psource: None },
    };
    let hash = match &p.hash {
        Some(h) => hash_of(&h.oid).ok_or_else(|| CmsError::CannotDecrypt(format!("OAEP hash {}", h.oid)))?,
        None => OaepHash::Sha1,
    };
    let mgf = match &p.mgf {
        Some(m) if m.oid == ID_MGF1 => {
            let inner: spki::AlgorithmIdentifierOwned = m
                .parameters
                .as_ref()
                .ok_or_else(|| CmsError::Malformed("MGF1 without a hash".into()))?
                .decode_as()
                .map_err(|e| CmsError::Malformed(format!("MGF1 hash: {e}")))?;
            hash_of(&inner.oid).ok_or_else(|| CmsError::CannotDecrypt(format!("MGF1 hash {}", inner.oid)))?
        }
        Some(m) => return Err(CmsError::CannotDecrypt(format!("OAEP mask generation {}", m.oid))),
        None => OaepHash::Sha1,
    };
    let label = match &p.psource {
        Some(ps) if ps.oid == ID_P_SPECIFIED => match &ps.parameters {
            Some(v) => v
                .decode_as::<OctetString>()
                .map_err(|e| CmsError::Malformed(format!("OAEP label: {e}")))?
                .as_bytes()
                .to_vec(),
            None => Vec::new(),
        },
        Some(ps) => return Err(CmsError::CannotDecrypt(format!("OAEP label source {}", ps.oid))),
        None => Vec::new(),
    };
    Ok((hash, mgf, label))
}

/// Key-agreement scheme → (KDF hash, key-wrap algorithm OID).
fn kari_algs(alg: &spki::AlgorithmIdentifierOwned) -> Result<(OaepHash, ObjectIdentifier), CmsError> {
    let hash = match alg.oid.to_string().as_str() {
        // dhSinglePass-stdDH-shaXkdf-scheme and the cofactor variants (cofactor 1 on P-256/P-384).
        "1.3.133.16.840.63.0.2" | "1.3.133.16.840.63.0.3" => OaepHash::Sha1,
        "1.3.132.1.11.1" | "1.3.132.1.14.1" => OaepHash::Sha256,
        "1.3.132.1.11.2" | "1.3.132.1.14.2" => OaepHash::Sha384,
        "1.3.132.1.11.3" | "1.3.132.1.14.3" => OaepHash::Sha512,
        other => {
            return Err(CmsError::CannotDecrypt(format!(
                "key agreement algorithm {other} (X25519/HKDF and others are not supported yet)"
            )))
        }
    };
    let wrap: spki::AlgorithmIdentifierOwned = alg
        .parameters
        .as_ref()
        .ok_or_else(|| CmsError::Malformed("key agreement without a key-wrap algorithm".into()))?
        .decode_as()
        .map_err(|e| CmsError::Malformed(format!("key-wrap algorithm: {e}")))?;
    Ok((hash, wrap.oid))
}

fn wrap_key_len(oid: &ObjectIdentifier) -> Result<usize, CmsError> {
    match oid.to_string().as_str() {
        "2.16.840.1.101.3.4.1.5" => Ok(16),
        "2.16.840.1.101.3.4.1.25" => Ok(24),
        "2.16.840.1.101.3.4.1.45" => Ok(32),
        other => Err(CmsError::CannotDecrypt(format!("key-wrap algorithm {other}"))),
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

fn aes_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
    use aes_kw::cipher::KeyInit;
    let fail = |_| CmsError::Decrypt("the content key does not unwrap (AES key wrap integrity check failed)".into());
    let bad_kek = |_| CmsError::Malformed("KEK length".into());
    let mut out = Zeroizing::new(vec![0u8; wrapped.len()]);
    let len = match kek.len() {
        16 => {
            aes_kw::KwAes128::new_from_slice(kek).map_err(bad_kek)?.unwrap_key(wrapped, &mut out).map_err(fail)?.len()
        }
        24 => {
            aes_kw::KwAes192::new_from_slice(kek).map_err(bad_kek)?.unwrap_key(wrapped, &mut out).map_err(fail)?.len()
        }
        32 => {
            aes_kw::KwAes256::new_from_slice(kek).map_err(bad_kek)?.unwrap_key(wrapped, &mut out).map_err(fail)?.len()
        }
        n => return Err(CmsError::Malformed(format!("KEK of {n} bytes"))),
    };
    out.truncate(len);
    Ok(out)
}

fn content_alg(eci: &EncryptedContentInfo, authenticated: bool) -> Result<ContentAlg, CmsError> {
    let oid = eci.content_enc_alg.oid.to_string();
    let alg = match oid.as_str() {
        "2.16.840.1.101.3.4.1.2" => ContentAlg::AesCbc(16),
        "2.16.840.1.101.3.4.1.22" => ContentAlg::AesCbc(24),
        "2.16.840.1.101.3.4.1.42" => ContentAlg::AesCbc(32),
        "2.16.840.1.101.3.4.1.6" => ContentAlg::AesGcm(16),
        "2.16.840.1.101.3.4.1.26" => ContentAlg::AesGcm(24),
        "2.16.840.1.101.3.4.1.46" => ContentAlg::AesGcm(32),
        _ if eci.content_enc_alg.oid == ID_CHACHA20_POLY1305 => ContentAlg::ChaCha20Poly1305,
        "1.2.840.113549.3.7" => ContentAlg::DesEde3Cbc,
        "1.2.840.113549.3.2" => {
            return Err(CmsError::CannotDecrypt(
                "the content is encrypted with RC2, which is refused as broken: ask the sender to use AES".into(),
            ))
        }
        "1.3.14.3.2.7" => {
            return Err(CmsError::CannotDecrypt(
                "the content is encrypted with single DES, which is refused as broken: ask the sender to use AES"
                    .into(),
            ))
        }
        other => {
            return Err(CmsError::CannotDecrypt(format!(
                "the content is encrypted with algorithm {other}, which ssmax-card does not know"
            )))
        }
    };
    let aead = !matches!(alg, ContentAlg::AesCbc(_) | ContentAlg::DesEde3Cbc);
    if aead != authenticated {
        return Err(CmsError::Malformed(format!(
            "{} must be used with {}",
            alg.name(),
            if aead { "AuthEnvelopedData" } else { "EnvelopedData" }
        )));
    }
    Ok(alg)
}

fn decrypt_content(
    alg: ContentAlg,
    eci: &EncryptedContentInfo,
    cek: &[u8],
    mut buf: Vec<u8>,
    auth: Option<&(Option<Vec<u8>>, Vec<u8>)>,
) -> Result<Vec<u8>, CmsError> {
    let key_len = match alg {
        ContentAlg::DesEde3Cbc => 24,
        ContentAlg::AesCbc(n) | ContentAlg::AesGcm(n) => n,
        ContentAlg::ChaCha20Poly1305 => 32,
    };
    if cek.len() != key_len {
        // Also what a wrong key under PKCS#1 v1.5 looks like; say no more than that.
        return Err(CmsError::Decrypt(format!("the recovered content key has the wrong length for {}", alg.name())));
    }
    let params = eci
        .content_enc_alg
        .parameters
        .as_ref()
        .ok_or_else(|| CmsError::Malformed(format!("{} without parameters", alg.name())))?;
    let integrity = || CmsError::Decrypt("integrity check failed: the message was altered or the key is wrong".into());
    match alg {
        ContentAlg::DesEde3Cbc => {
            use cbc::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
            let iv = params.decode_as::<OctetString>().map_err(|e| CmsError::Malformed(format!("CBC IV: {e}")))?;
            let len = cbc::Decryptor::<des::TdesEde3>::new_from_slices(cek, iv.as_bytes())
                .map_err(|_| CmsError::Malformed("DES-EDE3-CBC IV is not 8 bytes".into()))?
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(|_| {
                    CmsError::Decrypt(
                        "content does not decrypt (bad padding): the message was altered or the key is wrong".into(),
                    )
                })?
                .len();
            buf.truncate(len);
            Ok(buf)
        }
        ContentAlg::AesCbc(n) => {
            use cbc::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
            let iv = params.decode_as::<OctetString>().map_err(|e| CmsError::Malformed(format!("CBC IV: {e}")))?;
            let iv = iv.as_bytes();
            if iv.len() != 16 {
                return Err(CmsError::Malformed("CBC IV is not 16 bytes".into()));
            }
            let bad = |_| {
                CmsError::Decrypt(
                    "content does not decrypt (bad padding): the message was altered or the key is wrong".into(),
                )
            };
            let bad_key = |_| CmsError::Malformed("CBC key or IV length".into());
            let len = match n {
                16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(cek, iv)
                    .map_err(bad_key)?
                    .decrypt_padded::<Pkcs7>(&mut buf)
                    .map_err(bad)?
                    .len(),
                24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(cek, iv)
                    .map_err(bad_key)?
                    .decrypt_padded::<Pkcs7>(&mut buf)
                    .map_err(bad)?
                    .len(),
                _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(cek, iv)
                    .map_err(bad_key)?
                    .decrypt_padded::<Pkcs7>(&mut buf)
                    .map_err(bad)?
                    .len(),
            };
            buf.truncate(len);
            Ok(buf)
        }
        ContentAlg::AesGcm(n) => {
            use aes_gcm::aead::{AeadInOut, KeyInit};
            let p = params.decode_as::<GcmParams>().map_err(|e| CmsError::Malformed(format!("GCM parameters: {e}")))?;
            let (aad, tag) = auth.ok_or_else(|| CmsError::Malformed("GCM without a MAC".into()))?;
            let icv = p.icv_len.unwrap_or(12) as usize;
            if tag.len() != icv || icv != 16 {
                return Err(CmsError::CannotDecrypt(format!("AES-GCM with a {}-byte tag (16 supported)", tag.len())));
            }
            if p.nonce.as_bytes().len() != 12 {
                return Err(CmsError::CannotDecrypt(format!(
                    "AES-GCM with a {}-byte nonce (12 supported)",
                    p.nonce.as_bytes().len()
                )));
            }
            let nonce =
                aes_gcm::Nonce::<aes_gcm::aead::consts::U12>::try_from(p.nonce.as_bytes()).map_err(|_| integrity())?;
            let aad = aad.as_deref().unwrap_or(&[]);
            let tag = aes_gcm::Tag::<aes_gcm::aead::consts::U16>::try_from(tag.as_slice()).map_err(|_| integrity())?;
            let data = buf.as_mut_slice().into();
            match n {
                16 => aes_gcm::Aes128Gcm::new_from_slice(cek)
                    .map_err(|_| integrity())?
                    .decrypt_inout_detached(&nonce, aad, data, &tag),
                24 => aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(cek)
                    .map_err(|_| integrity())?
                    .decrypt_inout_detached(&nonce, aad, data, &tag),
                _ => aes_gcm::Aes256Gcm::new_from_slice(cek)
                    .map_err(|_| integrity())?
                    .decrypt_inout_detached(&nonce, aad, data, &tag),
            }
            .map_err(|_| integrity())?;
            Ok(buf)
        }
        ContentAlg::ChaCha20Poly1305 => {
            use chacha20poly1305::aead::{AeadInOut, KeyInit};
            let nonce = params
                .decode_as::<OctetString>()
                .map_err(|e| CmsError::Malformed(format!("ChaCha20-Poly1305 nonce: {e}")))?;
            if nonce.as_bytes().len() != 12 {
                return Err(CmsError::Malformed("ChaCha20-Poly1305 nonce is not 12 bytes".into()));
            }
            let (aad, tag) = auth.ok_or_else(|| CmsError::Malformed("ChaCha20-Poly1305 without a MAC".into()))?;
            if tag.len() != 16 {
                return Err(CmsError::Malformed("ChaCha20-Poly1305 MAC is not 16 bytes".into()));
            }
            let nonce = chacha20poly1305::Nonce::try_from(nonce.as_bytes()).map_err(|_| integrity())?;
            let tag = chacha20poly1305::Tag::try_from(tag.as_slice()).map_err(|_| integrity())?;
            chacha20poly1305::ChaCha20Poly1305::new_from_slice(cek)
                .map_err(|_| integrity())?
                .decrypt_inout_detached(&nonce, aad.as_deref().unwrap_or(&[]), buf.as_mut_slice().into(), &tag)
                .map_err(|_| integrity())?;
            Ok(buf)
        }
    }
}
