//! Revocation by CRLs (RFC 5280 §5): the lists are parsed and applied by rustls-webpki during path
//! validation; here only the policy, the loading (PEM or DER, bounded), and the sentence that says
//! which certificate was revoked, when and why.

use super::{cert, CmsError};
use der::Decode;
use serde::{Deserialize, Serialize};
use webpki::{CertRevocationList, OwnedCertRevocationList};
use x509_cert::Certificate;

/// How strictly revocation is checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// No status for a certificate in the chain (no CRL for its issuer, or one out of date) is a
    /// failure.
    Require,
    /// A missing or out-of-date status is said as a warning; a revocation is still a failure.
    #[default]
    Prefer,
    /// Revocation is not looked at.
    Off,
}

/// What became of the revocation check of a chain that was otherwise valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Every certificate in the chain was covered by a current CRL, and none is on it.
    NotRevoked,
    /// Not known for every certificate (policy `prefer`): why.
    Unknown(String),
    /// Policy `off`.
    NotChecked,
}

impl Status {
    pub fn describe(&self) -> String {
        match self {
            Status::NotRevoked => crate::tr!("revocation-status-good"),
            Status::Unknown(why) => crate::tr!("revocation-status-unknown", why = why),
            Status::NotChecked => crate::tr!("revocation-status-off"),
        }
    }
}

/// A CRL as given: the DER, parsed once, in the form rustls-webpki checks against.
#[derive(Debug)]
pub struct Crl {
    pub der: Vec<u8>,
    pub list: CertRevocationList<'static>,
    /// Until when it is current (none: it does not say, and is never current).
    pub next_update: Option<std::time::SystemTime>,
}

/// Lists are shared, not copied: a parsed list holds a map of every revoked serial.
pub type Shared = std::sync::Arc<Crl>;

/// Asked, once a signature is parsed, for what its chain's certificates (DER) lead to, given
/// the anchors (DER) as the topmost's issuers.
pub type Finder<'a> = dyn FnMut(&[&[u8]], &[&[u8]]) -> Evidence + 'a;

/// What was found about a chain's certificates beyond the lists already given: CRLs from their
/// distribution points, OCSP answers from their responders.
#[derive(Debug, Default)]
pub struct Evidence {
    pub crls: Vec<Shared>,
    pub ocsp: Vec<super::ocsp::Shared>,
}

fn parse_der(der: Vec<u8>, what: &str) -> Result<Shared, CmsError> {
    let parsed = OwnedCertRevocationList::from_der(&der).map_err(|e| {
        CmsError::Malformed(match e {
            webpki::Error::UnsupportedIndirectCrl => format!("{what}: an indirect CRL, which is not supported"),
            webpki::Error::UnsupportedDeltaCrl => format!("{what}: a delta CRL, which is not supported"),
            e => format!("{what}: not a CRL ({e:?})"),
        })
    })?;
    let next_update = x509_cert::crl::CertificateList::from_der(&der)
        .ok()
        .and_then(|l| l.tbs_cert_list.next_update)
        .map(|t| t.to_system_time());
    Ok(std::sync::Arc::new(Crl { der, list: CertRevocationList::Owned(parsed), next_update }))
}

/// CRLs from the bytes of a file (`what` names it in errors): PEM (`X509 CRL` blocks, any
/// number) or one DER.
pub fn load_bytes(data: &[u8], what: &str) -> Result<Vec<Shared>, CmsError> {
    if data.trim_ascii_start().starts_with(b"-----BEGIN") {
        let text =
            std::str::from_utf8(data).map_err(|_| CmsError::Malformed(crate::tr!("crl-pem-not-text", what = what)))?;
        let mut out = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("-----BEGIN") {
            let block = &rest[start..];
            let end = block
                .find("-----END")
                .and_then(|e| block[e..].find('\n').map(|n| e + n + 1).or(Some(block.len())))
                .ok_or_else(|| CmsError::Malformed(crate::tr!("crl-pem-no-end", what = what)))?;
            let (label, der) = der::pem::decode_vec(&block.as_bytes()[..end])
                .map_err(|e| CmsError::Malformed(crate::tr!("crl-bad-pem", what = what, error = e.to_string())))?;
            if label != "X509 CRL" {
                return Err(CmsError::Malformed(crate::tr!("crl-pem-other", what = what, label = label)));
            }
            out.push(parse_der(der, what)?);
            rest = &block[end..];
        }
        if out.is_empty() {
            return Err(CmsError::Malformed(crate::tr!("crl-none-in", what = what)));
        }
        Ok(out)
    } else {
        Ok(vec![parse_der(data.to_vec(), what)?])
    }
}

