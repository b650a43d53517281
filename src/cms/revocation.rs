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
    /// When it was issued: of two lists from one issuer, the newer speaks.
    pub this_update: std::time::SystemTime,
}

impl Crl {
    /// Before its nextUpdate at `t` (a list that names none is never current).
    pub fn current_at(&self, t: std::time::SystemTime) -> bool {
        self.next_update.is_some_and(|n| n > t)
    }
}

/// Lists are shared, not copied: a parsed list holds a map of every revoked serial.
pub type Shared = std::sync::Arc<Crl>;

/// Asked, once a signature and its chain are good, for the evidence about the path validated.
pub type Finder<'a> = dyn FnMut(&super::verify::ValidPath) -> Evidence + 'a;

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
    let tbs = x509_cert::crl::CertificateList::from_der(&der).ok().map(|l| l.tbs_cert_list);
    let next_update = tbs.as_ref().and_then(|t| t.next_update).map(|t| t.to_system_time());
    let this_update = tbs.map(|t| t.this_update.to_system_time()).unwrap_or(std::time::UNIX_EPOCH);
    Ok(std::sync::Arc::new(Crl { der, list: CertRevocationList::Owned(parsed), next_update, this_update }))
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

/// The lists as rustls-webpki takes them, the newest first. rustls-webpki asks only the first
/// list that covers a certificate: an older list from the same issuer (a stale file named in the
/// config, or one an attacker on the path replays) must not stand in front of the one that
/// revokes it.
pub fn as_webpki(crls: &[Shared]) -> Vec<&CertRevocationList<'static>> {
    let mut newest_first: Vec<&Shared> = crls.iter().collect();
    newest_first.sort_by_key(|c| std::cmp::Reverse(c.this_update));
    newest_first.into_iter().map(|c| &c.list).collect()
}

/// One certificate of a validated path and its issuer there (the next certificate, or the
/// anchor): the pair revocation evidence must be about. `end_entity`: the first of the path.
#[derive(Debug, Clone, Copy)]
pub struct Link<'a> {
    pub cert: &'a Certificate,
    pub issuer_der: &'a [u8],
    pub issuer: &'a Certificate,
    pub end_entity: bool,
}

