//! SignedData verification, fail-closed: the message digest, the signature (checked with the
//! end-entity certificate by rustls-webpki), the chain to a trust anchor at signing time and now,
//! and e-mail protection usage. Any failure names what failed.

use super::signed::{self, Oid, RawAttribute, SignerInfo};
use super::{cert, ocsp, revocation, CmsError};
use cms::cert::CertificateChoices;
use cms::signed_data::SignerIdentifier;
use const_oid::db::{rfc5911, rfc5912};
use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use std::time::{Duration, SystemTime};
use webpki::ring as algs;
use x509_cert::Certificate;

/// Where trust comes from: anchors (token anchors, `--ca`), and certificates that may help
/// build a chain or identify a signer (token CA certificates, `--certfile`).
#[derive(Debug, Default, Clone)]
pub struct Trust {
    pub anchors: Vec<Vec<u8>>,
    pub intermediates: Vec<Vec<u8>>,
    /// CRLs to check every certificate of the chain against, and how strictly.
    pub crls: Vec<revocation::Shared>,
    /// Checked OCSP answers about certificates of the chain.
    pub ocsp: Vec<ocsp::Shared>,
    pub revocation: revocation::Policy,
    /// How long past its nextUpdate a CRL still counts (said in the status).
    pub grace: Duration,
}

#[derive(Debug, Clone)]
pub struct SignerReport {
    pub subject: String,
    pub issuer: String,
    pub emails: Vec<String>,
    /// Subjects from the signer up to the anchor, along the path rustls-webpki validated.
    pub chain: Vec<String>,
    /// That path (None when the signer's own certificate is an anchor).
    pub path: Option<ValidPath>,
    pub signing_time: Option<SystemTime>,
    pub algorithm: String,
    pub not_after: SystemTime,
    /// The signer's own certificate was given as a trust anchor (no issuer chain).
    pub pinned: bool,
    /// What the revocation check found (a revoked certificate is a failure, not a report).
    pub revocation: revocation::Status,
    /// The signer's certificate (DER) and every signed attribute, for profiles built on top.
    pub cert_der: Vec<u8>,
    pub attributes: Vec<RawAttribute>,
}

#[derive(Debug)]
pub struct Verified {
    pub signers: Vec<SignerReport>,
    /// The signed content: the encapsulated content, or the detached content given.
    pub content: Vec<u8>,
    /// The certificates the signature carries (DER, each once): material to build other paths
    /// with, never trusted for being there.
    pub carried: Vec<Vec<u8>>,
}

const ID_ED25519: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.101.112");
const ID_RSASSA_PSS: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const ID_EC_PUBLIC_KEY: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP384R1: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.3.132.0.34");

pub fn verify(der: &[u8], detached: Option<&[u8]>, trust: &Trust, now: SystemTime) -> Result<Verified, CmsError> {
    verify_with_lists(der, detached, trust, now, &mut |_| revocation::Evidence::default())
}

