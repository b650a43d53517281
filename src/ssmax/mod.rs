//! SSMAX mail (docs/ssmax-mail-profile.md): labelled per-attachment encryption to the
//! organisation, the identity-method attribute, org-chain attributes, receive and forward.
//! Built only from standard CMS / S/MIME so plain S/MIME tools still verify and decrypt.

pub mod binding;
pub mod mail;
pub mod org;
pub mod registry;

use crate::cms::cert;
use crate::cms::signed::{Oid, RawAttribute};
use crate::cms::verify::{SignerReport, ValidPath};
use crate::cms::CmsError;
use der::asn1::{GeneralizedTime, Utf8StringRef};
use der::{Decode, Encode, Sequence};
use std::time::SystemTime;
use x509_cert::Certificate;

/// id-ssmax: a UUID arc (ITU-T X.667) minted for this profile; nobody else's arc is used.
pub const SSMAX_UUID: u128 = 177981922264625539930734361460954600427;

pub fn oid_identity_method() -> Oid {
    Oid::uuid(SSMAX_UUID, &[1])
}
pub fn oid_originator() -> Oid {
    Oid::uuid(SSMAX_UUID, &[2])
}
pub fn oid_sending_org() -> Oid {
    Oid::uuid(SSMAX_UUID, &[3])
}

/// How the sender was identified when the mail was signed (the "identity verification method
/// notice" of the SSMAX seeds).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct IdentityMethodDer<'a> {
    pub factors: Vec<Utf8StringRef<'a>>,
    pub token_profile: Utf8StringRef<'a>,
    pub token_description: Utf8StringRef<'a>,
    pub pin_verified_at: GeneralizedTime,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityMethod {
    pub factors: Vec<String>,
    pub token_profile: String,
    pub token_description: String,
    pub pin_verified_at: SystemTime,
}

impl IdentityMethod {
    pub fn attribute(&self) -> Result<RawAttribute, CmsError> {
        let bad = |e: der::Error| CmsError::Malformed(format!("identity method: {e}"));
        let factors = self.factors.iter().map(Utf8StringRef::new).collect::<Result<Vec<_>, _>>().map_err(bad)?;
        let v = IdentityMethodDer {
            factors,
            token_profile: Utf8StringRef::new(&self.token_profile).map_err(bad)?,
            token_description: Utf8StringRef::new(&self.token_description).map_err(bad)?,
            pin_verified_at: GeneralizedTime::from_system_time(self.pin_verified_at).map_err(bad)?,
        };
        RawAttribute::new(&oid_identity_method(), v)
    }

    pub fn from_attributes(attrs: &[RawAttribute]) -> Result<Option<IdentityMethod>, CmsError> {
        let Some(a) = attrs.iter().find(|a| a.is(&oid_identity_method())) else { return Ok(None) };
        let der = a.value()?.to_der().map_err(|e| CmsError::Malformed(e.to_string()))?;
        let v = IdentityMethodDer::from_der(&der)
            .map_err(|e| CmsError::Malformed(format!("identity method attribute: {e}")))?;
        Ok(Some(IdentityMethod {
            factors: v.factors.iter().map(|f| f.as_str().to_string()).collect(),
            token_profile: v.token_profile.as_str().to_string(),
            token_description: v.token_description.as_str().to_string(),
            pin_verified_at: v.pin_verified_at.to_system_time(),
        }))
    }

    pub fn describe(&self) -> String {
        // Every string here is the signer's claim, carried in the mail.
        let e = crate::l10n::escaped;
        crate::tr!(
            "identity-describe",
            factors = self.factors.iter().map(|f| e(f)).collect::<Vec<_>>().join(" + "),
            token = e(&self.token_description),
            profile = e(&self.token_profile),
            when = cert::fmt_time(self.pin_verified_at)
        )
    }
}

/// The sender as the sending organisation verified them.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct OriginatorDer {
    pub certificate: Certificate,
    pub signing_time: GeneralizedTime,
}

/// What the organisations recorded about where a mail came from.
#[derive(Clone, Debug)]
pub struct ChainInfo {
    pub originator: Option<(Certificate, SystemTime)>,
    pub identity: Option<IdentityMethod>,
    pub sending_org: Option<Certificate>,
}

