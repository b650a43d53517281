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
    Certificate::from_der(der).map_err(|e| CmsError::Malformed(crate::tr!("cert-unparsable", error = e.to_string())))
}

/// Refuse certificates past `MAX_CERT_SIZE` before anything parses their extensions.
pub fn check_size(der: &[u8]) -> Result<(), CmsError> {
    if der.len() > super::MAX_CERT_SIZE {
        return Err(CmsError::Malformed(crate::tr!(
            "cert-too-large",
            size = der.len(),
            limit = super::MAX_CERT_SIZE / 1024
        )));
    }
    Ok(())
}

/// Certificates from a file: PEM (any number) or one DER, in a regular file of at most
/// `files::MAX_CERT_FILE`.
pub fn load_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, CmsError> {
    load_bytes(&crate::files::read_regular(path, crate::files::MAX_CERT_FILE)?, &path.display().to_string())
}

/// Certificates from the bytes of a file (`what` names it in errors): PEM (any number) or one DER.
pub fn load_bytes(data: &[u8], what: &str) -> Result<Vec<Vec<u8>>, CmsError> {
    if data.starts_with(b"-----BEGIN") || data.windows(11).any(|w| w == b"-----BEGIN ") {
        let certs = Certificate::load_pem_chain(data)
            .map_err(|e| CmsError::Malformed(crate::tr!("cert-not-pem", what = what, error = e.to_string())))?;
        certs.iter().map(|c| c.to_der().map_err(|e| CmsError::Malformed(e.to_string()))).collect()
    } else {
        parse(data)?;
        Ok(vec![data.to_vec()])
    }
}

pub fn subject(cert: &Certificate) -> String {
    name(&cert.tbs_certificate.subject)
}

pub fn issuer(cert: &Certificate) -> String {
    name(&cert.tbs_certificate.issuer)
}

/// PKCS #9 emailAddress, the subject attribute older CAs put the address in.
const EMAIL_ADDRESS: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");

/// A distinguished name as RFC 4514 writes it (most significant last), with every string type
/// decoded: Japanese company and person names often come as BMPString, old ones as
/// TeletexString. (UniversalString never gets here: `der` 0.7 cannot read its tag, so a
/// certificate using it does not parse.) Characters that would change how the line reads (controls, bidirectional
/// overrides) are escaped, so a name cannot pass itself off as another on a terminal.
pub fn name(n: &x509_cert::name::Name) -> String {
    let mut out = String::new();
    for (i, rdn) in n.0.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.0.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            attribute(&mut out, atv);
        }
    }
    out
}

fn attribute(out: &mut String, atv: &x509_cert::attr::AttributeTypeAndValue) {
    use std::fmt::Write;
    match (attribute_key(&atv.oid), string_value(&atv.value)) {
        (Some(key), Some(val)) => {
            out.push_str(&key);
            out.push('=');
            let last = val.chars().count().saturating_sub(1);
            for (i, c) in val.chars().enumerate() {
                match c {
                    '#' if i == 0 => out.push_str("\\#"),
                    ' ' if i == 0 || i == last => out.push_str("\\ "),
                    '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if misleading(c) => {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            let _ = write!(out, "\\{b:02x}");
                        }
                    }
                    c => out.push(c),
                }
            }
        }
        _ => {
            let _ = write!(out, "{}=#", atv.oid);
            for b in atv.value.to_der().unwrap_or_default() {
                let _ = write!(out, "{b:02x}");
            }
        }
    }
}

/// RFC 4514's short names for the usual attributes; other known ones by their name in
/// const-oid's database (a linear scan, so only for the unusual).
fn attribute_key(oid: &der::oid::ObjectIdentifier) -> Option<String> {
    use const_oid::db::rfc4519;
    let short = match *oid {
        rfc4519::CN => "CN",
        rfc4519::O => "O",
        rfc4519::OU => "OU",
        rfc4519::C => "C",
        rfc4519::L => "L",
        rfc4519::ST => "ST",
        rfc4519::STREET => "STREET",
        rfc4519::DC => "DC",
        rfc4519::UID => "UID",
        rfc4519::SERIAL_NUMBER => "SERIALNUMBER",
        EMAIL_ADDRESS => "emailAddress",
        _ => {
            return const_oid::db::DB.by_oid(oid).map(str::to_ascii_uppercase);
        }
    };
    Some(short.to_string())
}

/// Controls, and the format characters that reorder or hide text (l10n::misleading).
fn misleading(c: char) -> bool {
    c.is_control() || crate::l10n::misleading(c)
}

/// The organizationName values of a name, in order, joined by '+' (None when it has none).
pub fn organization(n: &x509_cert::name::Name) -> Option<String> {
    let values: Vec<String> =
        n.0.iter()
            .flat_map(|rdn| rdn.0.iter())
            .filter(|atv| atv.oid == const_oid::db::rfc4519::O)
            .filter_map(|atv| string_value(&atv.value))
            .collect();
    (!values.is_empty()).then(|| values.join("+"))
}

/// The text of a directory string, whatever its ASN.1 string type.
fn string_value(v: &der::Any) -> Option<String> {
    use der::{Tag, Tagged};
    let bytes = v.value();
    match v.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString | Tag::NumericString => {
            std::str::from_utf8(bytes).ok().map(str::to_string)
        }
        // T.61 in theory; Latin-1 in every certificate that uses it in practice.
        Tag::TeletexString => Some(bytes.iter().map(|&b| char::from(b)).collect()),
        Tag::BmpString => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            char::decode_utf16(bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])))
                .collect::<Result<String, _>>()
                .ok()
        }
        _ => None,
    }
}

