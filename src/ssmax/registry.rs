//! What an organisation registered about its users' tokens, for one certificate or for every
//! certificate one of its CAs issues: the kind of token the key lives on, how it was handed out,
//! and, where the token gives one, an attestation that the key was born on it. The sending
//! organisation states the identity method from this (docs/ssmax-mail-profile.md); what the
//! sender's client says is only a hint that must agree.
//!
//! ```toml
//! [[token]]
//! issuer = "orgca.pem"              # every certificate this CA issues (or: certificate = "alice.pem")
//! kind = "softhsm2"                 # the ssmax-card profile name of the token
//! description = "Example Org staff card"
//! enrolment = "identity checked in person at issuance"   # optional
//! attestation = "alice-attest.pem"  # optional, with `certificate`: the token's attestation chain
//! ```

use super::IdentityMethod;
use crate::cms::cert;
use crate::cms::verify::ValidPath;
use der::{Decode, Encode};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("token registry {path}: {why}")]
    File { path: String, why: String },
    #[error("token registry entry {entry}: {why}")]
    Entry { entry: usize, why: String },
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    #[serde(default)]
    token: Vec<EntryToml>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryToml {
    certificate: Option<PathBuf>,
    issuer: Option<PathBuf>,
    kind: String,
    description: String,
    enrolment: Option<String>,
    attestation: Option<PathBuf>,
}

/// Which certificates an entry covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Covers {
    Certificate(Vec<u8>),
    IssuedBy(Vec<u8>),
}

/// What the organisation registered for a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub kind: String,
    pub description: String,
    pub enrolment: Option<String>,
    pub attested: Option<Attested>,
}

/// What a YubiKey PIV attestation certifies about the key (Yubico's extensions, arc
/// 1.3.6.1.4.1.41482.3), checked when the registry is loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attested {
    pub serial: Option<u64>,
    pub firmware: Option<String>,
    pub pin_policy: Option<Policy>,
    pub touch_policy: Option<Policy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Never,
    Once,
    Always,
    Cached,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Never => "never",
            Policy::Once => "once per session",
            Policy::Always => "at every use",
            Policy::Cached => "cached for 15 s",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    entries: Vec<(Covers, Registered)>,
}

/// Yubico's attestation extensions.
const YK_FIRMWARE: &str = "1.3.6.1.4.1.41482.3.3";
const YK_SERIAL: &str = "1.3.6.1.4.1.41482.3.7";
const YK_POLICY: &str = "1.3.6.1.4.1.41482.3.8";

/// Entries in one registry file; more is refused (each is a certificate comparison per mail).
const MAX_ENTRIES: usize = 10_000;

