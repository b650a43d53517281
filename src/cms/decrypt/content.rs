//! The content ciphers: AES-CBC, AES-GCM, ChaCha20-Poly1305 and (to read old mail) DES-EDE3-CBC,
//! decrypted in place.

use super::*;

pub(crate) fn content_alg(eci: &EncryptedContentInfo, authenticated: bool) -> Result<ContentAlg, CmsError> {
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
            return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-broken-cipher", cipher = "RC2")))
        }
        "1.3.14.3.2.7" => {
            return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-broken-cipher", cipher = "single DES")))
        }
        other => return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-unknown-cipher", oid = other))),
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

/// The one answer for content that does not decrypt, whichever step found it (a content key that
/// did not unwrap, of the wrong length, bad padding, a failed integrity check): a reader who can
/// tell the steps apart has an oracle on the key (RFC 3218 §2.3).
pub(crate) fn undecryptable() -> CmsError {
    CmsError::Decrypt(crate::tr!("decrypt-failed-uniform"))
}

impl ContentAlg {
    pub(crate) fn key_len(self) -> usize {
        match self {
            ContentAlg::DesEde3Cbc => 24,
            ContentAlg::AesCbc(n) | ContentAlg::AesGcm(n) => n,
            ContentAlg::ChaCha20Poly1305 => 32,
        }
    }
}

pub(crate) fn decrypt_content(
    alg: ContentAlg,
    eci: &EncryptedContentInfo,
    cek: &[u8],
    mut buf: Vec<u8>,
    auth: Option<&(Option<Vec<u8>>, Vec<u8>)>,
) -> Result<Vec<u8>, CmsError> {
    if cek.len() != alg.key_len() {
        return Err(undecryptable());
    }
    let params = eci
        .content_enc_alg
        .parameters
        .as_ref()
        .ok_or_else(|| CmsError::Malformed(format!("{} without parameters", alg.name())))?;
    let integrity = undecryptable;
    match alg {
        ContentAlg::DesEde3Cbc => {
            use cbc::cipher::{block_padding::Pkcs7, BlockModeDecrypt, KeyIvInit};
            let iv = params.decode_as::<OctetString>().map_err(|e| CmsError::Malformed(format!("CBC IV: {e}")))?;
            let len = cbc::Decryptor::<des::TdesEde3>::new_from_slices(cek, iv.as_bytes())
                .map_err(|_| CmsError::Malformed("DES-EDE3-CBC IV is not 8 bytes".into()))?
                .decrypt_padded::<Pkcs7>(&mut buf)
                .map_err(|_| undecryptable())?
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
            let bad = |_| undecryptable();
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
            let p = params.decode_as::<GcmParams>().map_err(|e| CmsError::Malformed(format!("GCM parameters: {e}")))?;
            let (aad, tag) = auth.ok_or_else(|| CmsError::Malformed("GCM without a MAC".into()))?;
            let icv = p.icv_len.unwrap_or(12) as usize;
            if tag.len() != icv || icv != 16 {
                return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-gcm-tag", bytes = tag.len())));
            }
            if p.nonce.as_bytes().len() != 12 {
                return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-gcm-nonce", bytes = p.nonce.as_bytes().len())));
            }
            let aad = aad.as_deref().unwrap_or(&[]);
            let alg = match n {
                16 => &ring::aead::AES_128_GCM,
                32 => &ring::aead::AES_256_GCM,
                // ring has no AES-192: RustCrypto's, for the rare mail that uses it.
                _ => {
                    use aes_gcm::aead::{AeadInOut, KeyInit};
                    let nonce = aes_gcm::Nonce::<aes_gcm::aead::consts::U12>::try_from(p.nonce.as_bytes())
                        .map_err(|_| integrity())?;
                    let tag = aes_gcm::Tag::<aes_gcm::aead::consts::U16>::try_from(tag.as_slice())
                        .map_err(|_| integrity())?;
                    aes_gcm::AesGcm::<aes::Aes192, aes_gcm::aead::consts::U12>::new_from_slice(cek)
                        .map_err(|_| integrity())?
                        .decrypt_inout_detached(&nonce, aad, buf.as_mut_slice().into(), &tag)
                        .map_err(|_| integrity())?;
                    return Ok(buf);
                }
            };
            open_with_ring(alg, cek, p.nonce.as_bytes(), aad, tag, &mut buf).map_err(|_| integrity())?;
            Ok(buf)
        }
        ContentAlg::ChaCha20Poly1305 => {
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
            let aad = aad.as_deref().unwrap_or(&[]);
            open_with_ring(&ring::aead::CHACHA20_POLY1305, cek, nonce.as_bytes(), aad, tag, &mut buf)
                .map_err(|_| integrity())?;
            Ok(buf)
        }
    }
}

/// Decrypt `buf` in place with ring's AEAD (the assembly BoringSSL uses), checking `tag`.
fn open_with_ring(
    alg: &'static ring::aead::Algorithm,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    tag: &[u8],
    buf: &mut [u8],
) -> Result<(), ring::error::Unspecified> {
    let key = ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(alg, key)?);
    let nonce = ring::aead::Nonce::try_assume_unique_for_key(nonce)?;
    let tag = ring::aead::Tag::try_from(tag)?;
    key.open_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), tag, buf, 0..)?;
    Ok(())
}
