//! From the recipient infos to the content-encryption key: the one addressed to a key we hold,
//! unwrapped by the token (RSA key transport, or ECDH with the X9.63 KDF and AES key wrap).

use super::*;

/// Find the recipient info addressed to one of our certificates and have the token unwrap the key.
fn matches_ias(ias: &cms::cert::IssuerAndSerialNumber, c: &Certificate) -> bool {
    c.tbs_certificate.issuer == ias.issuer && c.tbs_certificate.serial_number == ias.serial_number
}

fn matches_ski(ski: &[u8], c: &Certificate) -> bool {
    cert::subject_key_id(c).as_deref() == Some(ski)
}

/// Whether any recipient of `infos` is named by one of `certs` (key transport or agreement).
pub(crate) fn names_any(infos: &SetOfVec<RecipientInfo>, certs: &[Certificate]) -> bool {
    infos.iter().any(|ri| match ri {
        RecipientInfo::Ktri(k) => certs.iter().any(|c| match &k.rid {
            RecipientIdentifier::IssuerAndSerialNumber(ias) => matches_ias(ias, c),
            RecipientIdentifier::SubjectKeyIdentifier(ski) => matches_ski(ski.0.as_bytes(), c),
        }),
        RecipientInfo::Kari(kari) => kari.recipient_enc_keys.iter().any(|rek| {
            certs.iter().any(|c| match &rek.rid {
                KeyAgreeRecipientIdentifier::IssuerAndSerialNumber(ias) => matches_ias(ias, c),
                KeyAgreeRecipientIdentifier::RKeyId(r) => matches_ski(r.subject_key_identifier.as_bytes(), c),
            })
        }),
        _ => false,
    })
}

/// What the key holder made of the encrypted content key.
pub(crate) enum Unwrapped {
    Key(Zeroizing<Vec<u8>>),
    /// It did not unwrap: the padding, the OAEP check or the key wrap failed. Which, is not said.
    Failed,
}

/// The key's answer, with a failure to unwrap (the data, not the token) told apart from the rest.
fn unwrapped(r: Result<Zeroizing<Vec<u8>>, CmsError>) -> Result<Unwrapped, CmsError> {
    match r {
        Ok(k) => Ok(Unwrapped::Key(k)),
        Err(CmsError::Decrypt(_)) => Ok(Unwrapped::Failed),
        Err(e) => Err(e),
    }
}

pub(crate) fn recover_cek(
    infos: &SetOfVec<RecipientInfo>,
    keys: &mut dyn Decryptor,
) -> Result<(Unwrapped, &'static str, String), CmsError> {
    let certs: Vec<Certificate> = keys.certificates().to_vec();
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
                    (unwrapped(keys.rsa_decrypt(idx, RsaOp::Pkcs1v15, enc))?, "RSA PKCS#1 v1.5")
                } else if k.key_enc_alg.oid == ID_RSAES_OAEP {
                    let (hash, mgf, label) = oaep_params(&k.key_enc_alg)?;
                    let name = match hash {
                        OaepHash::Sha1 => "RSA-OAEP (SHA-1)",
                        OaepHash::Sha256 => "RSA-OAEP (SHA-256)",
                        OaepHash::Sha384 => "RSA-OAEP (SHA-384)",
                        OaepHash::Sha512 => "RSA-OAEP (SHA-512)",
                    };
                    if hash == mgf && label.is_empty() && keys.supports(idx, RsaOp::Oaep(hash)) {
                        (unwrapped(keys.rsa_decrypt(idx, RsaOp::Oaep(hash), enc))?, name)
                    } else if keys.supports(idx, RsaOp::Raw) {
                        // The token lacks this OAEP variant: raw RSA on the token, unpadding here.
                        let k_len = rsa_modulus_len(&certs[idx])?;
                        let m = match unwrapped(keys.rsa_decrypt(idx, RsaOp::Raw, enc))? {
                            Unwrapped::Key(em) => {
                                oaep::decode(&em, k_len, hash, mgf, &label).map_or(Unwrapped::Failed, Unwrapped::Key)
                            }
                            Unwrapped::Failed => Unwrapped::Failed,
                        };
                        (m, name)
                    } else {
                        return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-no-oaep", hash = hash.name())));
                    }
                } else {
                    return Err(CmsError::CannotDecrypt(crate::tr!(
                        "decrypt-key-transport",
                        oid = k.key_enc_alg.oid.to_string()
                    )));
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
                        return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-static-originator")));
                    };
                    let point = opk
                        .public_key
                        .as_bytes()
                        .ok_or_else(|| CmsError::Malformed("originator key is not whole bytes".into()))?;
                    let (kdf_hash, wrap) = kari_algs(&kari.key_enc_alg)?;
                    let z = keys.ecdh(idx, point)?;
                    let kek = x963_kdf(kdf_hash, &z, &wrap, kari.ukm.as_ref().map(|u| u.as_bytes()))?;
                    let cek = unwrapped(aes_unwrap(&kek, rek.enc_key.as_bytes()))?;
                    return Ok((cek, "ECDH ephemeral-static + AES key wrap", who));
                }
            }
            RecipientInfo::Kekri(_) => kinds_seen.push("pre-shared key (KEKRecipientInfo)"),
            RecipientInfo::Pwri(_) => kinds_seen.push("password (PasswordRecipientInfo)"),
            RecipientInfo::Ori(_) => kinds_seen.push("other recipient type"),
        }
    }
    let ours: Vec<String> = certs
        .iter()
        .map(|c| {
            let serial = c.tbs_certificate.serial_number.to_string();
            crate::tr!("decrypt-token-certificate", subject = cert::subject(c), serial = serial)
        })
        .collect();
    let none = || crate::tr!("decrypt-none");
    let kinds = if kinds_seen.is_empty() { none() } else { kinds_seen.join(", ") };
    let ours = if ours.is_empty() { none() } else { ours.join("; ") };
    Err(CmsError::NoKey(crate::tr!("decrypt-not-for-us", kinds = kinds, ours = ours)))
}