impl Registry {
    /// Read a registry; `attestation_roots` are the roots a token maker's attestations chain to
    /// (Yubico's PIV root). Every attestation is checked now: for the very key of its
    /// certificate, signed link by link up to one of the roots.
    pub fn load(path: &Path, attestation_roots: &[Vec<u8>]) -> Result<Registry, RegistryError> {
        let file_err = |why: String| RegistryError::File { path: path.display().to_string(), why };
        let text =
            crate::files::read_regular_text(path, crate::files::MAX_TEXT_FILE).map_err(|e| file_err(e.to_string()))?;
        let parsed: FileToml = toml::from_str(&text).map_err(|e| file_err(e.to_string()))?;
        if parsed.token.len() > MAX_ENTRIES {
            return Err(file_err(format!("more than {MAX_ENTRIES} entries")));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let mut entries = Vec::new();
        for (i, e) in parsed.token.into_iter().enumerate() {
            let entry_err = |why: String| RegistryError::Entry { entry: i + 1, why };
            let one = |p: &Path| -> Result<Vec<u8>, RegistryError> {
                let mut all = cert::load_file(&base.join(p)).map_err(|e| entry_err(e.to_string()))?;
                match all.len() {
                    1 => Ok(all.remove(0)),
                    n => Err(entry_err(format!("{} holds {n} certificates, one expected", p.display()))),
                }
            };
            let covers = match (&e.certificate, &e.issuer) {
                (Some(c), None) => Covers::Certificate(one(c)?),
                (None, Some(c)) => Covers::IssuedBy(one(c)?),
                _ => return Err(entry_err("names either `certificate` or `issuer`".into())),
            };
            if e.kind.trim().is_empty() || e.description.trim().is_empty() {
                return Err(entry_err("`kind` and `description` must not be empty".into()));
            }
            let attested = match (&e.attestation, &covers) {
                (None, _) => None,
                (Some(a), Covers::Certificate(der)) => {
                    let chain = cert::load_file(&base.join(a)).map_err(|e| entry_err(e.to_string()))?;
                    Some(check_attestation(der, &chain, attestation_roots).map_err(entry_err)?)
                }
                (Some(_), Covers::IssuedBy(_)) => {
                    return Err(entry_err("an attestation is for one certificate's key, not for a CA".into()))
                }
            };
            entries.push((
                covers,
                Registered { kind: e.kind, description: e.description, enrolment: e.enrolment, attested },
            ));
        }
        Ok(Registry { entries })
    }

    /// What was registered for the certificate `der` whose validated path is `path`: an entry
    /// for the certificate itself first, else one for the CA that issued it on that path.
    pub fn lookup(&self, der: &[u8], path: &ValidPath) -> Option<&Registered> {
        let own = self.entries.iter().find(|(c, _)| *c == Covers::Certificate(der.to_vec()));
        let issuer = path.certificates().get(1).filter(|_| path.certificates().len() > 2);
        own.or_else(|| self.entries.iter().find(|(c, _)| issuer.is_some_and(|i| *c == Covers::IssuedBy(i.clone()))))
            .map(|(_, r)| r)
    }
}

/// The identity method the organisation states for a sender whose token it registered as `r`,
/// after checking the sender's client agrees on the kind of token. The time the PIN was
/// verified stays the client's: no one else saw it typed.
pub fn stated(r: &Registered, claim: &IdentityMethod, org: &str) -> Result<IdentityMethod, String> {
    let e = crate::l10n::escaped;
    if claim.token_profile != r.kind {
        return Err(format!(
            "the sender's client says its key is on a '{}' token, but {org} registered a '{}' token for this certificate",
            e(&claim.token_profile),
            e(&r.kind)
        ));
    }
    let mut factors = vec![format!("possession of the {} token {org} registered for this certificate", r.kind)];
    let pin_never = r.attested.as_ref().and_then(|a| a.pin_policy) == Some(Policy::Never);
    if !pin_never {
        factors.push("knowledge of its PIN".into());
    }
    let mut description = format!("{} (registered by {org}", r.description);
    if let Some(how) = &r.enrolment {
        description.push_str(&format!("; {how}"));
    }
    description.push(')');
    if let Some(a) = &r.attested {
        let mut facts = Vec::new();
        if let Some(s) = a.serial {
            facts.push(format!("serial {s}"));
        }
        if let Some(f) = &a.firmware {
            facts.push(format!("firmware {f}"));
        }
        if let Some(p) = a.pin_policy {
            facts.push(format!("PIN {}", p.name()));
        }
        if let Some(t) = a.touch_policy {
            facts.push(format!("touch {}", t.name()));
        }
        description.push_str("; key born on the token, attested");
        if !facts.is_empty() {
            description.push_str(&format!(": {}", facts.join(", ")));
        }
    }
    Ok(IdentityMethod {
        factors,
        token_profile: r.kind.clone(),
        token_description: description,
        pin_verified_at: claim.pin_verified_at,
    })
}

/// An attestation chain (attestation certificate first, then its issuers) for the key of
/// `subject` (a certificate, DER), signed link by link up to one of `roots`.
fn check_attestation(subject: &[u8], chain: &[Vec<u8>], roots: &[Vec<u8>]) -> Result<Attested, String> {
    let subject = cert::parse(subject).map_err(|e| e.to_string())?;
    let first = chain.first().ok_or("the attestation file holds no certificate")?;
    let att = cert::parse(first).map_err(|e| e.to_string())?;
    if att.tbs_certificate.subject_public_key_info != subject.tbs_certificate.subject_public_key_info {
        return Err("the attestation certifies another key than the certificate's".into());
    }
    if roots.is_empty() {
        return Err("an attestation is given but no --attestation-root to check it against".into());
    }
    // Each link is signed by the next certificate in the file, the last by a root; every
    // issuer is a CA allowed to sign certificates (a key that merely is attested, a slot key,
    // cannot vouch for another key); every certificate is valid now.
    let now = std::time::SystemTime::now();
    let may_issue = |c: &x509_cert::Certificate| cert::is_ca(c) && cert::key_usage(c).is_none_or(|u| u.key_cert_sign());
    for r in roots {
        let root = cert::parse(r).map_err(|e| e.to_string())?;
        if !may_issue(&root) {
            return Err(format!("attestation root '{}' is not a CA", cert::subject(&root)));
        }
    }
    for (i, der) in chain.iter().enumerate() {
        let c = cert::parse(der).map_err(|e| e.to_string())?;
        if i > 0 && !may_issue(&c) {
            return Err(format!(
                "attestation certificate {} ('{}') signs another but is not a CA",
                i + 1,
                cert::subject(&c)
            ));
        }
        if now < cert::not_before(&c) || now > cert::not_after(&c) {
            return Err(format!("attestation certificate {} ('{}') is not valid now", i + 1, cert::subject(&c)));
        }
        let tbs = c.tbs_certificate.to_der().map_err(|e| e.to_string())?;
        let sig = c.signature.as_bytes().ok_or("an attestation signature with unused bits")?;
        let by = |issuer: &[u8]| cert::signed_by(issuer, &c.signature_algorithm, &tbs, sig).is_ok();
        let signed = match chain.get(i + 1) {
            Some(next) => by(next),
            None => roots.iter().any(|r| by(r)),
        };
        if !signed {
            return Err(format!(
                "attestation certificate {} ('{}') is not signed by {}",
                i + 1,
                cert::subject(&c),
                if i + 1 < chain.len() { "the next one in the file" } else { "an attestation root" }
            ));
        }
    }
    let ext = |oid: &str| {
        att.tbs_certificate
            .extensions
            .iter()
            .flatten()
            .find(|x| x.extn_id.to_string() == oid)
            .map(|x| x.extn_value.as_bytes())
    };
    let policy = |b: u8| match b {
        1 => Some(Policy::Never),
        2 => Some(Policy::Once),
        3 => Some(Policy::Always),
        4 => Some(Policy::Cached),
        _ => None,
    };
    // Yubico writes the firmware and policy as raw bytes, the serial as a DER INTEGER.
    let serial = ext(YK_SERIAL).and_then(|v| der::asn1::Uint::from_der(v).ok()).and_then(|u| {
        let b = u.as_bytes();
        (b.len() <= 8).then(|| b.iter().fold(0u64, |n, &x| (n << 8) | u64::from(x)))
    });
    let firmware = ext(YK_FIRMWARE).filter(|v| v.len() == 3).map(|v| format!("{}.{}.{}", v[0], v[1], v[2]));
    let (pin_policy, touch_policy) = match ext(YK_POLICY) {
        Some([pin, touch, ..]) => (policy(*pin), policy(*touch)),
        _ => (None, None),
    };
    Ok(Attested { serial, firmware, pin_policy, touch_policy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn claim(profile: &str) -> IdentityMethod {
        IdentityMethod {
            factors: vec!["possession".into()],
            token_profile: profile.into(),
            token_description: "YubiKey 5 FIPS".into(),
            pin_verified_at: SystemTime::UNIX_EPOCH,
        }
    }

    fn registered(attested: Option<Attested>) -> Registered {
        Registered {
            kind: "softhsm2".into(),
            description: "Example Org test token".into(),
            enrolment: Some("in person".into()),
            attested,
        }
    }

    #[test]
    fn the_organisation_states_what_it_registered_not_what_the_client_says() {
        let m = stated(&registered(None), &claim("softhsm2"), "Example Org").unwrap();
        assert_eq!(m.token_description, "Example Org test token (registered by Example Org; in person)");
        assert!(!m.describe().contains("FIPS"));
        assert_eq!(m.factors.len(), 2);
        let e = stated(&registered(None), &claim("yubikey"), "Example Org").unwrap_err();
        assert!(e.contains("says its key is on a 'yubikey' token, but Example Org registered a 'softhsm2'"), "{e}");
    }

    #[test]
    fn an_attested_pin_policy_of_never_is_no_pin_factor() {
        let a = Attested {
            serial: Some(12345678),
            firmware: Some("5.4.3".into()),
            pin_policy: Some(Policy::Never),
            touch_policy: Some(Policy::Always),
        };
        let m = stated(&registered(Some(a)), &claim("softhsm2"), "Example Org").unwrap();
        assert_eq!(m.factors.len(), 1);
        assert!(m
            .token_description
            .ends_with("attested: serial 12345678, firmware 5.4.3, PIN never, touch at every use"));
    }
}
