//! Reference organisation steps (seed 000 §6): what a sending and a receiving organisation's
//! mail servers do with an SSMAX mail. Library code for tests and the demo — not a server.
//! Organisation keys here are software keys (the issue allows it); user keys never are.

use super::binding::{self, Origin};
use super::mail::{build, leaves, parse, Protected};
use super::registry::{self, Registry};
use super::{display_name, ChainInfo, IdentityMethod};
use crate::cms::decrypt::{Decryptor, Envelope, RsaOp};
use crate::cms::digest::Hash;
use crate::cms::encrypt::recipient_info;
use crate::cms::oaep::OaepHash;
use crate::cms::signed::{self, SignError, SignInput};
use crate::cms::verify::{verify, Trust};
use crate::cms::{cert, unarmor, CmsError};
use crate::mail::smime::{build_signed, classify, split_fields, Incoming};
use std::time::SystemTime;
use x509_cert::Certificate;
use zeroize::Zeroizing;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Verifies its own user, inspects for data leaks, re-keys to the receiving organisation.
    Sending,
    /// Verifies the sending organisation, scans for malware, re-keys to the recipient.
    Receiving,
}

#[derive(Debug, thiserror::Error)]
pub enum OrgError {
    #[error(transparent)]
    Cms(#[from] CmsError),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
    #[error("refused: attachment '{label}' was flagged by the inspection: {finding}")]
    Refused { label: String, finding: String },
    #[error("inspection could not run: {0}")]
    Scanner(String),
}

/// An organisation's RSA key and certificate (software, PKCS#8 PEM).
pub struct OrgKey {
    pub cert: Certificate,
    certs: Vec<Certificate>,
    key: rsa::RsaPrivateKey,
}

impl OrgKey {
    pub fn load(key_pem: &str, cert_der: &[u8]) -> Result<OrgKey, CmsError> {
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(key_pem)
            .map_err(|e| CmsError::Malformed(format!("organisation key: {e}")))?;
        let cert = cert::parse(cert_der)?;
        Ok(OrgKey { certs: vec![cert.clone()], cert, key })
    }
}

impl Decryptor for OrgKey {
    fn certificates(&self) -> &[Certificate] {
        &self.certs
    }
    fn supports(&self, _: usize, op: RsaOp) -> bool {
        !matches!(op, RsaOp::Raw)
    }
    fn rsa_decrypt(&mut self, _: usize, op: RsaOp, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        let r = match op {
            RsaOp::Pkcs1v15 => self.key.decrypt(rsa::Pkcs1v15Encrypt, data),
            RsaOp::Oaep(OaepHash::Sha1) => self.key.decrypt(rsa::Oaep::new::<sha1::Sha1>(), data),
            RsaOp::Oaep(OaepHash::Sha256) => self.key.decrypt(rsa::Oaep::new::<sha2::Sha256>(), data),
            RsaOp::Oaep(OaepHash::Sha384) => self.key.decrypt(rsa::Oaep::new::<sha2::Sha384>(), data),
            RsaOp::Oaep(OaepHash::Sha512) => self.key.decrypt(rsa::Oaep::new::<sha2::Sha512>(), data),
            RsaOp::Raw => return Err(CmsError::CannotDecrypt("raw RSA".into())),
        };
        r.map(Zeroizing::new)
            .map_err(|_| CmsError::Decrypt("the organisation key could not unwrap the content key".into()))
    }
    fn ecdh(&mut self, _: usize, _: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        Err(CmsError::CannotDecrypt("EC organisation keys in the reference organisation".into()))
    }
}

pub struct Step<'a> {
    pub role: Role,
    pub org: &'a mut OrgKey,
    /// SSMAX root(s), and certificates that help build chains.
    pub trust: Trust,
    /// A sending organisation's own user CAs: it serves only users these issued.
    pub own_cas: Vec<Vec<u8>>,
    /// What a sending organisation registered about its users' tokens: the identity method it
    /// states comes from here, never from the sender's client.
    pub registry: Option<&'a Registry>,
    /// Who can open the attachments after this hop.
    pub next: &'a Certificate,
    /// Inspection: a shell command run with the decrypted attachment's path as `$1`;
    /// exit 0 = clean, anything else = a finding (its output is the reason).
    pub scanner: Option<&'a str>,
}

