//! OCSP (RFC 6960): the request for one certificate (with a nonce), and the answer checked before
//! it is believed: a successful basic response, signed by the certificate's issuer or by a
//! responder the issuer certified for OCSP signing (id-kp-OCSPSigning), about this very
//! certificate (CertID: issuer name and key hashes, serial), current (thisUpdate / nextUpdate),
//! and carrying our nonce when it carries one. The types are x509-ocsp's; signatures and the
//! responder's certificate are checked by rustls-webpki.

use super::{cert, CmsError};
use const_oid::db::rfc5912;
use der::asn1::{AnyRef, Null, OctetString};
use der::{Decode, Encode};
use rustls_pki_types::{CertificateDer, UnixTime};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::AuthorityInfoAccessSyntax;
use x509_cert::Certificate;
use x509_ocsp::ext::Nonce;
use x509_ocsp::{BasicOcspResponse, CertId, CertStatus, OcspRequest, OcspResponse, OcspResponseStatus};
use x509_ocsp::{Request, ResponderId, TbsRequest, Version};

/// Largest answer read (one certificate's status and a responder certificate fit in a few KiB).
pub const MAX_RESPONSE: u64 = 256 * 1024;
/// How far a responder's clock may run ahead of ours.
const SKEW: Duration = Duration::from_secs(300);
/// An answer without nextUpdate ("newer information is always available") is current this long.
const WITHOUT_NEXT_UPDATE: Duration = Duration::from_secs(3600);
/// id-kp-OCSPSigning (1.3.6.1.5.5.7.3.9), the OID's contents as rustls-webpki takes them.
const EKU_OCSP_SIGNING_DER: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x09];

/// What a responder said about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Good,
    Revoked {
        at: SystemTime,
        reason: &'static str,
    },
    /// The responder does not know the certificate.
    Unknown,
}

/// A checked answer about one certificate.
#[derive(Debug)]
pub struct Answer {
    /// The whole OCSPResponse, as cached.
    pub der: Vec<u8>,
    /// Whom it is about: the certificate's issuer (DER Name and the SHA-256 of its public key,
    /// the issuer it was checked against) and serial.
    issuer: Vec<u8>,
    issuer_key: [u8; 32],
    serial: Vec<u8>,
    pub state: State,
    pub this_update: SystemTime,
    pub next_update: Option<SystemTime>,
    /// Who signed it: the issuer itself, or its delegated responder (subject).
    pub signed_by: String,
}

/// Answers are shared, like lists, between the trust of several checks.
pub type Shared = std::sync::Arc<Answer>;

impl Answer {
    /// Is this the answer about `c` as issued by `issuer` (the next certificate of a validated
    /// path)? A name and a serial alone are not enough: anyone can make a CA of that name.
    pub fn about(&self, c: &Certificate, issuer: &Certificate) -> bool {
        c.tbs_certificate.serial_number.as_bytes() == self.serial.as_slice()
            && c.tbs_certificate.issuer.to_der().is_ok_and(|i| i == self.issuer)
            && key_hash(issuer) == self.issuer_key
    }

    /// Current at `now`: not issued in the future (beyond a little clock skew), not past its
    /// nextUpdate; without one, for an hour after thisUpdate.
    pub fn current(&self, now: SystemTime) -> bool {
        let until = self.next_update.unwrap_or(self.this_update + WITHOUT_NEXT_UPDATE);
        self.this_update <= now + SKEW && now <= until
    }
}