/// "the certificate of X was revoked on DATE (reason)" for the first certificate of `links`
/// (signer first) that the newest list speaking for it names; or None.
pub fn who_is_revoked(links: &[Link<'_>], crls: &[Shared]) -> Option<String> {
    links.iter().find_map(|link| {
        let c = link.cert;
        let list = &newest_for(link, crls)?.list;
        // The list keys serials as their DER INTEGER contents; a leading zero octet (for a high
        // first bit) may or may not be kept, so both forms are asked.
        let serial = c.tbs_certificate.serial_number.as_bytes();
        let stripped = match serial {
            [0, rest @ ..] if !rest.is_empty() => rest,
            s => s,
        };
        let r = list.find_serial(serial).ok().flatten().or_else(|| list.find_serial(stripped).ok().flatten())?;
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(r.revocation_date.as_secs());
        let reason = r.reason_code.map(|c| super::cert::revocation_reason(c as u8)).unwrap_or("no reason given");
        Some(format!(
            "the certificate '{}' (serial {}) was revoked on {} ({reason}) by {}",
            cert::subject(c),
            c.tbs_certificate.serial_number,
            cert::fmt_time(when),
            cert::issuer(c)
        ))
    })
}

/// Is there a list that speaks for `link` among `crls`, and (`current`) is the newest of them
/// current at `now`?
pub fn list_for(link: &Link<'_>, crls: &[Shared], now: std::time::SystemTime) -> Option<bool> {
    newest_for(link, crls).map(|crl| crl.current_at(now))
}

/// Of the lists that speak for `link`, the newest (latest thisUpdate): what it says is what the
/// issuer says now; an older one cannot take back a revocation.
pub fn newest_for<'a>(link: &Link<'_>, crls: &'a [Shared]) -> Option<&'a Crl> {
    crls.iter().filter(|l| speaks_for(l, link)).max_by_key(|l| l.this_update).map(|l| l.as_ref())
}

/// Does `crl` speak for `link.cert`: issued under the name of its issuer, signed by the key of
/// the issuer of the validated path, with a scope (issuingDistributionPoint) that takes the
/// certificate in? What rustls-webpki asks of a list during path validation, asked of one link.
pub fn speaks_for(crl: &Crl, link: &Link<'_>) -> bool {
    let Ok(issuer) = der::Encode::to_der(&link.cert.tbs_certificate.issuer) else { return false };
    if crl.list.issuer() != issuer_value(&issuer) {
        return false;
    }
    // Parsed once; the signature, the costly part, checked last.
    let Ok(list) = x509_cert::crl::CertificateList::from_der(&crl.der) else { return false };
    in_scope(&list, link) && signed_under(crl, &list, link.issuer_der)
}

/// Is the list signed by the key of `issuer` (DER)? Checked over its tbsCertList as received.
pub fn signed_by_issuer(crl: &Crl, issuer: &[u8]) -> bool {
    x509_cert::crl::CertificateList::from_der(&crl.der).is_ok_and(|list| signed_under(crl, &list, issuer))
}

fn signed_under(crl: &Crl, list: &x509_cert::crl::CertificateList, issuer: &[u8]) -> bool {
    let (Some(tbs), Some(signature)) = (first_element(&crl.der), list.signature.as_bytes()) else { return false };
    cert::signed_by(issuer, &list.signature_algorithm, tbs, signature).is_ok()
}

/// The first element inside the outer SEQUENCE of `der`, header included, exactly as it is.
fn first_element(der: &[u8]) -> Option<&[u8]> {
    use der::Reader;
    let mut outer = der::SliceReader::new(der).ok()?;
    let header = der::Header::decode(&mut outer).ok()?;
    let body = outer.read_slice(header.length).ok()?;
    let mut inner = der::SliceReader::new(body).ok()?;
    let first = der::Header::decode(&mut inner).ok()?;
    let len = usize::try_from((der::Encode::encoded_len(&first).ok()? + first.length).ok()?).ok()?;
    body.get(..len)
}

/// The scope an issuingDistributionPoint gives, as RFC 5280 §5.2.5 and rustls-webpki read it:
/// no extension covers every certificate of the issuer; user-only and CA-only lists cover only
/// those; a certificate that names distribution points is covered by a list whose point names
/// one of the same URIs.
fn in_scope(list: &x509_cert::crl::CertificateList, link: &Link<'_>) -> bool {
    use x509_cert::ext::pkix::crl::dp::IssuingDistributionPoint;
    use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
    let Some(ext) = list
        .tbs_cert_list
        .crl_extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == <IssuingDistributionPoint as const_oid::AssociatedOid>::OID)
    else {
        return true;
    };
    let Ok(idp) = IssuingDistributionPoint::from_der(ext.extn_value.as_bytes()) else { return false };
    if idp.only_contains_attribute_certs
        || idp.indirect_crl
        || idp.only_some_reasons.is_some()
        || (idp.only_contains_user_certs && !link.end_entity)
        || (idp.only_contains_ca_certs && link.end_entity)
    {
        return false;
    }
    let Ok(Some((_, points))) = link.cert.tbs_certificate.get::<x509_cert::ext::pkix::CrlDistributionPoints>() else {
        return true;
    };
    let uris = |name: &Option<DistributionPointName>| -> Vec<String> {
        match name {
            Some(DistributionPointName::FullName(names)) => names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::UniformResourceIdentifier(u) => Some(u.to_string()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    };
    let listed = uris(&idp.distribution_point);
    points
        .0
        .iter()
        .filter(|p| p.crl_issuer.is_none() && p.reasons.is_none())
        .any(|p| uris(&p.distribution_point).iter().any(|u| listed.contains(u)))
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