pub(crate) fn rsa_modulus_len(c: &Certificate) -> Result<usize, CmsError> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::traits::PublicKeyParts;
    let spki = c.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    let key =
        rsa::RsaPublicKey::from_pkcs1_der(spki).map_err(|e| CmsError::Malformed(format!("recipient RSA key: {e}")))?;
    Ok(key.size())
}

pub(crate) fn oaep_params(alg: &spki::AlgorithmIdentifierOwned) -> Result<(OaepHash, OaepHash, Vec<u8>), CmsError> {
    let p = match &alg.parameters {
        Some(any) => {
            any.decode_as::<OaepParams>().map_err(|e| CmsError::Malformed(format!("RSA-OAEP parameters: {e}")))?
        }
        None => OaepParams { hash: None, mgf: None, psource: None },
    };
    let hash = match &p.hash {
        Some(h) => hash_of(&h.oid)
            .ok_or_else(|| CmsError::CannotDecrypt(crate::tr!("decrypt-oaep-hash", oid = h.oid.to_string())))?,
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
            hash_of(&inner.oid)
                .ok_or_else(|| CmsError::CannotDecrypt(crate::tr!("decrypt-mgf1-hash", oid = inner.oid.to_string())))?
        }
        Some(m) => return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-oaep-mask", oid = m.oid.to_string()))),
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
        Some(ps) => return Err(CmsError::CannotDecrypt(crate::tr!("decrypt-oaep-label", oid = ps.oid.to_string()))),
        None => Vec::new(),
    };
    Ok((hash, mgf, label))
}

/// Key-agreement scheme → (KDF hash, key-wrap algorithm OID).
pub(crate) fn kari_algs(alg: &spki::AlgorithmIdentifierOwned) -> Result<(OaepHash, ObjectIdentifier), CmsError> {
    let hash = kdf_hash_of(&alg.oid)
        .ok_or_else(|| CmsError::CannotDecrypt(crate::tr!("decrypt-key-agreement", oid = alg.oid.to_string())))?;
    let wrap: spki::AlgorithmIdentifierOwned = alg
        .parameters
        .as_ref()
        .ok_or_else(|| CmsError::Malformed("key agreement without a key-wrap algorithm".into()))?
        .decode_as()
        .map_err(|e| CmsError::Malformed(format!("key-wrap algorithm: {e}")))?;
    Ok((hash, wrap.oid))
}

pub(crate) fn aes_unwrap(kek: &[u8], wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
    use aes_kw::cipher::KeyInit;
    let fail = |_| undecryptable();
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
