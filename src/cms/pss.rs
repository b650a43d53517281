//! RSASSA-PSS verification with whatever parameters the signer stated (RFC 4055): any salt
//! length, SHA-256/384/512, MGF1 over the same or another hash. rustls-webpki verifies only
//! salt = hash length with MGF1 over the same hash, which is what we write; other writers
//! (Bouncy Castle, Windows CNG) choose otherwise. The `rsa` crate verifies any salt length with
//! MGF1 over the signature's hash; for MGF1 over another hash, EMSA-PSS-VERIFY (RFC 8017
//! §9.1.2) runs here on top of the crate's public-key operation. Nothing here is secret.

use super::oaep::{mgf1_xor, OaepHash};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};

/// PSS parameters as a signature states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub hash: OaepHash,
    pub mgf: OaepHash,
    pub salt_len: usize,
}

/// The smallest RSA key accepted, as for every other RSA signature (rustls-webpki's 2048–8192).
const MIN_BITS: usize = 2048;
const MAX_BITS: usize = 8192;

/// Does `sig` verify over `msg` with `key` (PKCS#1 RSAPublicKey DER) under `p`?
pub fn verify(key: &[u8], p: Params, msg: &[u8], sig: &[u8]) -> bool {
    use rsa::pkcs1::DecodeRsaPublicKey;
    let Ok(key) = RsaPublicKey::from_pkcs1_der(key) else {
        return false;
    };
    let bits = key.n().bits();
    if !(MIN_BITS..=MAX_BITS).contains(&bits) || sig.len() != key.size() {
        return false;
    }
    let mut h = p.hash.hasher();
    h.update(msg);
    let m_hash = h.finalize();
    if p.hash == p.mgf {
        use rsa::pss::Pss;
        let scheme = match p.hash {
            OaepHash::Sha1 => return false,
            OaepHash::Sha256 => Pss::new_with_salt::<sha2::Sha256>(p.salt_len),
            OaepHash::Sha384 => Pss::new_with_salt::<sha2::Sha384>(p.salt_len),
            OaepHash::Sha512 => Pss::new_with_salt::<sha2::Sha512>(p.salt_len),
        };
        return key.verify(scheme, &m_hash, sig).is_ok();
    }
    let s = BigUint::from_bytes_be(sig);
    if &s >= key.n() {
        return false;
    }
    let Ok(m) = rsa::hazmat::rsa_encrypt(&key, &s) else {
        return false;
    };
    let em_bits = bits - 1;
    let em_len = em_bits.div_ceil(8);
    let m = m.to_bytes_be();
    if m.len() > em_len {
        return false;
    }
    let mut em = vec![0u8; em_len - m.len()];
    em.extend_from_slice(&m);
    emsa_pss_verify(&m_hash, &em, em_bits, p)
}

/// RFC 8017 §9.1.2 steps 3–14.
fn emsa_pss_verify(m_hash: &[u8], em: &[u8], em_bits: usize, p: Params) -> bool {
    let h_len = m_hash.len();
    let em_len = em.len();
    if em_len < h_len + p.salt_len + 2 || em[em_len - 1] != 0xbc {
        return false;
    }
    let (masked_db, rest) = em.split_at(em_len - h_len - 1);
    let h = &rest[..h_len];
    let top_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8.checked_shr(top_bits as u32).unwrap_or(0);
    if masked_db[0] & !top_mask != 0 {
        return false;
    }
    let mut db = masked_db.to_vec();
    mgf1_xor(&mut db, p.mgf, h);
    db[0] &= top_mask;
    let ps_len = em_len - h_len - p.salt_len - 2;
    if db[..ps_len].iter().any(|&b| b != 0) || db[ps_len] != 0x01 {
        return false;
    }
    let salt = &db[ps_len + 1..];
    let mut hh = p.hash.hasher();
    hh.update(&[0u8; 8]);
    hh.update(m_hash);
    hh.update(salt);
    hh.finalize().as_ref() == h
}
