//! The digests we sign with and accept in signatures: SHA-256, SHA-384, SHA-512 (RFC 8551
//! §2.1; SHA-1 is refused). Decryption's OAEP and KDF hashes, SHA-1 included, are oaep.rs's.

use const_oid::db::rfc5912;
use sha2::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            Hash::Sha256 => sha2::Sha256::digest(data).to_vec(),
            Hash::Sha384 => sha2::Sha384::digest(data).to_vec(),
            Hash::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }

    /// The digest of `pieces` as if they were one buffer.
    pub fn digest_pieces(self, pieces: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(pieces: &[&[u8]]) -> Vec<u8> {
            let mut d = D::new();
            for p in pieces {
                d.update(p);
            }
            d.finalize().to_vec()
        }
        match self {
            Hash::Sha256 => run::<sha2::Sha256>(pieces),
            Hash::Sha384 => run::<sha2::Sha384>(pieces),
            Hash::Sha512 => run::<sha2::Sha512>(pieces),
        }
    }

    pub fn oid(self) -> der::oid::ObjectIdentifier {
        match self {
            Hash::Sha256 => rfc5912::ID_SHA_256,
            Hash::Sha384 => rfc5912::ID_SHA_384,
            Hash::Sha512 => rfc5912::ID_SHA_512,
        }
    }

    /// The `micalg` parameter of multipart/signed (RFC 8551 §3.5.3).
    pub fn micalg(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha-256",
            Hash::Sha384 => "sha-384",
            Hash::Sha512 => "sha-512",
        }
    }

    pub fn output_len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}