/// The http: URIs of a certificate's OCSP responders (its Authority Information Access).
pub fn responders(c: &Certificate) -> Vec<String> {
    let Ok(Some((_, aia))) = c.tbs_certificate.get::<AuthorityInfoAccessSyntax>() else { return Vec::new() };
    aia.0
        .iter()
        .filter(|d| d.access_method == rfc5912::ID_AD_OCSP)
        .filter_map(|d| match &d.access_location {
            GeneralName::UniformResourceIdentifier(u) if u.as_str().starts_with("http://") => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

/// The CertID of `cert` under `issuer` with hash `H` (SHA-1 in requests, as RFC 5019 responders
/// expect; SHA-1 or SHA-256 accepted in answers).
fn cert_id<H: Digest + const_oid::AssociatedOid>(cert: &Certificate, issuer: &Certificate) -> Result<CertId, CmsError> {
    let bad = |e: der::Error| CmsError::Malformed(format!("OCSP certificate ID: {e}"));
    let name = issuer.tbs_certificate.subject.to_der().map_err(bad)?;
    let key = issuer.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes();
    Ok(CertId {
        hash_algorithm: spki::AlgorithmIdentifierOwned { oid: H::OID, parameters: Some(Null.into()) },
        issuer_name_hash: OctetString::new(H::digest(&name).to_vec()).map_err(bad)?,
        issuer_key_hash: OctetString::new(H::digest(key).to_vec()).map_err(bad)?,
        serial_number: cert.tbs_certificate.serial_number.clone(),
    })
}

/// The DER OCSPRequest for `cert` (issued by `issuer`), carrying `nonce`.
pub fn request(cert: &Certificate, issuer: &Certificate, nonce: &[u8]) -> Result<Vec<u8>, CmsError> {
    let bad = |e: der::Error| CmsError::Malformed(format!("OCSP request: {e}"));
    let nonce = Nonce::new(nonce.to_vec()).map_err(bad)?;
    let ext = x509_cert::ext::AsExtension::to_extension(&nonce, &cert.tbs_certificate.subject, &[]).map_err(bad)?;
    OcspRequest {
        tbs_request: TbsRequest {
            version: Version::V1,
            requestor_name: None,
            request_list: vec![Request { req_cert: cert_id::<Sha1>(cert, issuer)?, single_request_extensions: None }],
            request_extensions: Some(vec![ext]),
        },
        optional_signature: None,
    }
    .to_der()
    .map_err(bad)
}

/// Check the OCSPResponse `der` about `cert` (issued by `issuer`) at `now`; `nonce`: the one our
/// request carried (None for an answer read back from the cache).
pub fn check(
    der: &[u8],
    cert: &Certificate,
    issuer: &Certificate,
    nonce: Option<&[u8]>,
    now: SystemTime,
) -> Result<Answer, CmsError> {
    let refuse = |why: String| CmsError::Verify(crate::tr!("ocsp-refused", why = why));
    let bad = |e: der::Error| refuse(format!("not an OCSP response ({e})"));
    let response = OcspResponse::from_der(der).map_err(bad)?;
    if response.response_status != OcspResponseStatus::Successful {
        return Err(refuse(format!("the responder answered {:?}", response.response_status)));
    }
    let bytes = response.response_bytes.ok_or_else(|| refuse("a successful answer with no response".into()))?;
    if bytes.response_type != const_oid::db::rfc6960::ID_PKIX_OCSP_BASIC {
        return Err(refuse(format!("a response of type {}, not the basic one", bytes.response_type)));
    }
    let basic_der = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(basic_der).map_err(bad)?;
    // What was signed: tbsResponseData exactly as it came, not as re-encoded here.
    let parts: Vec<AnyRef<'_>> = Vec::from_der(basic_der).map_err(bad)?;
    let tbs = parts.first().ok_or_else(|| refuse("an empty response".into()))?.to_der().map_err(bad)?;
    let data = &basic.tbs_response_data;

    let issuer_der = issuer.to_der().map_err(bad)?;
    let signed_by = if names_certificate(&data.responder_id, issuer) {
        verify_signed(&issuer_der, &basic, &tbs).map_err(|why| refuse(format!("its signature: {why}")))?;
        format!("the issuer '{}'", cert::subject(issuer))
    } else {
        let delegate = basic
            .certs
            .iter()
            .flatten()
            .find(|c| names_certificate(&data.responder_id, c))
            .ok_or_else(|| refuse("signed by a responder whose certificate it does not carry".into()))?;
        let delegate_der = delegate.to_der().map_err(bad)?;
        authorised(&delegate_der, &issuer_der, now).map_err(|e| {
            refuse(format!(
                "signed by '{}', which '{}' did not certify to answer for it ({e:?})",
                cert::subject(delegate),
                cert::subject(issuer)
            ))
        })?;
        verify_signed(&delegate_der, &basic, &tbs).map_err(|why| refuse(format!("its signature: {why}")))?;
        format!("'{}', the delegated responder of '{}'", cert::subject(delegate), cert::subject(issuer))
    };

    if let (Some(ours), Some(theirs)) = (nonce, data.nonce()) {
        if theirs.0.as_bytes() != ours {
            return Err(refuse("its nonce is not the one we sent (a replayed answer?)".into()));
        }
    }
    let ids = [cert_id::<Sha1>(cert, issuer)?, cert_id::<Sha256>(cert, issuer)?];
    let single = data
        .responses
        .iter()
        .find(|r| ids.iter().any(|id| same_id(id, &r.cert_id)))
        .ok_or_else(|| refuse(format!("it says nothing about '{}'", cert::subject(cert))))?;
    let this_update = single.this_update.0.to_system_time();
    let next_update = single.next_update.map(|t| t.0.to_system_time());
    let state = match single.cert_status {
        CertStatus::Good(_) => State::Good,
        CertStatus::Revoked(info) => State::Revoked {
            at: info.revocation_time.0.to_system_time(),
            reason: info.revocation_reason.map(|r| cert::revocation_reason(r as u8)).unwrap_or("no reason given"),
        },
        CertStatus::Unknown(_) => State::Unknown,
    };
    let answer = Answer {
        der: der.to_vec(),
        issuer: cert.tbs_certificate.issuer.to_der().map_err(bad)?,
        issuer_key: key_hash(issuer),
        serial: cert.tbs_certificate.serial_number.as_bytes().to_vec(),
        state,
        this_update,
        next_update,
        signed_by,
    };
    if !answer.current(now) {
        return Err(refuse(format!(
            "it is not current (thisUpdate {}, nextUpdate {})",
            cert::fmt_time(this_update),
            next_update.map(cert::fmt_time).unwrap_or_else(|| "none".into())
        )));
    }
    Ok(answer)
}

/// SHA-256 of a certificate's public key (the BIT STRING's contents), as answers remember
/// their issuer.
pub fn key_hash(c: &Certificate) -> [u8; 32] {
    Sha256::digest(c.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes()).into()
}

/// Does the ResponderID name this certificate (by subject, or by SHA-1 of its public key)?
fn names_certificate(id: &ResponderId, c: &Certificate) -> bool {
    match id {
        ResponderId::ByName(n) => *n == c.tbs_certificate.subject,
        ResponderId::ByKey(hash) => {
            hash.as_bytes()
                == Sha1::digest(c.tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes()).as_slice()
        }
    }
}

/// CertIDs compare by hash algorithm (parameters NULL or absent alike), hashes and serial.
fn same_id(a: &CertId, b: &CertId) -> bool {
    a.hash_algorithm.oid == b.hash_algorithm.oid
        && a.issuer_name_hash == b.issuer_name_hash
        && a.issuer_key_hash == b.issuer_key_hash
        && a.serial_number == b.serial_number
}

/// The delegated responder's certificate was issued by the issuer itself, is valid now, and
/// carries id-kp-OCSPSigning (RFC 6960 §4.2.2.2).
fn authorised(delegate: &[u8], issuer: &[u8], now: SystemTime) -> Result<(), webpki::Error> {
    let issuer = CertificateDer::from(issuer);
    let anchor = webpki::anchor_from_trusted_cert(&issuer)?;
    let delegate = CertificateDer::from(delegate);
    let ee = webpki::EndEntityCert::try_from(&delegate)?;
    let unix = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        unix,
        webpki::KeyUsage::required(EKU_OCSP_SIGNING_DER),
        None,
        None,
    )
    .map(|_| ())
}

/// The response's signature over `tbs`, by the key of `signer` (DER).
fn verify_signed(signer: &[u8], basic: &BasicOcspResponse, tbs: &[u8]) -> Result<(), String> {
    let signature = basic.signature.as_bytes().ok_or("a signature that is not whole octets")?;
    cert::signed_by(signer, &basic.signature_algorithm, tbs, signature).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Certificate {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/cert").join(name);
        Certificate::from_der(&std::fs::read(path).expect("seed certificate")).expect("certificate")
    }

    #[test]
    fn a_request_names_the_certificate_by_sha1_hashes_of_its_issuer_and_carries_the_nonce() {
        let (alice, ca) = (seed("org.der"), seed("root.der"));
        let req = OcspRequest::from_der(&request(&alice, &ca, b"0123456789abcdef").unwrap()).unwrap();
        let id = &req.tbs_request.request_list[0].req_cert;
        assert_eq!(id.hash_algorithm.oid, rfc5912::ID_SHA_1);
        assert_eq!(id.serial_number, alice.tbs_certificate.serial_number);
        assert_eq!(
            id.issuer_name_hash.as_bytes(),
            Sha1::digest(alice.tbs_certificate.issuer.to_der().unwrap()).as_slice()
        );
        assert_eq!(req.nonce().unwrap().0.as_bytes(), b"0123456789abcdef");
    }

    /// Answers `openssl ocsp` (3.0) made for one certificate (fuzz/ocsp-pki/ee.der) of a CA
    /// (ca.der), on 2026-12-02 14:43:52 UTC with nextUpdate a day later; the request carried
    /// the nonce 8AC0CECDD43826D9E3F8903E1241806D.
    fn openssl_answer(name: &str) -> Vec<u8> {
        std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/ocsp").join(name))
            .expect("answer")
    }

    fn ocsp_pki(name: &str) -> Certificate {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/ocsp-pki").join(name);
        Certificate::from_der(&std::fs::read(path).expect("ocsp pki")).expect("certificate")
    }

    const NONCE: [u8; 16] =
        [0x8a, 0xc0, 0xce, 0xcd, 0xd4, 0x38, 0x26, 0xd9, 0xe3, 0xf8, 0x90, 0x3e, 0x12, 0x41, 0x80, 0x6d];

    fn at(offset_s: u64) -> SystemTime {
        // 2026-12-02 14:43:52 UTC
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_222_632 + offset_s)
    }

    #[test]
    fn openssl_answers_are_read_good_revoked_unknown_and_from_a_delegated_responder() {
        let (ee, ca) = (ocsp_pki("ee.der"), ocsp_pki("ca.der"));
        let good = check(&openssl_answer("good.der"), &ee, &ca, Some(&NONCE), at(60)).unwrap();
        assert_eq!(good.state, State::Good);
        assert!(good.about(&ee, &ca) && !good.about(&ee, &seed("root.der")) && good.signed_by.contains("the issuer"));
        assert!(good.next_update.is_some());
        let revoked = check(&openssl_answer("revoked.der"), &ee, &ca, Some(&NONCE), at(60)).unwrap();
        assert!(matches!(revoked.state, State::Revoked { reason: "key compromise", .. }), "{:?}", revoked.state);
        let unknown = check(&openssl_answer("unknown.der"), &ee, &ca, Some(&NONCE), at(60)).unwrap();
        assert_eq!(unknown.state, State::Unknown);
        let delegated = check(&openssl_answer("delegated.der"), &ee, &ca, Some(&NONCE), at(60)).unwrap();
        assert_eq!(delegated.state, State::Good);
        assert!(delegated.signed_by.contains("delegated responder"), "{}", delegated.signed_by);
    }

    #[test]
    fn an_answer_with_another_nonce_past_its_next_update_or_about_another_certificate_is_refused() {
        let (ee, ca) = (ocsp_pki("ee.der"), ocsp_pki("ca.der"));
        let good = openssl_answer("good.der");
        let e = check(&good, &ee, &ca, Some(b"another nonce..."), at(60)).unwrap_err();
        assert!(e.to_string().contains("nonce"), "{e}");
        let e = check(&good, &ee, &ca, None, at(2 * 86_400)).unwrap_err();
        assert!(e.to_string().contains("not current"), "{e}");
        let e = check(&good, &ca, &ca, None, at(60)).unwrap_err();
        assert!(e.to_string().contains("says nothing about"), "{e}");
        // Asked of another issuer: the signer's certificate it carries was not certified by it.
        let e = check(&good, &ee, &seed("root.der"), None, at(60)).unwrap_err();
        assert!(e.to_string().contains("did not certify to answer for it"), "{e}");
    }

    #[test]
    fn a_changed_byte_in_what_was_signed_breaks_the_signature() {
        let (ee, ca) = (ocsp_pki("ee.der"), ocsp_pki("ca.der"));
        let mut good = openssl_answer("good.der");
        // The nextUpdate's seconds digit, inside tbsResponseData: still well-formed.
        let pos = good.windows(15).position(|w| w == b"20261203144352Z").expect("nextUpdate");
        good[pos + 13] = b'3';
        let e = check(&good, &ee, &ca, None, at(60)).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
    }

    #[test]
    fn bytes_that_are_not_an_ocsp_response_are_refused_clearly() {
        let (alice, ca) = (seed("org.der"), seed("root.der"));
        let e = check(&alice.to_der().unwrap(), &alice, &ca, None, SystemTime::now()).unwrap_err();
        assert!(e.to_string().contains("not an OCSP response"), "{e}");
    }
}
