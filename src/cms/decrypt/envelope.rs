//! An EnvelopedData or AuthEnvelopedData found in DER (or BER, rewritten first): scanned once
//! to cut the encrypted content out, so a large mail is held once, then parsed.

use super::*;

/// A parsed EnvelopedData or AuthEnvelopedData: what opening and re-keying need.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub authenticated: bool,
    pub originator_info: Option<cms::enveloped_data::OriginatorInfo>,
    pub infos: SetOfVec<RecipientInfo>,
    pub eci: EncryptedContentInfo,
    /// As received, held in DER order: their DER is the AEAD's additional data (RFC 5083 §2.2).
    pub auth_attrs: Option<crate::cms::asn1::BerSetOf<crate::cms::signed::RawAttribute>>,
    pub mac: Option<OctetString>,
    pub other_attrs: Option<crate::cms::asn1::BerSetOf<crate::cms::signed::RawAttribute>>,
}

/// (header, header length, content length) of the TLV at `pos`, which must fit in `der`.
pub(crate) fn tlv_at(der: &[u8], pos: usize) -> Option<(der::Header, usize, usize)> {
    use der::Decode;
    let h = der::Header::decode(&mut der::SliceReader::new(der.get(pos..)?).ok()?).ok()?;
    let hl = usize::try_from(der::Encode::encoded_len(&h).ok()?).ok()?;
    let cl = usize::try_from(h.length).ok()?;
    (pos + hl + cl <= der.len()).then_some((h, hl, cl))
}

/// The outline of an (Auth)EnvelopedData ContentInfo up to its RecipientInfos. None when the
/// structure is not the expected one (the typed parser then says what is wrong).
pub(crate) struct Outline {
    /// (where, header, header length, content length) of the ContentInfo, its [0] and the
    /// envelope SEQUENCE: each encloses the next.
    enclosing: Vec<(usize, der::Header, usize, usize)>,
    /// Where the RecipientInfos SET starts, its header length and content length.
    set: (usize, usize, usize),
}

pub(crate) fn outline(der: &[u8]) -> Option<Outline> {
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
pub(crate) fn recipient_elements(der: &[u8]) -> Option<(std::ops::Range<usize>, Vec<std::ops::Range<usize>>)> {
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
pub(crate) fn without_content(der: &[u8]) -> Option<(Vec<u8>, Vec<std::ops::Range<usize>>)> {
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
        if let Some(normalized) = crate::cms::ber::normalize(&der)? {
            der = normalized;
        }
        // Bounds first: this is where a list of recipients would otherwise be sorted (bounds.rs).
        crate::cms::bounds::check(&der)?;
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
        let ci = crate::cms::ContentInfoRef::from_der(der)
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
    /// The content key, for re-keying: a key that does not unwrap is a failure here (the
    /// content is never decrypted to find out).
    pub fn recover_cek(
        &self,
        keys: &mut dyn Decryptor,
    ) -> Result<(Zeroizing<Vec<u8>>, &'static str, String), CmsError> {
        match self.unwrap_cek(keys)? {
            (Unwrapped::Key(k), transport, who) => Ok((k, transport, who)),
            (Unwrapped::Failed, ..) => Err(undecryptable()),
        }
    }

    /// The content key, for reading the content: one that does not unwrap, or has the wrong
    /// length, is replaced by a random one of the right length, so that every failure shows
    /// as the content's own (RFC 3218 §2.3: no oracle on the key for whoever sent the mail).
    pub fn cek_for_reading(
        &self,
        keys: &mut dyn Decryptor,
    ) -> Result<(Zeroizing<Vec<u8>>, &'static str, String), CmsError> {
        let alg = content_alg(&self.eci, self.authenticated)?;
        let (unwrapped, transport, who) = self.unwrap_cek(keys)?;
        let cek = match unwrapped {
            Unwrapped::Key(k) if k.len() == alg.key_len() => k,
            _ => {
                let mut random = Zeroizing::new(vec![0u8; alg.key_len()]);
                rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut random);
                random
            }
        };
        Ok((cek, transport, who))
    }

    fn unwrap_cek(&self, keys: &mut dyn Decryptor) -> Result<(Unwrapped, &'static str, String), CmsError> {
        if let Some(why) = keys.cannot_decrypt() {
            return Err(CmsError::NoKey(why));
        }
        // Refuse unsupported content before anyone is asked for a PIN.
        content_alg(&self.eci, self.authenticated)?;
        recover_cek(&self.infos, keys)
    }

    /// Whether the message is encrypted for one of `certs` (no key needed to tell).
    pub fn addressed_to(&self, certs: &[Certificate]) -> bool {
        names_any(&self.infos, certs)
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

    /// Everything but the encrypted content (recipients, attributes, MAC), so checks on them
    /// can follow `into_plaintext`, which consumes the envelope, without a second copy of a
    /// large attachment.
    pub fn without_ciphertext(&self) -> Envelope {
        Envelope {
            authenticated: self.authenticated,
            originator_info: self.originator_info.clone(),
            infos: self.infos.clone(),
            eci: EncryptedContentInfo {
                content_type: self.eci.content_type,
                content_enc_alg: self.eci.content_enc_alg.clone(),
                encrypted_content: None,
            },
            auth_attrs: self.auth_attrs.clone(),
            mac: self.mac.clone(),
            other_attrs: self.other_attrs.clone(),
        }
    }

    /// The raw encrypted content bytes (what re-keying must leave identical).
    #[cfg(test)]
    pub fn ciphertext(&self) -> &[u8] {
        self.eci.encrypted_content.as_ref().map(|o| o.as_bytes()).unwrap_or(&[])
    }
}

/// ContentInfo { content_type, [0] EXPLICIT content } written into one buffer of the final size.
pub(crate) fn content_info_der(content_type: ObjectIdentifier, content: &impl Encode) -> der::Result<Vec<u8>> {
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