pub fn load_file(path: &std::path::Path) -> Result<Vec<Shared>, CmsError> {
    load_bytes(&crate::files::read_regular(path, crate::files::MAX_CERT_FILE)?, &path.display().to_string())
}

/// The lists as rustls-webpki takes them.
pub fn as_webpki(crls: &[Shared]) -> Vec<&CertRevocationList<'static>> {
    crls.iter().map(|c| &c.list).collect()
}

/// "the certificate of X was revoked on DATE (reason)" for the first certificate of `chain` (DER,
/// signer first) that one of `crls` lists, or None.
pub fn who_is_revoked(chain: &[&[u8]], crls: &[Shared]) -> Option<String> {
    for der in chain {
        let Ok(c) = Certificate::from_der(der) else { continue };
        let issuer = der::Encode::to_der(&c.tbs_certificate.issuer).ok()?;
        let serial = c.tbs_certificate.serial_number.as_bytes();
        for crl in crls {
            let list = &crl.list;
            if list.issuer() != issuer_value(&issuer) {
                continue;
            }
            // The list keys serials as their DER INTEGER contents; a leading zero octet (for a
            // high first bit) may or may not be kept, so both forms are asked.
            let stripped = match serial {
                [0, rest @ ..] if !rest.is_empty() => rest,
                s => s,
            };
            let found = list.find_serial(serial).ok().flatten().or_else(|| list.find_serial(stripped).ok().flatten());
            if let Some(r) = found {
                let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.revocation_date.as_secs());
                let reason = r.reason_code.map(|c| reason_text(c as u8)).unwrap_or("no reason given");
                return Some(format!(
                    "the certificate '{}' (serial {}) was revoked on {} ({reason}) by {}",
                    cert::subject(&c),
                    c.tbs_certificate.serial_number,
                    cert::fmt_time(when),
                    cert::issuer(&c)
                ));
            }
        }
    }
    None
}

/// Is there a list from `c`'s issuer among `crls`, and (`current`) is it current at `now`?
pub fn list_for(c: &Certificate, crls: &[Shared], now: std::time::SystemTime) -> Option<bool> {
    let issuer = der::Encode::to_der(&c.tbs_certificate.issuer).ok()?;
    let mut found = None;
    for crl in crls.iter().filter(|l| l.list.issuer() == issuer_value(&issuer)) {
        let current = crl.next_update.is_some_and(|n| n > now);
        found = Some(found.unwrap_or(false) || current);
    }
    found
}

/// webpki gives the CRL issuer as the Name's contents, without the outer SEQUENCE header.
fn issuer_value(name_der: &[u8]) -> &[u8] {
    let header_len = match name_der.get(1) {
        Some(&n) if n < 0x80 => 2,
        Some(&n) => 2 + usize::from(n & 0x7F),
        None => return &[],
    };
    name_der.get(header_len..).unwrap_or_default()
}

/// The words for a CRLReason code (RFC 5280 §5.3.1), as CRLs and OCSP answers give it.
pub fn reason_text(code: u8) -> &'static str {
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

    #[test]
    fn a_certificate_is_not_taken_for_a_crl() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n";
        let e = load_bytes(pem, "x.pem").unwrap_err().to_string();
        assert!(e.contains("not an X509 CRL"), "{e}");
        let e = load_bytes(b"\x30\x03\x02\x01\x01", "x.der").unwrap_err().to_string();
        assert!(e.contains("x.der: not a CRL"), "{e}");
        assert!(load_bytes(b"", "empty").is_err());
    }

    #[test]
    fn the_crl_issuer_is_compared_without_the_names_outer_header() {
        assert_eq!(issuer_value(&[0x30, 0x03, 0x31, 0x01, 0x00]), &[0x31, 0x01, 0x00]);
        assert_eq!(issuer_value(&[0x30, 0x81, 0x01, 0x00]), &[0x00]);
        assert_eq!(issuer_value(&[0x30]), &[] as &[u8]);
    }
}
