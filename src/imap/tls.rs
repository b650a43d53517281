//! STARTTLS for mail clients that insist on it, on loopback: a certificate the door makes for
//! itself (localhost, 127.0.0.1, ::1), kept beside the cache, its key sealed there like a view
//! (cache::seal under the cache key from the OS keyring), never in the clear on the disk. The
//! user tells a client to trust it once; it is made again only when it is near its end.

use super::cache::{open, seal};
use der::{Decode, Encode, EncodePem};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The certificate clients are told to trust (PEM).
pub const CERTIFICATE_FILE: &str = "door-certificate.pem";
const KEY_FILE: &str = "door-tls-key";
const KEY_CONTEXT: &[u8] = b"door tls key";
/// How long a certificate holds: within the 825 days Apple's clients take.
const LIFETIME: Duration = Duration::from_secs(800 * 24 * 3600);
/// Made again when it has less than this left.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the IMAP door's TLS certificate {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the IMAP door's TLS certificate could not be made: {0}")]
    Make(String),
}

/// The server side of STARTTLS, and where its certificate is.
pub struct DoorTls {
    pub config: Arc<rustls::ServerConfig>,
    pub certificate: PathBuf,
    /// SHA-256 of the certificate (DER), for a user comparing what a client shows.
    pub fingerprint: String,
}

/// The door's certificate and key in `dir`: as kept, or made now when absent, unreadable,
/// not of the kept key, or near its end.
pub fn door_tls(dir: &Path, cache_key: &[u8; 32]) -> Result<DoorTls, TlsError> {
    let cert_path = dir.join(CERTIFICATE_FILE);
    let key_path = dir.join(KEY_FILE);
    let kept = kept(&cert_path, &key_path, cache_key);
    let (cert_der, key_der) = match kept {
        Some(pair) => pair,
        None => {
            let (cert_der, key_der) = make()?;
            let pem = x509_cert::Certificate::from_der(&cert_der)
                .and_then(|c| c.to_pem(der::pem::LineEnding::LF))
                .map_err(|e| TlsError::Make(e.to_string()))?;
            write(&key_path, &seal(cache_key, KEY_CONTEXT, &key_der))?;
            write(&cert_path, pem.as_bytes())?;
            (cert_der, key_der)
        }
    };
    let fingerprint = base16ct::upper::encode_string(&<sha2::Sha256 as sha2::Digest>::digest(&cert_der));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Make(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert_der)],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
        )
        .map_err(|e| TlsError::Make(e.to_string()))?;
    Ok(DoorTls { config: Arc::new(config), certificate: cert_path, fingerprint })
}

/// The kept certificate (DER) and key (PKCS#8 DER), when both read, belong together and the
/// certificate is not near its end.
fn kept(cert_path: &Path, key_path: &Path, cache_key: &[u8; 32]) -> Option<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>)> {
    use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let pem = crate::files::read_regular(cert_path, 64 << 10).ok()?;
    let pem = std::str::from_utf8(&pem).ok()?;
    let cert = <x509_cert::Certificate as der::DecodePem>::from_pem(pem).ok()?;
    let key =
        zeroize::Zeroizing::new(open(cache_key, KEY_CONTEXT, &crate::files::read_regular(key_path, 64 << 10).ok()?)?);
    let secret = p256::SecretKey::from_pkcs8_der(&key).ok()?;
    let public = secret.public_key().to_public_key_der().ok()?;
    if cert.tbs_certificate.subject_public_key_info.to_der().ok()? != public.as_bytes() {
        return None;
    }
    let ends = cert.tbs_certificate.validity.not_after.to_system_time();
    if ends < std::time::SystemTime::now() + RENEW_BEFORE {
        return None;
    }
    Some((cert.to_der().ok()?, key))
}

/// A new P-256 key and a self-issued certificate for the loopback names.
fn make() -> Result<(Vec<u8>, zeroize::Zeroizing<Vec<u8>>), TlsError> {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey};
    use std::str::FromStr;
    use x509_cert::builder::{Builder, CertificateBuilder, Profile};
    use x509_cert::ext::pkix::name::GeneralName;
    use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
    let fail = |e: &dyn std::fmt::Display| TlsError::Make(e.to_string());
    let secret = p256::SecretKey::random(&mut rand_core::OsRng);
    let signer = p256::ecdsa::SigningKey::from(&secret);
    let spki_der = secret.public_key().to_public_key_der().map_err(|e| fail(&e))?;
    let spki = spki::SubjectPublicKeyInfoOwned::from_der(spki_der.as_bytes()).map_err(|e| fail(&e))?;
    let name = x509_cert::name::Name::from_str("CN=ssmax-card IMAP door (localhost)").map_err(|e| fail(&e))?;
    let mut serial = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut serial);
    serial[0] &= 0x7f;
    let serial = x509_cert::serial_number::SerialNumber::new(&serial).map_err(|e| fail(&e))?;
    let validity = x509_cert::time::Validity::from_now(LIFETIME).map_err(|e| fail(&e))?;
    let mut b = CertificateBuilder::new(
        Profile::Leaf {
            issuer: name.clone(),
            enable_key_agreement: false,
            enable_key_encipherment: false,
            // The yubikey crate turns on x509-cert's "hazmat", which adds this field.
            #[cfg(feature = "yubikey")]
            include_subject_key_identifier: true,
        },
        serial,
        validity,
        name,
        spki,
        &signer,
    )
    .map_err(|e| fail(&e))?;
    let ia5 = |s: &str| der::asn1::Ia5String::new(s).map_err(|e| fail(&e));
    let ip = |b: &[u8]| der::asn1::OctetString::new(b.to_vec()).map_err(|e| fail(&e));
    let names = vec![
        GeneralName::DnsName(ia5("localhost")?),
        GeneralName::IpAddress(ip(&[127, 0, 0, 1])?),
        GeneralName::IpAddress(ip(&std::net::Ipv6Addr::LOCALHOST.octets())?),
    ];
    b.add_extension(&SubjectAltName(names)).map_err(|e| fail(&e))?;
    b.add_extension(&ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_SERVER_AUTH])).map_err(|e| fail(&e))?;
    let cert = b.build::<p256::ecdsa::DerSignature>().map_err(|e| fail(&e))?;
    let key = secret.to_pkcs8_der().map_err(|e| fail(&e))?;
    Ok((cert.to_der().map_err(|e| fail(&e))?, zeroize::Zeroizing::new(key.as_bytes().to_vec())))
}

/// Written whole or not at all (a temporary file in the same directory, then renamed), 0600.
fn write(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    let io = |e: std::io::Error| TlsError::Io(path.to_path_buf(), e);
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_data().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_door_certificate_is_made_once_kept_with_its_key_sealed_and_made_again_if_the_key_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let key = [5u8; 32];
        let first = door_tls(dir.path(), &key).unwrap();
        let again = door_tls(dir.path(), &key).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint, "kept, not made at every start");
        let pem = std::fs::read_to_string(dir.path().join(CERTIFICATE_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        // The key is sealed: no PKCS#8 structure, no PEM, on the disk.
        let sealed = std::fs::read(dir.path().join(KEY_FILE)).unwrap();
        assert!(!sealed.starts_with(b"-----") && !sealed.starts_with(&[0x30]));
        // Under another cache key (the keyring lost it), a new pair is made.
        let other = door_tls(dir.path(), &[6u8; 32]).unwrap();
        assert_ne!(other.fingerprint, first.fingerprint);
    }
}
