//! CMS (RFC 5652): SignedData built with a token signer and verified against trust anchors;
//! EnvelopedData / AuthEnvelopedData opened with the key on the token.

pub mod cert;
pub mod decrypt;
pub mod oaep;
pub mod sign;
pub mod verify;

use der::Decode;

#[derive(Debug, thiserror::Error)]
pub enum CmsError {
    #[error("malformed CMS: {0}")]
    Malformed(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("verification failed: {0}")]
    Verify(String),
    #[error("decryption failed: {0}")]
    Decrypt(String),
    #[error("no usable key: {0}")]
    NoKey(String),
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
}

/// Accept DER or PEM ("CMS", "PKCS7"); return DER.
pub fn unarmor(data: &[u8]) -> Result<Vec<u8>, CmsError> {
    let trimmed = data.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN") {
        let text = std::str::from_utf8(trimmed).map_err(|_| CmsError::Malformed("PEM is not text".into()))?;
        let (label, der) = der::pem::decode_vec(text.as_bytes()).map_err(|e| CmsError::Malformed(format!("PEM does not decode: {e}")))?;
        if !matches!(label, "CMS" | "PKCS7" | "PKCS #7 SIGNED DATA") {
            return Err(CmsError::Malformed(format!("PEM label '{label}' is not CMS")));
        }
        return Ok(der);
    }
    Ok(data.to_vec())
}

pub fn content_info(der: &[u8]) -> Result<cms::content_info::ContentInfo, CmsError> {
    cms::content_info::ContentInfo::from_der(der).map_err(|e| CmsError::Malformed(format!("not a DER CMS ContentInfo: {e}")))
}
