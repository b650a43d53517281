//! EME-OAEP decoding (RFC 8017 §7.1.2 step 3) for tokens that only offer raw RSA for the hash
//! the sender chose. The private-key operation happened on the token; this removes the padding
//! in constant time, so timing does not tell which check failed.

use sha2::digest::{Digest, DynDigest};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OaepHash {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl OaepHash {
    pub(crate) fn hasher(self) -> Box<dyn DynDigest> {
        match self {
            OaepHash::Sha1 => Box::new(sha1::Sha1::new()),
            OaepHash::Sha256 => Box::new(sha2::Sha256::new()),
            OaepHash::Sha384 => Box::new(sha2::Sha384::new()),
            OaepHash::Sha512 => Box::new(sha2::Sha512::new()),
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            OaepHash::Sha1 => 20,
            OaepHash::Sha256 => 32,
            OaepHash::Sha384 => 48,
            OaepHash::Sha512 => 64,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OaepHash::Sha1 => "SHA1",
            OaepHash::Sha256 => "SHA256",
            OaepHash::Sha384 => "SHA384",
            OaepHash::Sha512 => "SHA512",
        }
    }
}

pub(crate) fn mgf1_xor(out: &mut [u8], hash: OaepHash, seed: &[u8]) {
    let mut counter = 0u32;
    let mut done = 0;
    while done < out.len() {
        let mut h = hash.hasher();
        h.update(seed);
        h.update(&counter.to_be_bytes());
        let block = h.finalize();
        for (o, b) in out[done..].iter_mut().zip(block.iter()) {
            *o ^= b;
        }
        done += block.len();
        counter += 1;
    }
}

/// Decode EM (the raw RSA result, `k` bytes) with MGF1 over `mgf` and label hash over `hash`.
/// Returns None on any padding error, without saying which.
pub fn decode(em: &[u8], k: usize, hash: OaepHash, mgf: OaepHash, label: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let h_len = hash.hasher().output_size();
    if k < 2 * h_len + 2 || em.len() > k {
        return None;
    }
    // The token may strip leading zero bytes; put them back.
    let mut em_full = Zeroizing::new(vec![0u8; k]);
    em_full[k - em.len()..].copy_from_slice(em);
    let (y, rest) = em_full.split_at_mut(1);
    let (masked_seed, masked_db) = rest.split_at_mut(h_len);
    mgf1_xor(masked_seed, mgf, masked_db);
    let seed = Zeroizing::new(masked_seed.to_vec());
    mgf1_xor(masked_db, mgf, &seed);
    let db = masked_db;

    let mut lhash = hash.hasher();
    lhash.update(label);
    let lhash = lhash.finalize();

    let mut good = y[0].ct_eq(&0) & db[..h_len].ct_eq(&lhash);
    // Find the 0x01 separator after the zero padding without branching on secret data.
    let mut looking = Choice::from(1u8);
    let mut index = 0u32;
    for (i, &b) in db.iter().enumerate().skip(h_len) {
        let is_one = b.ct_eq(&1);
        let is_zero = b.ct_eq(&0);
        index.conditional_assign(&(i as u32), looking & is_one);
        // A byte that is neither 0 nor 1 before the separator is a padding error.
        good &= !(looking & !is_one & !is_zero);
        looking &= !is_one;
    }
    good &= !looking;
    if bool::from(good) {
        Some(Zeroizing::new(db[index as usize + 1..].to_vec()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::traits::{PrivateKeyParts, PublicKeyParts};
    use rsa::{BigUint, Oaep, RsaPrivateKey, RsaPublicKey};

    fn raw_decrypt(key: &RsaPrivateKey, c: &[u8]) -> Vec<u8> {
        // Textbook RSA with the private exponent stands in for the token's CKM_RSA_X_509.
        let m = BigUint::from_bytes_be(c).modpow(key.d(), key.n());
        m.to_bytes_be()
    }

    #[test]
    fn decodes_what_rsa_crate_encodes_for_sha256_and_sha1() {
        let mut rng = rand_core::OsRng;
        let key = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let public = RsaPublicKey::from(&key);
        let k = public.size();
        let c = public.encrypt(&mut rng, Oaep::new::<sha2::Sha256>(), b"content key 1234").unwrap();
        let m = decode(&raw_decrypt(&key, &c), k, OaepHash::Sha256, OaepHash::Sha256, b"").unwrap();
        assert_eq!(&m[..], b"content key 1234");
        let c = public.encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), b"x").unwrap();
        assert_eq!(&decode(&raw_decrypt(&key, &c), k, OaepHash::Sha1, OaepHash::Sha1, b"").unwrap()[..], b"x");
    }

    #[test]
    fn rejects_wrong_hash_label_and_tampering() {
        let mut rng = rand_core::OsRng;
        let key = RsaPrivateKey::new(&mut rng, 1024).unwrap();
        let public = RsaPublicKey::from(&key);
        let k = public.size();
        let c = public.encrypt(&mut rng, Oaep::new::<sha2::Sha256>(), b"secret").unwrap();
        let em = raw_decrypt(&key, &c);
        assert!(decode(&em, k, OaepHash::Sha1, OaepHash::Sha1, b"").is_none());
        assert!(decode(&em, k, OaepHash::Sha256, OaepHash::Sha256, b"label").is_none());
        let mut bad = em.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(decode(&bad, k, OaepHash::Sha256, OaepHash::Sha256, b"").is_none());
    }
}