/// `verify`, with `lists` asked for the revocation evidence (CRLs, OCSP answers) of each signer's
/// validated path, once every signature and chain has been checked.
pub fn verify_with_lists(
    der: &[u8],
    detached: Option<&[u8]>,
    trust: &Trust,
    now: SystemTime,
    lists: &mut revocation::Finder<'_>,
) -> Result<Verified, CmsError> {
    let sd = signed::parse(der)?;
    let econtent = signed::econtent(&sd);
    let content = match (econtent, detached) {
        // Well-formed, but a detached signature must not carry content of its own (RFC 8551
        // §3.5.3); which of the two would the reader be shown? Refused as a verification.
        (Some(_), Some(_)) => return Err(CmsError::Verify(crate::tr!("verify-content-twice"))),
        (Some(c), None) => c,
        (None, Some(d)) => d.to_vec(),
        (None, None) => return Err(CmsError::Malformed("detached signature without the signed content".into())),
    };
    if sd.signer_infos.is_empty() {
        return Err(CmsError::Verify(crate::tr!("verify-no-signers")));
    }
    if sd.signer_infos.len() > super::MAX_SIGNERS {
        return Err(CmsError::Malformed(format!(
            "the signature has {} signers; more than {} are refused",
            sd.signer_infos.len(),
            super::MAX_SIGNERS
        )));
    }
    let carried = sd.certificates.as_ref().map_or(0, |s| s.len());
    if carried > super::MAX_CERTIFICATES {
        return Err(CmsError::Malformed(format!(
            "the signature carries {carried} certificates; more than {} are refused",
            super::MAX_CERTIFICATES
        )));
    }
    let mut embedded: Vec<Vec<u8>> = Vec::new();
    for c in sd.certificates.iter().flat_map(|s| s.iter()) {
        if let CertificateChoices::Certificate(c) = c {
            let der = c.to_der().map_err(|e| CmsError::Malformed(e.to_string()))?;
            cert::check_size(&der)?;
            // NSS carries the signer's certificate twice by default.
            if !embedded.contains(&der) {
                embedded.push(der);
            }
        }
    }
    let mut signers = Vec::new();
    for si in sd.signer_infos.iter() {
        signers.push(verify_signer(si, sd.encap_content_info.econtent_type, &content, &embedded, trust, now)?);
    }
    // Only now, every signature and chain good, is revocation evidence sought: for the paths
    // rustls-webpki validated, never for what else the sender put in the signature.
    let mut trust = std::borrow::Cow::Borrowed(trust);
    for s in &mut signers {
        let Some(path) = &s.path else {
            // Trusted as itself: no issuer here whose word on it could be had.
            if trust.revocation == revocation::Policy::Require {
                return Err(CmsError::Verify(crate::tr!("revocation-required-pinned", who = s.subject)));
            }
            s.revocation = match trust.revocation {
                revocation::Policy::Off => revocation::Status::NotChecked,
                _ => revocation::Status::Unknown(crate::tr!("revocation-signer-is-anchor")),
            };
            continue;
        };
        let fetched = lists(path);
        if !fetched.crls.is_empty() || !fetched.ocsp.is_empty() {
            let t = trust.to_mut();
            t.crls.extend(fetched.crls);
            t.ocsp.extend(fetched.ocsp);
        }
        // Revocation is judged now, whatever the signing time says: a signing time is the
        // signer's own claim, and a stolen key can claim any.
        s.revocation = check_revocation(path, &trust, now)
            .map_err(|e| CmsError::Verify(revocation_error(&s.subject, path, &trust, e)))?;
    }
    Ok(Verified { signers, content, carried: embedded })
}

