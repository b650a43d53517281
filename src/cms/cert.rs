//! Reading what we need from X.509 certificates: mail addresses, usages, names, dates.

use super::CmsError;
use der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, KeyUsage, SubjectAltName, SubjectKeyIdentifier};
use x509_cert::Certificate;

/// id-kp-emailProtection (RFC 5280 §4.2.1.12) and anyExtendedKeyUsage.
pub const EKU_EMAIL: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.4");
pub const EKU_ANY: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("2.5.29.37.0");
/// The DER value bytes of id-kp-emailProtection, as rustls-webpki's `KeyUsage` wants them.
pub const EKU_EMAIL_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x04];

pub fn parse(der: &[u8]) -> Result<Certificate, CmsError> {
    check_size(der)?;
    super::bounds::check(der)?;
    Certificate::from_der(der).map_err(|e| CmsError::Malformed(format!("a certificate does not parse: {e}")))
}

/// Refuse certificates past `MAX_CERT_SIZE` before anything parses their extensions.
pub fn check_size(der: &[u8]) -> Result<(), CmsError> {
    if der.len() > super::MAX_CERT_SIZE {
        return Err(CmsError::Malformed(format!("a certificate of {} bytes is larger than the {} KiB accepted (huge extensions?)", der.len(), super::MAX_CERT_SIZE / 1024)));
    }
    Ok(())
}

/// Certificates from a file: PEM (any number) or one DER.
pub fn load_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, CmsError> {
    let data = std::fs::read(path).map_err(|e| CmsError::Malformed(format!("cannot read {}: {e}", path.display())))?;
    if data.starts_with(b"-----BEGIN") || data.windows(11).any(|w| w == b"-----BEGIN ") {
        let certs = Certificate::load_pem_chain(&data).map_err(|e| CmsError::Malformed(format!("{}: not PEM certificates: {e}", path.display())))?;
        certs.iter().map(|c| c.to_der().map_err(|e| CmsError::Malformed(e.to_string()))).collect()
    } else {
        parse(&data)?;
        Ok(vec![data])
    }
}

pub fn subject(cert: &Certificate) -> String {
    cert.tbs_certificate.subject.to_string()
}

pub fn issuer(cert: &Certificate) -> String {
    cert.tbs_certificate.issuer.to_string()
}

/// rfc822Name entries of the subjectAltName, lower-cased.
pub fn emails(cert: &Certificate) -> Vec<String> {
    match cert.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, san))) => san
            .0
            .iter()
            .filter_map(|n| match n {
                GeneralName::Rfc822Name(s) => Some(s.as_str().to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub fn key_usage(cert: &Certificate) -> Option<KeyUsage> {
    cert.tbs_certificate.get::<KeyUsage>().ok().flatten().map(|(_, ku)| ku)
}

pub fn extended_key_usage(cert: &Certificate) -> Option<ExtendedKeyUsage> {
    cert.tbs_certificate.get::<ExtendedKeyUsage>().ok().flatten().map(|(_, e)| e)
}

pub fn subject_key_id(cert: &Certificate) -> Option<Vec<u8>> {
    cert.tbs_certificate.get::<SubjectKeyIdentifier>().ok().flatten().map(|(_, s)| s.0.as_bytes().to_vec())
}

pub fn not_before(cert: &Certificate) -> std::time::SystemTime {
    cert.tbs_certificate.validity.not_before.to_system_time()
}

pub fn not_after(cert: &Certificate) -> std::time::SystemTime {
    cert.tbs_certificate.validity.not_after.to_system_time()
}

pub fn is_ca(cert: &Certificate) -> bool {
    use x509_cert::ext::pkix::BasicConstraints;
    matches!(cert.tbs_certificate.get::<BasicConstraints>(), Ok(Some((_, bc))) if bc.ca)
}

/// May this certificate sign mail? KU, when present, must allow digitalSignature or
/// nonRepudiation; EKU, when present, must include emailProtection or any (RFC 8550 §4.4).
pub fn check_signing_usage(cert: &Certificate) -> Result<(), String> {
    if let Some(ku) = key_usage(cert) {
        if !(ku.digital_signature() || ku.non_repudiation()) {
            return Err("its key usage does not allow digital signatures".into());
        }
    }
    check_email_eku(cert)
}

pub fn check_email_eku(cert: &Certificate) -> Result<(), String> {
    if let Some(eku) = extended_key_usage(cert) {
        if !eku.0.iter().any(|o| *o == EKU_EMAIL || *o == EKU_ANY) {
            return Err("its extended key usage does not include e-mail protection".into());
        }
    }
    Ok(())
}

pub fn fmt_time(t: std::time::SystemTime) -> String {
    match der::DateTime::from_system_time(t) {
        Ok(d) => format!("{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC", d.year(), d.month(), d.day(), d.hour(), d.minutes(), d.seconds()),
        Err(_) => "an unrepresentable time".into(),
    }
}