impl ChainInfo {
    pub fn from_signer(s: &SignerReport) -> Result<ChainInfo, CmsError> {
        let mut originator = None;
        if let Some(a) = s.attributes.iter().find(|a| a.is(&oid_originator())) {
            let der = a.value()?.to_der().map_err(|e| CmsError::Malformed(e.to_string()))?;
            let o =
                OriginatorDer::from_der(&der).map_err(|e| CmsError::Malformed(format!("originator attribute: {e}")))?;
            originator = Some((o.certificate, o.signing_time.to_system_time()));
        }
        let mut sending_org = None;
        if let Some(a) = s.attributes.iter().find(|a| a.is(&oid_sending_org())) {
            let der = a.value()?.to_der().map_err(|e| CmsError::Malformed(e.to_string()))?;
            sending_org = Some(
                Certificate::from_der(&der).map_err(|e| CmsError::Malformed(format!("sending-org attribute: {e}")))?,
            );
        }
        Ok(ChainInfo { originator, identity: IdentityMethod::from_attributes(&s.attributes)?, sending_org })
    }

    pub fn originator_attribute(cert: &Certificate, signed_at: SystemTime) -> Result<RawAttribute, CmsError> {
        let bad = |e: der::Error| CmsError::Malformed(format!("originator: {e}"));
        RawAttribute::new(
            &oid_originator(),
            OriginatorDer {
                certificate: cert.clone(),
                signing_time: GeneralizedTime::from_system_time(signed_at).map_err(bad)?,
            },
        )
    }

    pub fn sending_org_attribute(cert: &Certificate) -> Result<RawAttribute, CmsError> {
        RawAttribute::new(&oid_sending_org(), cert.clone())
    }

    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(org) = &self.sending_org {
            out.push(crate::tr!("chain-sending-org", subject = cert::subject(org)));
        }
        if let Some((c, t)) = &self.originator {
            out.push(crate::tr!(
                "chain-original-sender",
                subject = cert::subject(c),
                emails = crate::l10n::escaped(&cert::emails(c).join(", ")),
                when = cert::fmt_time(*t)
            ));
        }
        if let Some(i) = &self.identity {
            out.push(crate::tr!("chain-identity", method = i.describe()));
        }
        out
    }
}

/// What the recipient side trusts: anchors and organisation certificates *from the token* (a
/// certificate on disk cannot be swapped in), plus anchors the config file names.
#[derive(Clone)]
pub struct TokenTrust {
    pub anchors: Vec<Vec<u8>>,
    pub orgs: Vec<Vec<u8>>,
    pub others: Vec<Vec<u8>>,
    /// The config's revocation lists (and what was fetched), OCSP answers, and the policy.
    pub crls: Vec<crate::cms::revocation::Shared>,
    pub ocsp: Vec<crate::cms::ocsp::Shared>,
    pub revocation: crate::cms::revocation::Policy,
    pub grace: std::time::Duration,
}

impl TokenTrust {
    /// Path validation against the anchors (organisation certificates are not anchors here),
    /// with the revocation lists.
    pub fn for_chains(&self) -> crate::cms::verify::Trust {
        crate::cms::verify::Trust {
            anchors: self.anchors.clone(),
            intermediates: self.others.clone(),
            crls: self.crls.clone(),
            ocsp: self.ocsp.clone(),
            revocation: self.revocation,
            grace: self.grace,
        }
    }

    /// The path by which `der` chains to the anchors now.
    pub fn path_for(&self, der: &[u8]) -> Result<ValidPath, webpki::Error> {
        crate::cms::verify::valid_path(der, &[], &self.for_chains(), SystemTime::now())
    }

    /// Add what the distribution points and OCSP responders of a validated `path` give, from the
    /// cache or fetched (`crl_store`), unless revocation is off. Returns what could not be had.
    pub fn add_lists_for(&mut self, path: &ValidPath, config: &crate::config::Config) -> Vec<String> {
        let (found, notes) = crate::crl_store::evidence_for(path, &self.crls, self.revocation, config);
        self.crls.extend(found.crls);
        self.ocsp.extend(found.ocsp);
        notes
    }

    /// Refuse a validated path (`what` says whose) that a revocation list or answer names, or
    /// whose status the policy requires and cannot be had. Checked now.
    pub fn check_revocation(&self, path: &ValidPath, what: &str) -> Result<crate::cms::revocation::Status, CmsError> {
        let trust = self.for_chains();
        crate::cms::verify::check_revocation(path, &trust, SystemTime::now())
            .map_err(|e| CmsError::Verify(crate::cms::verify::revocation_error(what, path, &trust, e)))
    }
}