fn find_signer_cert(sid: &SignerIdentifier, pool: &[&Vec<u8>]) -> Option<(Vec<u8>, Certificate)> {
    pool.iter().filter_map(|d| Certificate::from_der(d).ok().map(|c| ((*d).clone(), c))).find(|(_, c)| match sid {
        SignerIdentifier::IssuerAndSerialNumber(ias) => {
            c.tbs_certificate.issuer == ias.issuer && c.tbs_certificate.serial_number == ias.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(ski) => cert::subject_key_id(c).as_deref() == Some(ski.0.as_bytes()),
    })
}

fn attr(si: &SignerInfo, oid: der::oid::ObjectIdentifier) -> Result<Option<&der::Any>, CmsError> {
    si.attr(&Oid::from_const(oid))
}

fn verify_signer(
    si: &SignerInfo,
    econtent_type: der::oid::ObjectIdentifier,
    content: &[u8],
    embedded: &[Vec<u8>],
    trust: &Trust,
    now: SystemTime,
) -> Result<SignerReport, CmsError> {
    let pool: Vec<&Vec<u8>> = embedded.iter().chain(&trust.intermediates).chain(&trust.anchors).collect();
    let (signer_der, signer) =
        find_signer_cert(&si.sid, &pool).ok_or_else(|| CmsError::Verify(crate::tr!("verify-no-signer-certificate")))?;
    let who = cert::subject(&signer);

    // What was signed: the DER of the signed attributes (as a SET), or the content itself.
    let mut signing_time = None;
    let signed_bytes = match &si.signed_attrs {
        Some(attrs) => {
            let digest_alg = &si.digest_alg.oid;
            let hash = super::sign::digest_for(digest_alg);
            let md = attr(si, rfc5911::ID_MESSAGE_DIGEST)?
                .ok_or_else(|| CmsError::Verify(crate::tr!("verify-no-message-digest")))?;
            let md = md
                .decode_as::<der::asn1::OctetString>()
                .map_err(|e| CmsError::Malformed(format!("message digest: {e}")))?;
            let computed = match hash {
                Some(h) => h.digest(content),
                None => return Err(refused(&who, digest_alg)),
            };
            if md.as_bytes() != computed.as_slice() {
                return Err(CmsError::Verify(crate::tr!("verify-content-altered", who = who)));
            }
            let ct = attr(si, rfc5911::ID_CONTENT_TYPE)?
                .ok_or_else(|| CmsError::Verify(crate::tr!("verify-no-content-type")))?;
            if ct.decode_as::<der::oid::ObjectIdentifier>().ok() != Some(econtent_type) {
                return Err(CmsError::Verify(crate::tr!("verify-content-type-differs")));
            }
            if let Some(t) = attr(si, rfc5911::ID_SIGNING_TIME)? {
                signing_time = Some(parse_time(t)?);
            }
            attrs.to_der().map_err(|e| CmsError::Malformed(e.to_string()))?
        }
        None => content.to_vec(),
    };
    let (check, alg_name) = signature_alg(si, &signer, &who)?;
    let cert_der = CertificateDer::from(signer_der.as_slice());
    let ee = webpki::EndEntityCert::try_from(&cert_der).map_err(|e| {
        CmsError::Verify(crate::tr!("verify-certificate-unacceptable", who = who, error = format!("{e:?}")))
    })?;
    let altered = |why: String| CmsError::Verify(crate::tr!("verify-signature-altered", who = who, why = why));
    match check {
        Check::Webpki(alg) => {
            ee.verify_signature(alg, &signed_bytes, si.signature.as_bytes()).map_err(|e| altered(format!("{e:?}")))?
        }
        Check::Pss(p) => {
            let key = signer.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
            if !super::pss::verify(key, p, &signed_bytes, si.signature.as_bytes()) {
                return Err(altered("RSA-PSS".into()));
            }
        }
    }

    cert::check_signing_usage(&signer)
        .map_err(|r| CmsError::Verify(crate::tr!("verify-certificate-usage", who = who, reason = r)))?;
    let pinned = trust.anchors.contains(&signer_der);
    let mut times = vec![(crate::tr!("verify-when-now"), now)];
    if let Some(t) = signing_time {
        times.insert(0, (crate::tr!("verify-when-signed"), t));
        if t > now + Duration::from_secs(300) {
            return Err(CmsError::Verify(crate::tr!("verify-signing-time-future", when = cert::fmt_time(t))));
        }
    }
    let path = if pinned {
        for (when, t) in &times {
            if *t < cert::not_before(&signer) || *t > cert::not_after(&signer) {
                return Err(CmsError::Verify(crate::tr!(
                    "verify-certificate-not-valid",
                    who = who,
                    when = when,
                    from = cert::fmt_time(cert::not_before(&signer)),
                    until = cert::fmt_time(cert::not_after(&signer))
                )));
            }
        }
        None
    } else {
        if trust.anchors.is_empty() {
            return Err(CmsError::Verify(crate::tr!("verify-no-anchors")));
        }
        let mut now_path = None;
        for (when, t) in &times {
            let p = valid_path(&signer_der, embedded, trust, *t)
                .map_err(|e| CmsError::Verify(chain_error(&who, &signer, when, e)))?;
            now_path = Some(p);
        }
        // `times` ends with now: the path reported and checked for revocation is today's.
        now_path
    };
    let chain = match &path {
        Some(p) => p.subjects(),
        None => vec![who.clone()],
    };
    Ok(SignerReport {
        subject: who,
        issuer: cert::issuer(&signer),
        emails: cert::emails(&signer),
        chain,
        path,
        signing_time,
        algorithm: alg_name,
        not_after: cert::not_after(&signer),
        pinned,
        // Judged by the caller once every signer's chain is known good.
        revocation: revocation::Status::NotChecked,
        cert_der: signer_der,
        attributes: si.signed_attrs.as_ref().map(|a| a.iter().cloned().collect()).unwrap_or_default(),
    })
}

/// A path rustls-webpki validated to one of the anchors: the end-entity certificate first, then
/// each issuer, the anchor last (DER as given, and parsed). Revocation evidence is sought and
/// counted only for the links of such a path, each certificate with the issuer it has there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPath {
    der: Vec<Vec<u8>>,
    parsed: Vec<Certificate>,
}

impl ValidPath {
    /// Every certificate, signer first, anchor last.
    pub fn certificates(&self) -> &[Vec<u8>] {
        &self.der
    }