/// The certificate's e-mail addresses, lower-cased: rfc822Name entries of the subjectAltName
/// and, as RFC 8550 §3 still allows, PKCS #9 emailAddress attributes of the subject.
pub fn emails(cert: &Certificate) -> Vec<String> {
    let mut out: Vec<String> = match cert.tbs_certificate.get::<SubjectAltName>() {
        Ok(Some((_, san))) => san
            .0
            .iter()
            .filter_map(|n| match n {
                GeneralName::Rfc822Name(s) => Some(s.as_str().to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    for atv in cert.tbs_certificate.subject.0.iter().flat_map(|rdn| rdn.0.iter()) {
        if atv.oid == EMAIL_ADDRESS {
            if let Some(e) = string_value(&atv.value).filter(|e| e.is_ascii() && e.contains('@')) {
                let e = e.to_ascii_lowercase();
                if !out.contains(&e) {
                    out.push(e);
                }
            }
        }
    }
    out
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
            return Err(crate::tr!("cert-usage-no-signature"));
        }
    }
    check_email_eku(cert)
}

pub fn check_email_eku(cert: &Certificate) -> Result<(), String> {
    if let Some(eku) = extended_key_usage(cert) {
        if !eku.0.iter().any(|o| *o == EKU_EMAIL || *o == EKU_ANY) {
            return Err(crate::tr!("cert-usage-no-email"));
        }
    }
    Ok(())
}

/// Why a signature over some `tbs` bytes is not one by a certificate's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotSignedBy {
    /// The signer's certificate could not be read by rustls-webpki.
    Certificate(String),
    /// No algorithm rustls-webpki knows is named by this identifier.
    Algorithm(der::oid::ObjectIdentifier),
    /// Known algorithm, and the signature does not verify with the key.
    Signature,
}

impl std::fmt::Display for NotSignedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotSignedBy::Certificate(e) => write!(f, "the signer's certificate: {e}"),
            NotSignedBy::Algorithm(oid) => write!(f, "an unsupported algorithm ({oid})"),
            NotSignedBy::Signature => write!(f, "it does not verify with the signer's key"),
        }
    }
}

/// Is `signature` over `tbs` (exactly as received) made by the key of `signer` (DER), with the
/// algorithm `alg` names? The algorithms are rustls-webpki's, named as it names them (an
/// AlgorithmIdentifier's contents); the same check OCSP answers and CRLs both get.
pub fn signed_by(
    signer: &[u8],
    alg: &spki::AlgorithmIdentifierOwned,
    tbs: &[u8],
    signature: &[u8],
) -> Result<(), NotSignedBy> {
    let signer = rustls_pki_types::CertificateDer::from(signer);
    let ee = webpki::EndEntityCert::try_from(&signer).map_err(|e| NotSignedBy::Certificate(format!("{e:?}")))?;
    let alg_der = alg.to_der().map_err(|_| NotSignedBy::Algorithm(alg.oid))?;
    let alg_id = der::asn1::AnyRef::from_der(&alg_der).map_err(|_| NotSignedBy::Algorithm(alg.oid))?.value().to_vec();
    let mut known = false;
    for a in webpki::ALL_VERIFICATION_ALGS.iter().filter(|a| a.signature_alg_id().as_ref() == alg_id.as_slice()) {
        known = true;
        if ee.verify_signature(*a, tbs, signature).is_ok() {
            return Ok(());
        }
    }
    Err(if known { NotSignedBy::Signature } else { NotSignedBy::Algorithm(alg.oid) })
}

pub fn fmt_time(t: std::time::SystemTime) -> String {
    match der::DateTime::from_system_time(t) {
        Ok(d) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
            d.year(),
            d.month(),
            d.day(),
            d.hour(),
            d.minutes(),
            d.seconds()
        ),
        Err(_) => "an unrepresentable time".into(),
    }
}

/// The words for a CRLReason code (RFC 5280 §5.3.1), as CRLs and OCSP answers give it.
pub fn revocation_reason(code: u8) -> &'static str {
    match code {
        0 => "unspecified",
        1 => "key compromise",
        2 => "CA compromise",
        3 => "affiliation changed",
        4 => "superseded",
        5 => "cessation of operation",
        6 => "certificate hold",
        8 => "removed from CRL",
        9 => "privilege withdrawn",
        10 => "AA compromise",
        _ => "a reason this program does not know",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_cert::name::Name;

    fn name_of(s: &str) -> Name {
        s.parse().unwrap()
    }

    #[test]
    fn a_name_cannot_reorder_or_hide_text_on_the_terminal() {
        // U+202E (right-to-left override) would print "CN=Alice" backwards after it.
        let n = name_of("CN=Alice\u{202e}gpj.exe,O=Example\nOrg");
        assert_eq!(name(&n), "CN=Alice\\e2\\80\\aegpj.exe,O=Example\\0aOrg");
    }

    #[test]
    fn rfc4514_specials_are_escaped() {
        assert_eq!(name(&name_of("CN=Smith\\, John,O=A\\+B")), "CN=Smith\\, John,O=A\\+B");
    }
}