/// One organisation hop: verify, inspect, re-key, replace the signature.
pub fn relay(step: Step<'_>, raw: &[u8]) -> Result<(Vec<u8>, Vec<String>), OrgError> {
    let Incoming::Detached { outer, signed, signature } = classify(raw)? else {
        return Err(CmsError::Malformed("not an SSMAX mail (multipart/signed expected)".into()).into());
    };
    let verified = verify(&unarmor(&signature)?, Some(&signed), &step.trust, SystemTime::now())?;
    let verified_carried = verified.carried.clone();
    let mut originator_chain: Vec<Vec<u8>> = Vec::new();
    let [signer] = <[crate::cms::verify::SignerReport; 1]>::try_from(verified.signers)
        .map_err(|s| CmsError::Verify(format!("expected one signature, found {}", s.len())))?;
    let from = outer.from_address().map_err(|e| CmsError::Verify(e.to_string()))?;
    crate::mail::sender_inside(&signed, &from).map_err(|e| CmsError::Verify(e.to_string()))?;
    if let Some(claim) = outer.from_name_claims() {
        let why = crate::tr!("from-name-claims", claim = crate::l10n::escaped(&claim), from = from);
        return Err(CmsError::Verify(why).into());
    }
    let signer_cert = cert::parse(&signer.cert_der)?;
    let mut log = Vec::new();
    let (originator, identity, sending_org) = match step.role {
        Role::Sending => {
            // Only this organisation's own users: the certificate's issuer on the validated path
            // is one of the organisation's own CAs (named as such, not merely given to build
            // chains), never an anchor, not any CA under the shared SSMAX root.
            let path = signer.path.as_ref();
            let issuer = path.filter(|p| p.certificates().len() > 2).and_then(|p| p.certificates().get(1));
            if !issuer.is_some_and(|i| step.own_cas.contains(i)) {
                return Err(CmsError::Verify(format!(
                    "'{}' is not a user of this organisation: the certificate was issued by '{}', not by one of its own CAs",
                    signer.subject, signer.issuer
                ))
                .into());
            }
            if !signer.emails.contains(&from) {
                return Err(
                    CmsError::Verify(format!("the From address {from} is not in the sender's certificate")).into()
                );
            }
            let claim = IdentityMethod::from_attributes(&signer.attributes)?.ok_or_else(|| {
                CmsError::Verify("the sender's signature does not say how the sender was identified".into())
            })?;
            let registry = step.registry.ok_or_else(|| {
                CmsError::Verify(
                    "this organisation has no token registry (--registry): it cannot say how its users are identified"
                        .into(),
                )
            })?;
            let registered = path.and_then(|p| registry.lookup(&signer.cert_der, p)).ok_or_else(|| {
                CmsError::Verify(format!(
                    "this organisation registered no token for '{}': it cannot say how the sender was identified",
                    signer.subject
                ))
            })?;
            let org_name = cert::organization(&step.org.cert.tbs_certificate.subject)
                .unwrap_or_else(|| display_name(&step.org.cert));
            let identity = registry::stated(registered, &claim, &org_name).map_err(CmsError::Verify)?;
            let when = signer
                .signing_time
                .ok_or_else(|| CmsError::Verify("the sender's signature has no signing time".into()))?;
            log.push(format!("verified sender {} <{from}>; identity: {}", signer.subject, identity.describe()));
            originator_chain = path.map(|p| p.intermediates().to_vec()).unwrap_or_default();
            ((signer_cert, when), identity, None)
        }
        Role::Receiving => {
            // An accredited organisation's certificate is issued directly by an SSMAX root;
            // a user certificate (under an organisation CA) cannot pose as one.
            // Recognised by the path rustls-webpki validated (one step from an SSMAX root),
            // never by names among the certificates the signature carries.
            if signer.path.as_ref().map(|p| p.certificates().len()) != Some(2) {
                return Err(CmsError::Verify(format!(
                    "'{}' is not an SSMAX organisation certificate (issued directly by an SSMAX root)",
                    signer.subject
                ))
                .into());
            }
            let chain = ChainInfo::from_signer(&signer)?;
            let (orig, when) = chain.originator.ok_or_else(|| {
                CmsError::Verify("the sending organisation did not record the original sender".into())
            })?;
            if !cert::emails(&orig).contains(&from) {
                return Err(CmsError::Verify(format!(
                    "the From address {from} is not the sender the sending organisation verified"
                ))
                .into());
            }
            check_originator(&orig, when, &signer_cert, &verified_carried, &step.trust)?;
            let identity = chain.identity.ok_or_else(|| {
                CmsError::Verify("the sending organisation did not record how the sender was identified".into())
            })?;
            log.push(format!(
                "verified sending organisation {} (SSMAX root {})",
                signer.subject,
                signer.chain.last().cloned().unwrap_or_default()
            ));
            ((orig, when), identity, Some(signer_cert))
        }
    };
    let parts = parse(&signed)?;
    // Everything passed on is inspected, in the clear or not; scanners look at each file, not
    // at multiparts or transfer encodings.
    // Each file costs a scanner process: at most MAX_PARTS for the whole mail.
    let mut budget = crate::mail::MAX_PARTS;
    let mut spend = |n: usize| -> Result<(), OrgError> {
        budget = budget.checked_sub(n).ok_or_else(|| {
            crate::mail::MailError::Malformed(crate::tr!("mail-too-many-parts", most = crate::mail::MAX_PARTS))
        })?;
        Ok(())
    };
    for (i, b) in parts.body.iter().enumerate() {
        // Even without a scanner: an envelope hidden in the text passes no hop.
        let files = leaves(b)?;
        if let Some(cmd) = step.scanner {
            spend(files.len())?;
            for leaf in &files {
                inspect(cmd, &format!("text part {}", i + 1), leaf)?;
            }
        }
    }
    let mut rekeyed = Vec::new();
    for p in &parts.protected {
        let env = Envelope::parse(&p.cms)?;
        super::check_protected(&env, &p.label)?;
        let (cek, _, _) = env.recover_cek(step.org)?;
        let content = env.decrypt(&cek)?;
        // Bound to who encrypted it, under which label and name: only the sender's own
        // attachments, or those the sender shows it could open, are re-keyed.
        match binding::check(&env, &p.label, &p.filename, &originator.0, &cek)? {
            Origin::Sender => {}
            Origin::Forwarded => log.push(format!(
                "'{}' forwarded by the sender, who held its key (who first encrypted it is the envelope's word only)",
                crate::l10n::escaped(&p.label)
            )),
        }
        binding::check_entity_name(&content, &p.label, &p.filename)?;
        let files = leaves(&content)?;
        if let Some(cmd) = step.scanner {
            spend(files.len())?;
            for file in &files {
                inspect(cmd, &p.label, file)?;
            }
            log.push(format!("inspected '{}' ({} file(s)): clean", crate::l10n::escaped(&p.label), files.len()));
        }
        let cms = env.with_recipients(vec![recipient_info(step.next, &cek)?])?;
        rekeyed.push(Protected { filename: p.filename.clone(), label: p.label.clone(), cms });
    }
    let rekeyed_count = rekeyed.len();
    let inner = build(&parts.body, rekeyed, &display_name(step.next));
    let mut extra = vec![identity.attribute()?, ChainInfo::originator_attribute(&originator.0, originator.1)?];
    if let Some(org) = &sending_org {
        extra.push(ChainInfo::sending_org_attribute(org)?);
    }
    let signing_key = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(step.org.key.clone());
    let org_der = der::Encode::to_der(&step.org.cert)
        .map_err(|e| CmsError::Malformed(format!("the organisation certificate: {e}")))?;
    // The sender's CAs travel with the organisation's signature, so the receiving organisation
    // can validate the originator certificate itself.
    let mut carried: Vec<&[u8]> = vec![&org_der];
    carried.extend(originator_chain.iter().map(|c| c.as_slice()));
    let input = SignInput {
        content: &[&inner],
        detached: true,
        digest: Hash::Sha256,
        sha256: None,
        signer_cert: &step.org.cert,
        certificates: &carried,
        extra_attributes: extra,
    };
    let der =
        signed::sign::<_, rsa::pkcs1v15::Signature>(&signing_key, input, crate::cms::sign::standard_attributes()?)
            .map_err(|e| match e {
                SignError::Cms(c) => c,
                SignError::Signer => CmsError::Malformed("the organisation key did not sign".into()),
            })?;
    let (fields, _) = split_fields(&outer.fields);
    log.push(format!(
        "re-keyed {} attachment(s) to {}; signed as {}",
        rekeyed_count,
        display_name(step.next),
        cert::subject(&step.org.cert)
    ));
    Ok((build_signed(&fields, &inner, &der, "sha-256"), log))
}