    pub fn end_entity(&self) -> &[u8] {
        &self.der[0]
    }

    pub fn anchor(&self) -> &[u8] {
        &self.der[self.der.len() - 1]
    }

    /// The certificates between the end entity and the anchor.
    pub fn intermediates(&self) -> &[Vec<u8>] {
        &self.der[1..self.der.len() - 1]
    }

    /// Each certificate but the anchor, with its issuer on the path.
    pub fn links(&self) -> Vec<revocation::Link<'_>> {
        (0..self.der.len() - 1)
            .map(|i| revocation::Link {
                cert: &self.parsed[i],
                issuer_der: &self.der[i + 1],
                issuer: &self.parsed[i + 1],
                end_entity: i == 0,
            })
            .collect()
    }

    pub fn subjects(&self) -> Vec<String> {
        self.parsed.iter().map(cert::subject).collect()
    }
}

/// The path by which `ee` chains to one of `trust.anchors` at `time`, for e-mail protection,
/// through `extra` and `trust.intermediates`.
pub fn valid_path(ee: &[u8], extra: &[Vec<u8>], trust: &Trust, time: SystemTime) -> Result<ValidPath, webpki::Error> {
    let inter: Vec<&[u8]> = extra.iter().chain(&trust.intermediates).map(|d| d.as_slice()).collect();
    let anchors: Vec<&[u8]> = trust.anchors.iter().map(|d| d.as_slice()).collect();
    webpki_path(ee, &inter, &anchors, time, None)
}

/// Does `ee` chain to one of `trust.anchors` at `time`, for e-mail protection?
pub fn check_chain(ee: &[u8], extra: &[Vec<u8>], trust: &Trust, time: SystemTime) -> Result<(), webpki::Error> {
    valid_path(ee, extra, trust, time).map(|_| ())
}

/// The revocation status of every certificate of a validated `path` at `time`, by `trust.crls`
/// and `trust.ocsp` under `trust.revocation`. A revoked certificate, or (`require`) one whose
/// status is unknown or whose CRL is out of date, is an error; under `prefer` those two are a
/// status to report. Each certificate is known by a current CRL or a current OCSP answer from
/// its issuer on the path: a list counts only if that issuer's key signed it, an answer only if
/// it was checked against that issuer.
pub fn check_revocation(
    path: &ValidPath,
    trust: &Trust,
    time: SystemTime,
) -> Result<revocation::Status, webpki::Error> {
    use revocation::{Policy, Status};
    use webpki::{ExpirationPolicy, RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy};
    if trust.revocation == Policy::Off {
        return Ok(Status::NotChecked);
    }
    let links = path.links();
    let ocsp_says = |l: &revocation::Link<'_>| trust.ocsp.iter().find(|a| a.about(l.cert, l.issuer)).map(|a| &a.state);
    if links.iter().any(|l| matches!(ocsp_says(l), Some(ocsp::State::Revoked { .. }))) {
        return Err(webpki::Error::CertRevoked);
    }
    let refs = revocation::as_webpki(&trust.crls);
    if let Ok(builder) = RevocationOptionsBuilder::new(&refs) {
        // The same path again, now with the lists: its intermediates and its anchor only.
        let inter: Vec<&[u8]> = path.intermediates().iter().map(|d| d.as_slice()).collect();
        let run = |status, expiry| {
            let options = builder
                .with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(status)
                .with_expiration_policy(expiry)
                .build();
            webpki_path(path.end_entity(), &inter, &[path.anchor()], time, Some(options))
        };
        // A certificate that any list there names fails, whatever the policy and the list's age.
        run(UnknownStatusPolicy::Allow, ExpirationPolicy::Ignore)?;
        if run(UnknownStatusPolicy::Deny, ExpirationPolicy::Enforce).is_ok() {
            return Ok(Status::NotRevoked);
        }
    }
    let (mut stale, mut unknown, mut in_grace) = (false, false, false);
    let graced = time.checked_sub(trust.grace).unwrap_or(time);
    for l in &links {
        if matches!(ocsp_says(l), Some(ocsp::State::Good)) {
            continue;
        }
        match revocation::newest_for(l, &trust.crls).map(|c| (c.current_at(time), c.current_at(graced))) {
            Some((true, _)) => {}
            Some((_, true)) => in_grace = true,
            Some(_) => stale = true,
            None => unknown = true,
        }
    }
    match (unknown, stale, trust.revocation) {
        (false, false, _) if in_grace => {
            Ok(Status::Unknown(crate::tr!("revocation-in-grace", hours = trust.grace.as_secs() / 3600)))
        }
        (false, false, _) => Ok(Status::NotRevoked),
        (true, _, Policy::Require) => Err(webpki::Error::UnknownRevocationStatus),
        (false, true, Policy::Require) => Err(webpki::Error::CrlExpired {
            time: UnixTime::since_unix_epoch(time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default()),
            next_update: UnixTime::since_unix_epoch(Duration::ZERO),
        }),
        (true, _, _) if trust.crls.is_empty() && trust.ocsp.is_empty() => {
            Ok(Status::Unknown(crate::tr!("revocation-nothing-to-be-had")))
        }
        (true, _, _) => Ok(Status::Unknown(crate::tr!("revocation-not-covered"))),
        (false, true, _) => Ok(Status::Unknown(crate::tr!("revocation-out-of-date"))),
    }
}