pub fn token_trust(token: &crate::token::Token, config: &crate::config::Config) -> Result<TokenTrust, CmsError> {
    let mut t = TokenTrust {
        anchors: Vec::new(),
        orgs: Vec::new(),
        others: Vec::new(),
        crls: Vec::new(),
        ocsp: Vec::new(),
        revocation: config.revocation.unwrap_or_default(),
        grace: config.revocation_grace(),
    };
    for f in &config.crls {
        t.crls.extend(crate::cms::revocation::load_file(f)?);
    }
    for c in token.certificates()? {
        if c.anchor {
            t.anchors.push(c.der);
        } else if token.profile.is_org(&c.label) {
            t.orgs.push(c.der);
        } else {
            t.others.push(c.der);
        }
    }
    for f in &config.anchors {
        t.anchors.extend(cert::load_file(f)?);
    }
    // A card holds only its holder's certificates: the issuing CAs the config names build chains.
    for f in &config.intermediates {
        t.others.extend(cert::load_file(f)?);
    }
    Ok(t)
}

/// The organisation certificate attachments are encrypted to: on the token, else the config's;
/// it must chain to the SSMAX anchors now.
pub fn org_certificate(trust: &TokenTrust, config: &crate::config::Config) -> Result<Certificate, CmsError> {
    let mut candidates = trust.orgs.clone();
    if let Some(f) = &config.org_certificate {
        candidates.extend(cert::load_file(f)?);
    }
    if candidates.is_empty() {
        return Err(CmsError::NoKey(crate::tr!("org-no-certificate")));
    }
    if trust.anchors.is_empty() {
        return Err(CmsError::Verify(crate::tr!("org-no-anchor")));
    }
    let mut reasons = Vec::new();
    for der in candidates {
        let c = cert::parse(&der)?;
        match trust.path_for(&der) {
            Ok(path) if !cert::is_ca(&c) => {
                let mut trust = trust.clone();
                trust.add_lists_for(&path, config);
                match trust.check_revocation(&path, &crate::tr!("org-whose", subject = cert::subject(&c))) {
                    Ok(_) => return Ok(c),
                    Err(e) => reasons.push(e.to_string()),
                }
            }
            Ok(_) => reasons.push(crate::tr!("org-is-ca", subject = cert::subject(&c))),
            Err(e) => {
                reasons.push(crate::cms::verify::chain_error(&cert::subject(&c), &c, &crate::tr!("verify-when-now"), e))
            }
        }
    }
    Err(CmsError::Verify(crate::tr!("org-refused", reasons = reasons.join("; "))))
}

/// An SSMAX protected attachment is an AuthEnvelopedData with AES-GCM (docs/ssmax-mail-profile.md):
/// anything else — CBC, which an attacker can alter unseen, labelled as authenticated — is
/// refused by the hops and by receive. Plain S/MIME `decrypt` still reads CBC and 3DES.
pub fn check_protected(env: &crate::cms::decrypt::Envelope, label: &str) -> Result<(), CmsError> {
    match env.content_alg()? {
        crate::cms::decrypt::ContentAlg::AesGcm(_) => Ok(()),
        other => Err(CmsError::Verify(crate::tr!(
            "ssmax-not-gcm",
            label = crate::l10n::escaped(label),
            algorithm = other.name()
        ))),
    }
}

/// A short name for a certificate's holder: its CN, else the whole subject.
pub fn display_name(c: &Certificate) -> String {
    let subject = cert::subject(c);
    subject.split(',').find_map(|p| p.trim().strip_prefix("CN=")).map(|s| s.to_string()).unwrap_or(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_method_round_trips_through_its_attribute() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
        let m = IdentityMethod {
            factors: vec!["possession".into(), "knowledge".into()],
            token_profile: "softhsm2".into(),
            token_description: "SoftHSM2 token 'x'".into(),
            pin_verified_at: t,
        };
        let a = m.attribute().unwrap();
        assert_eq!(IdentityMethod::from_attributes(&[a]).unwrap(), Some(m));
        assert!(oid_identity_method().dotted().starts_with("2.25.177981922264625539930734361460954600427."));
    }
}