/// The original sender the sending organisation recorded must be one of its users: the
/// certificate chains, at the time the sender signed, through exactly one CA to an SSMAX root, and
/// that CA belongs to the sending organisation — the profile's mark: the same organizationName
/// as the organisation's certificate (docs/ssmax-mail-profile.md), and nothing on that path is
/// revoked now. What cannot be checked is refused.
fn check_originator(
    orig: &Certificate,
    signed_at: SystemTime,
    sending_org: &Certificate,
    carried: &[Vec<u8>],
    trust: &Trust,
) -> Result<(), CmsError> {
    let der = der::Encode::to_der(orig).map_err(|e| CmsError::Malformed(format!("originator certificate: {e}")))?;
    let who = cert::subject(orig);
    let path = crate::cms::verify::valid_path(&der, carried, trust, signed_at).map_err(|e| {
        CmsError::Verify(format!(
            "the original sender '{who}' does not chain to an SSMAX root: {}",
            crate::cms::verify::chain_error(&who, orig, "when it signed", e)
        ))
    })?;
    // The sending organisation looked when the sender signed; a card reported lost since, or a
    // CA that lost its standing, is refused here too. What cannot be had counts as policy says
    // (an organisation requires it).
    crate::cms::verify::check_revocation(&path, trust, SystemTime::now()).map_err(|e| {
        CmsError::Verify(crate::cms::verify::revocation_error(&format!("the original sender '{who}'"), &path, trust, e))
    })?;
    let [user_ca] = path.intermediates() else {
        return Err(CmsError::Verify(format!(
            "the original sender '{who}' is not issued by an organisation CA under an SSMAX root"
        )));
    };
    let ca = cert::parse(user_ca)?;
    let org_of = |c: &Certificate| cert::organization(&c.tbs_certificate.subject);
    if org_of(&ca).is_none() || org_of(&ca) != org_of(sending_org) {
        return Err(CmsError::Verify(format!(
            "the original sender '{who}' is a user of '{}', not of the sending organisation '{}'",
            cert::subject(&ca),
            cert::subject(sending_org)
        )));
    }
    Ok(())
}

fn inspect(cmd: &str, label: &str, content: &[u8]) -> Result<(), OrgError> {
    use std::io::Write;
    let mut f =
        tempfile::Builder::new().prefix("ssmax-inspect-").tempfile().map_err(|e| OrgError::Scanner(e.to_string()))?;
    f.write_all(content).map_err(|e| OrgError::Scanner(e.to_string()))?;
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{cmd} \"$1\""))
        .arg("ssmax-inspect")
        .arg(f.path())
        .output()
        .map_err(|e| OrgError::Scanner(format!("{cmd}: {e}")))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string() + String::from_utf8_lossy(&out.stderr).trim();
    // The label is the sender's text, the finding whatever the scanner printed: both escaped.
    Err(OrgError::Refused {
        label: crate::l10n::escaped(label),
        finding: if said.is_empty() {
            format!("scanner exit {:?}", out.status.code())
        } else {
            crate::l10n::escaped(&said)
        },
    })
}