/// One sentence for a revocation failure of `path`.
pub fn revocation_error(who: &str, path: &ValidPath, trust: &Trust, e: webpki::Error) -> String {
    match e {
        webpki::Error::CertRevoked => {
            let links = path.links();
            match revocation::who_is_revoked(&links, &trust.crls).or_else(|| ocsp_revoked(&links, &trust.ocsp)) {
                Some(r) => crate::tr!("revoked-named", revoked = r, who = who),
                None => crate::tr!("revoked-in-chain", who = who),
            }
        }
        webpki::Error::UnknownRevocationStatus => crate::tr!("revocation-required-unknown", who = who),
        webpki::Error::CrlExpired { .. } => crate::tr!("revocation-required-stale", who = who),
        other => crate::tr!("revocation-check-failed", who = who, error = format!("{other:?}")),
    }
}

/// "the certificate of X was revoked on DATE (reason), says the OCSP responder …" for the first
/// link an answer calls revoked.
fn ocsp_revoked(links: &[revocation::Link<'_>], answers: &[ocsp::Shared]) -> Option<String> {
    links.iter().find_map(|l| {
        answers.iter().filter(|a| a.about(l.cert, l.issuer)).find_map(|a| match &a.state {
            ocsp::State::Revoked { at, reason } => Some(crate::tr!(
                "revoked-by-ocsp",
                subject = cert::subject(l.cert),
                serial = l.cert.tbs_certificate.serial_number.to_string(),
                when = cert::fmt_time(*at),
                reason = reason.to_string(),
                responder = a.signed_by
            )),
            _ => None,
        })
    })
}

/// rustls-webpki's path from `ee` through `intermediates` to one of `anchors` at `time` for
/// e-mail protection (with `revocation`, checked against its lists), as DER signer first.
fn webpki_path(
    ee: &[u8],
    intermediates: &[&[u8]],
    anchors: &[&[u8]],
    time: SystemTime,
    revocation: Option<webpki::RevocationOptions<'_>>,
) -> Result<ValidPath, webpki::Error> {
    let cert_der = CertificateDer::from(ee);
    let end_entity = webpki::EndEntityCert::try_from(&cert_der)?;
    let trusted: Vec<(&[u8], rustls_pki_types::TrustAnchor<'static>)> = anchors
        .iter()
        .filter_map(|a| webpki::anchor_from_trusted_cert(&CertificateDer::from(*a)).ok().map(|t| (*a, t.to_owned())))
        .collect();
    let roots: Vec<_> = trusted.iter().map(|(_, t)| t.clone()).collect();
    let inter: Vec<CertificateDer<'_>> = intermediates.iter().map(|d| CertificateDer::from(*d)).collect();
    let unix = UnixTime::since_unix_epoch(time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
    let verified = end_entity.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &roots,
        &inter,
        unix,
        webpki::KeyUsage::required_if_present(cert::EKU_EMAIL_DER),
        revocation,
        None,
    )?;
    let mut der = vec![ee.to_vec()];
    der.extend(verified.intermediate_certificates().map(|c| c.der().to_vec()));
    let anchor = verified.anchor();
    let (anchor_der, _) = trusted
        .iter()
        .find(|(_, t)| t.subject == anchor.subject && t.subject_public_key_info == anchor.subject_public_key_info)
        .ok_or(webpki::Error::UnknownIssuer)?;
    der.push(anchor_der.to_vec());
    let parsed = der
        .iter()
        .map(|d| Certificate::from_der(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| webpki::Error::BadDer)?;
    Ok(ValidPath { der, parsed })
}

/// One sentence for a chain failure.
pub fn chain_error(who: &str, signer: &Certificate, when: &str, e: webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } | E::CertNotValidYet { .. } => crate::tr!(
            "chain-not-valid-then",
            who = who,
            when = when,
            from = cert::fmt_time(cert::not_before(signer)),
            until = cert::fmt_time(cert::not_after(signer))
        ),
        E::UnknownIssuer => crate::tr!("chain-untrusted", who = who, issuer = cert::issuer(signer)),
        #[allow(deprecated)]
        E::RequiredEkuNotFoundContext(_) | E::RequiredEkuNotFound => crate::tr!("chain-not-for-email", who = who),
        E::InvalidSignatureForPublicKey => crate::tr!("chain-bad-signature", who = who),
        other => crate::tr!("chain-invalid", who = who, when = when, error = format!("{other:?}")),
    }
}

fn parse_time(t: &der::Any) -> Result<SystemTime, CmsError> {
    let bad = |e: der::Error| CmsError::Malformed(format!("signing time: {e}"));
    use der::Tagged;
    match t.tag() {
        der::Tag::UtcTime => Ok(t.decode_as::<der::asn1::UtcTime>().map_err(bad)?.to_system_time()),
        der::Tag::GeneralizedTime => Ok(t.decode_as::<der::asn1::GeneralizedTime>().map_err(bad)?.to_system_time()),
        other => Err(CmsError::Malformed(format!("signing time has tag {other}"))),
    }
}

/// How a signature is checked: rustls-webpki for what it knows, pss.rs for RSA-PSS with other
/// parameters.
enum Check {
    Webpki(&'static dyn SignatureVerificationAlgorithm),
    Pss(super::pss::Params),
}

/// ecdsa-with-SHA1 (RFC 3279; const-oid does not name it).
const ECDSA_WITH_SHA_1: der::oid::ObjectIdentifier = der::oid::ObjectIdentifier::new_unwrap("1.2.840.10045.4.1");

/// The digest behind a signature or digest algorithm we refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Weak {
    Sha1,
    Md5,
    Md2,
    Sha224,
}

fn weak_digest(oid: &der::oid::ObjectIdentifier) -> Option<Weak> {
    Some(match *oid {
        rfc5912::ID_SHA_1 | rfc5912::SHA_1_WITH_RSA_ENCRYPTION | ECDSA_WITH_SHA_1 | rfc5912::DSA_WITH_SHA_1 => {
            Weak::Sha1
        }
        rfc5912::ID_MD_5 | rfc5912::MD_5_WITH_RSA_ENCRYPTION => Weak::Md5,
        rfc5912::ID_MD_2 | rfc5912::MD_2_WITH_RSA_ENCRYPTION => Weak::Md2,
        rfc5912::ID_SHA_224 | rfc5912::SHA_224_WITH_RSA_ENCRYPTION => Weak::Sha224,
        _ => return None,
    })
}

/// A well-formed signature made with an algorithm we do not accept: a verification failure
/// that names the algorithm, not malformed input.
fn refused(who: &str, oid: &der::oid::ObjectIdentifier) -> CmsError {
    let name = |w| match w {
        Weak::Sha1 => "SHA-1",
        Weak::Md5 => "MD5",
        Weak::Md2 => "MD2",
        Weak::Sha224 => "SHA-224",
    };
    match weak_digest(oid) {
        Some(Weak::Sha1) => CmsError::Verify(crate::tr!("verify-sha1-refused", who = who)),
        Some(w) => CmsError::Verify(crate::tr!("verify-weak-digest", who = who, digest = name(w))),
        None => CmsError::Verify(crate::tr!("verify-unknown-algorithm", who = who, oid = oid.to_string())),
    }
}

/// How to check a SignerInfo's signature, from its signature algorithm, digest and the
/// signer's key; and the algorithm's name for the report.
fn signature_alg(si: &SignerInfo, signer: &Certificate, who: &str) -> Result<(Check, String), CmsError> {
    let sig = &si.signature_algorithm.oid;
    let digest = &si.digest_alg.oid;
    let key = &signer.tbs_certificate.subject_public_key_info.algorithm;
    if super::sign::digest_for(digest).is_none() {
        return Err(refused(who, digest));
    }
    let named =
        |alg: &'static dyn SignatureVerificationAlgorithm, name: &str| Ok((Check::Webpki(alg), name.to_string()));
    match *sig {
        rfc5912::RSA_ENCRYPTION => match *digest {
            rfc5912::ID_SHA_256 => named(algs::RSA_PKCS1_2048_8192_SHA256, "RSA PKCS#1 v1.5 SHA-256"),
            rfc5912::ID_SHA_384 => named(algs::RSA_PKCS1_2048_8192_SHA384, "RSA PKCS#1 v1.5 SHA-384"),
            _ => named(algs::RSA_PKCS1_2048_8192_SHA512, "RSA PKCS#1 v1.5 SHA-512"),
        },
        rfc5912::SHA_256_WITH_RSA_ENCRYPTION => named(algs::RSA_PKCS1_2048_8192_SHA256, "RSA PKCS#1 v1.5 SHA-256"),
        rfc5912::SHA_384_WITH_RSA_ENCRYPTION => named(algs::RSA_PKCS1_2048_8192_SHA384, "RSA PKCS#1 v1.5 SHA-384"),
        rfc5912::SHA_512_WITH_RSA_ENCRYPTION => named(algs::RSA_PKCS1_2048_8192_SHA512, "RSA PKCS#1 v1.5 SHA-512"),
        ID_RSASSA_PSS => {
            let params = si
                .signature_algorithm
                .parameters
                .as_ref()
                .ok_or_else(|| CmsError::Malformed("RSA-PSS without parameters".into()))?;
            let p: rsa::pkcs1::RsaPssParams<'_> =
                params.decode_as().map_err(|e| CmsError::Malformed(format!("RSA-PSS parameters: {e}")))?;
            let hash = super::algorithms::hash_of(&p.hash.oid).ok_or_else(|| refused(who, &p.hash.oid))?;
            if p.mask_gen.oid != super::algorithms::ID_MGF1 {
                return Err(CmsError::Verify(crate::tr!(
                    "verify-pss-mask-unsupported",
                    who = who,
                    oid = p.mask_gen.oid.to_string()
                )));
            }
            let mgf_oid = p.mask_gen.parameters.as_ref().map(|a| a.oid).unwrap_or(super::algorithms::ID_SHA1);
            let mgf = super::algorithms::hash_of(&mgf_oid).ok_or_else(|| refused(who, &mgf_oid))?;
            if hash == super::oaep::OaepHash::Sha1 {
                return Err(refused(who, &p.hash.oid));
            }
            if p.hash.oid != *digest {
                return Err(CmsError::Verify(crate::tr!(
                    "verify-pss-digest-mismatch",
                    who = who,
                    stated = p.hash.oid.to_string(),
                    digest = digest.to_string()
                )));
            }
            let salt_len = usize::from(p.salt_len);
            let (h, m) = (hash_label(hash), hash_label(mgf));
            let name = if hash == mgf && salt_len == hash.output_len() {
                format!("RSA-PSS {h}")
            } else if hash == mgf {
                format!("RSA-PSS {h} (salt {salt_len} bytes)")
            } else {
                format!("RSA-PSS {h} (salt {salt_len} bytes, MGF1 {m})")
            };
            Ok((Check::Pss(super::pss::Params { hash, mgf, salt_len }), name))
        }
        rfc5912::ECDSA_WITH_SHA_256 | rfc5912::ECDSA_WITH_SHA_384 | rfc5912::ECDSA_WITH_SHA_512 | ID_EC_PUBLIC_KEY => {
            let p384 = key.parameters.as_ref().and_then(|p| p.decode_as::<der::oid::ObjectIdentifier>().ok())
                == Some(SECP384R1);
            let h384 =
                *sig == rfc5912::ECDSA_WITH_SHA_384 || (*sig == ID_EC_PUBLIC_KEY && *digest == rfc5912::ID_SHA_384);
            if *sig == rfc5912::ECDSA_WITH_SHA_512 || (*sig == ID_EC_PUBLIC_KEY && *digest == rfc5912::ID_SHA_512) {
                return Err(CmsError::Verify(crate::tr!("verify-ecdsa-sha512", who = who)));
            }
            match (p384, h384) {
                (false, false) => named(algs::ECDSA_P256_SHA256, "ECDSA P-256 SHA-256"),
                (false, true) => named(algs::ECDSA_P256_SHA384, "ECDSA P-256 SHA-384"),
                (true, false) => named(algs::ECDSA_P384_SHA256, "ECDSA P-384 SHA-256"),
                (true, true) => named(algs::ECDSA_P384_SHA384, "ECDSA P-384 SHA-384"),
            }
        }
        ID_ED25519 => named(algs::ED25519, "Ed25519"),
        _ => Err(refused(who, sig)),
    }
}

fn hash_label(h: super::oaep::OaepHash) -> &'static str {
    use super::oaep::OaepHash;
    match h {
        OaepHash::Sha1 => "SHA-1",
        OaepHash::Sha256 => "SHA-256",
        OaepHash::Sha384 => "SHA-384",
        OaepHash::Sha512 => "SHA-512",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `der` rewritten as BER the way a careless writer might: every constructed value with an
    /// indefinite length, and the elements of every multi-element `[0]` (certificates, signed
    /// attributes) in reverse order.
    fn to_careless_ber(der: &[u8], out: &mut Vec<u8>) {
        let mut r = der::SliceReader::new(der).unwrap();
        while !der::Reader::is_finished(&r) {
            let h = der::Header::decode(&mut r).unwrap();
            let body = der::Reader::read_slice(&mut r, h.length).unwrap();
            let mut tag = Vec::new();
            der::Encode::encode_to_vec(&h.tag, &mut tag).unwrap();
            if !h.tag.is_constructed() {
                der::Encode::encode_to_vec(&h, out).unwrap();
                out.extend_from_slice(body);
                continue;
            }
            out.extend_from_slice(&tag);
            out.push(0x80);
            let mut children = Vec::new();
            let mut cr = der::SliceReader::new(body).unwrap();
            while !der::Reader::is_finished(&cr) {
                let ch = der::Header::decode(&mut cr).unwrap();
                let start = body.len()
                    - usize::try_from(der::Reader::remaining_len(&cr)).unwrap()
                    - usize::try_from(ch.encoded_len().unwrap()).unwrap();
                der::Reader::read_slice(&mut cr, ch.length).unwrap();
                let end = body.len() - usize::try_from(der::Reader::remaining_len(&cr)).unwrap();
                children.push(&body[start..end]);
            }
            if tag == [0xa0] && children.len() > 1 {
                children.reverse();
            }
            for c in children {
                to_careless_ber(c, out);
            }
            out.extend_from_slice(&[0, 0]);
        }
    }

    #[test]
    fn signed_attributes_received_unsorted_in_ber_are_checked_over_their_der() {
        use rsa::pkcs8::DecodePrivateKey;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("softhsm-tests/interop-vectors/examples-cms/certs-and-keys");
        let alice = cert::load_file(&dir.join("lamps-alice.crt")).unwrap().remove(0);
        let alice_cert = Certificate::from_der(&alice).unwrap();
        let key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(
            rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(dir.join("lamps-alice.p8.pem")).unwrap())
                .unwrap(),
        );
        let input = signed::SignInput {
            content: &[b"hello"],
            detached: true,
            digest: crate::cms::digest::Hash::Sha256,
            sha256: None,
            signer_cert: &alice_cert,
            certificates: &[&alice],
            extra_attributes: vec![],
        };
        let der = signed::sign::<_, rsa::pkcs1v15::Signature>(
            &key,
            input,
            super::super::sign::standard_attributes().unwrap(),
        )
        .unwrap();
        let mut ber = Vec::new();
        to_careless_ber(&der, &mut ber);
        assert_ne!(ber, der);
        assert_eq!(&ber[..2], &[0x30, 0x80]);
        let trust = Trust { anchors: vec![alice.clone()], ..Default::default() };
        let v = verify(&ber, Some(b"hello"), &trust, SystemTime::now()).unwrap();
        assert_eq!(v.signers.len(), 1);
        // The same bytes with the content changed still fail: the attributes are not taken on trust.
        assert!(matches!(verify(&ber, Some(b"hellO"), &trust, SystemTime::now()), Err(CmsError::Verify(_))));
    }
}
