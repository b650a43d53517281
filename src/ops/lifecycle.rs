//! Registration on the device (SSMAX step 2): keygen on the token, a PKCS#10 request signed on
//! the token, the issued certificate and the organisation's certificates stored on the token,
//! renewal that keeps old keys for decryption only.

use super::ctx::{Ctx, Parts};
use crate::cms::cert;
use crate::error::{Exit, Failure};
use crate::profile::parse_hex;
use crate::token::keys::KeySpec;
use crate::token::objects::hex;
use crate::token::signer::{Scheme, TokenSignature, TokenSigner};
use crate::token::TokenError;
use der::asn1::Ia5String;
use der::{Decode, EncodePem};
use std::str::FromStr;
use x509_cert::builder::{Builder, RequestBuilder};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::name::Name;

fn key_id(p: &Parts<'_>) -> Option<Vec<u8>> {
    p.s.key_uri.as_ref().and_then(|k| k.id.clone())
}

pub fn keygen(ctx: &mut dyn Ctx, spec: KeySpec, label: Option<&str>, id: Option<&str>) -> Result<(), Failure> {
    let note = {
        let p = ctx.token()?;
        if !p.token.profile.keys.can_generate {
            let reason = p.token.profile.keys.no_generate_reason.clone().unwrap_or_default();
            return Err(
                TokenError::NoKey(crate::tr!("keygen-impossible", token = p.token.label, reason = reason)).into()
            );
        }
        let id = match id.or(None) {
            Some(h) => {
                parse_hex(h).ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("keygen-id-not-hex", id = h)))?
            }
            None => match key_id(&p) {
                Some(i) => i,
                None => p.token.free_id()?,
            },
        };
        if p.token.public_key(&id).is_ok() {
            return Err(Failure::new(Exit::Usage, crate::tr!("keygen-id-taken", token = p.token.label, id = hex(&id))));
        }
        let label = label.map(str::to_string).unwrap_or_else(|| format!("ssmax-key-{}", hex(&id)));
        p.token.make_rw()?;
        p.token.login(p.prompt, &crate::tr!("keygen-operation", label = label), p.allow_final_pin_try)?;
        p.token.generate(spec, &id, &label)?;
        crate::tr!("keygen-done", kind = format!("{spec:?}"), label = label, token = p.token.label, id = hex(&id))
    };
    ctx.note(note);
    Ok(())
}

/// A PKCS#10 request for `email`, signed on the token with the key --key names.
pub fn csr(ctx: &mut dyn Ctx, email: &str, subject: Option<&str>, attest: bool) -> Result<(), Failure> {
    let pem = {
        let p = ctx.token()?;
        let id = key_id(&p).ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("csr-no-key")))?;
        let spki = p.token.public_key(&id)?;
        let subject = subject.map(str::to_string).unwrap_or_else(|| format!("CN={email}"));
        let name = Name::from_str(&subject).map_err(|e| {
            Failure::new(Exit::Usage, crate::tr!("csr-bad-subject", subject = subject, error = e.to_string()))
        })?;
        let email_ia5 =
            Ia5String::new(email).map_err(|_| Failure::new(Exit::Usage, crate::tr!("csr-bad-email", email = email)))?;
        p.token.login(p.prompt, &crate::tr!("csr-operation", email = email), p.allow_final_pin_try)?;
        let key = p
            .token
            .private_keys()?
            .into_iter()
            .find(|k| k.id == id)
            .ok_or_else(|| TokenError::NoKey(crate::tr!("csr-no-private-key", id = hex(&id))))?;
        let scheme = Scheme::for_key(&key.kind, false)?;
        let signer = TokenSigner::new(p.token, key, scheme, spki)?;
        let fail = |e: x509_cert::builder::Error| {
            Failure::new(Exit::Io, crate::tr!("csr-build-failed", error = e.to_string()))
        };
        let mut b = RequestBuilder::new(name, &signer).map_err(fail)?;
        b.add_extension(&SubjectAltName(vec![GeneralName::Rfc822Name(email_ia5)])).map_err(fail)?;
        b.add_extension(&ExtendedKeyUsage(vec![cert::EKU_EMAIL])).map_err(fail)?;
        let req = match b.build::<TokenSignature>() {
            Ok(r) => r,
            Err(e) => return Err(signer.take_failure().map(Failure::from).unwrap_or_else(|| fail(e))),
        };
        req.to_pem(der::pem::LineEnding::LF).map_err(|e| Failure::new(Exit::Io, e.to_string()))?
    };
    let pem = if attest {
        use crate::token::attestation::{attach, fetch_signature_slot};
        let attestation = |e: String| Failure::new(Exit::NoKey, crate::tr!("csr-attestation-failed", error = e));
        let chain = fetch_signature_slot().map_err(|e| attestation(e.to_string()))?;
        attach(&pem, &chain).map_err(|e| attestation(e.to_string()))?
    } else {
        pem
    };
    ctx.output(pem.into_bytes())?;
    ctx.note(crate::tr!("csr-done", email = email));
    Ok(())
}

/// Store the issued certificate next to the key whose public key it carries. Older keys with a
/// certificate for the same address are retired from signing: they still decrypt old mail.
pub fn import_cert(ctx: &mut dyn Ctx, label: Option<&str>) -> Result<(), Failure> {
    let data = ctx.input()?;
    let ders = parse_certs(&data)?;
    let bundle: Vec<(Vec<u8>, x509_cert::Certificate)> =
        ders.into_iter().map(|d| cert::parse(&d).map(|c| (d, c))).collect::<Result<_, _>>()?;
    // A CA's bundle lists the certificate and its issuers, in any order (a PKCS#7 SET is sorted).
    let leaf_at = bundle
        .iter()
        .position(|(_, c)| !cert::is_ca(c))
        .ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("import-only-ca")))?;
    let leaf_der = bundle[leaf_at].0.clone();
    let mut notes = Vec::new();
    {
        let p = ctx.token()?;
        let leaf = bundle[leaf_at].1.clone();
        let spki = &leaf.tbs_certificate.subject_public_key_info;
        // The key it belongs to: the public key objects are readable without a PIN.
        let mut owner = None;
        for (id, _, _) in p.token.public_keys()? {
            if p.token.public_key(&id).ok().as_ref() == Some(spki) {
                owner = Some(id);
                break;
            }
        }
        let id = owner.ok_or_else(|| {
            TokenError::NoKey(crate::tr!(
                "import-no-matching-key",
                token = p.token.label,
                subject = cert::subject(&leaf)
            ))
        })?;
        if let Some(want) = key_id(&p) {
            if want != id {
                return Err(
                    TokenError::NoKey(crate::tr!("import-other-key", id = hex(&id), wanted = hex(&want))).into()
                );
            }
        }
        if p.token.certificates()?.iter().any(|c| c.der == leaf_der) {
            return Err(Failure::new(Exit::Usage, crate::tr!("import-already-there")));
        }
        let label = label.map(str::to_string).unwrap_or_else(|| {
            format!("{} {}", cert::emails(&leaf).first().cloned().unwrap_or_default(), hex(&id)).trim().to_string()
        });
        p.token.make_rw()?;
        p.token.login(
            p.prompt,
            &crate::tr!("import-operation", subject = cert::subject(&leaf)),
            p.allow_final_pin_try,
        )?;
        p.token.store_certificate(&leaf, &id, &label)?;
        notes.push(crate::tr!(
            "import-done",
            subject = cert::subject(&leaf),
            id = hex(&id),
            label = label,
            until = cert::fmt_time(cert::not_after(&leaf))
        ));
        store_issuers(&p, &bundle, &leaf, &mut notes)?;
        // Renewal: the newest key signs; older keys for the same address only decrypt.
        let emails = cert::emails(&leaf);
        let keys = p.token.private_keys()?;
        for c in p.token.certificates()? {
            if c.id == id || c.anchor {
                continue;
            }
            let Ok(old) = cert::parse(&c.der) else { continue };
            if cert::is_ca(&old)
                || !cert::emails(&old).iter().any(|e| emails.contains(e))
                || cert::not_before(&old) > cert::not_before(&leaf)
            {
                continue;
            }
            if let Some(k) = keys.iter().find(|k| k.id == c.id && k.can_sign) {
                p.token.retire_for_signing(k)?;
                notes.push(crate::tr!("import-retired", id = hex(&k.id), key = k.label, certificate = c.label));
            }
        }
    }
    for n in notes {
        ctx.note(n);
    }
    Ok(())
}

/// Store an SSMAX root (trust anchor) or the organisation's certificate on the token.
pub fn import_anchor(ctx: &mut dyn Ctx, org: bool, label: Option<&str>) -> Result<(), Failure> {
    let data = ctx.input()?;
    let ders = parse_certs(&data)?;
    let note = {
        let p = ctx.token()?;
        let c = cert::parse(&ders[0])?;
        let prefix = if org {
            p.token.profile.keys.org_label_prefix.clone()
        } else {
            p.token.profile.keys.anchor_label_prefix.clone()
        };
        let prefix = prefix.filter(|x| !x.is_empty()).ok_or_else(|| {
            TokenError::NoKey(if org {
                crate::tr!("anchor-profile-no-org-prefix", profile = p.token.profile.name)
            } else {
                crate::tr!("anchor-profile-no-prefix", profile = p.token.profile.name)
            })
        })?;
        if org {
            if cert::is_ca(&c) {
                return Err(Failure::new(Exit::Usage, crate::tr!("anchor-org-is-ca")));
            }
            cert::check_email_eku(&c)
                .map_err(|r| Failure::new(Exit::Usage, crate::tr!("anchor-org-not-mail", reason = r)))?;
        } else if !cert::is_ca(&c) {
            return Err(Failure::new(Exit::Usage, crate::tr!("anchor-not-ca")));
        }
        if p.token.certificates()?.iter().any(|x| x.der == ders[0]) {
            return Err(Failure::new(Exit::Usage, crate::tr!("import-already-there")));
        }
        let name = crate::ssmax::display_name(&c);
        let label = label.map(|l| format!("{prefix}-{l}")).unwrap_or_else(|| format!("{prefix}-{name}"));
        let id = p.token.free_id()?;
        p.token.make_rw()?;
        p.token.login(
            p.prompt,
            &if org {
                crate::tr!("anchor-operation-org", name = name)
            } else {
                crate::tr!("anchor-operation", name = name)
            },
            p.allow_final_pin_try,
        )?;
        p.token.store_certificate(&c, &id, &label)?;
        crate::tr!("anchor-done", subject = cert::subject(&c), token = p.token.label, label = label)
    };
    ctx.note(note);
    Ok(())
}

/// The certificates on the token with their expiry (30-day warning).
pub fn certs(ctx: &mut dyn Ctx) -> Result<(), Failure> {
    let mut out = String::new();
    {
        let p = ctx.token()?;
        let now = std::time::SystemTime::now();
        for c in p.token.certificates()? {
            let Ok(parsed) = cert::parse(&c.der) else { continue };
            let role = if c.anchor {
                "anchor"
            } else if p.token.profile.is_org(&c.label) {
                "org"
            } else if cert::is_ca(&parsed) {
                "ca"
            } else {
                "user"
            };
            let until = cert::not_after(&parsed);
            let left = until.duration_since(now).map(|d| d.as_secs() / 86400);
            let state = match left {
                Err(_) => crate::tr!("certs-expired"),
                Ok(d) if d < 30 => crate::tr!("certs-expiring", days = d),
                Ok(d) => crate::tr!("certs-days-left", days = d),
            };
            out.push_str(&format!(
                "{:<6} id {:<4} {:<28} {} | until {} ({state})\n",
                role,
                hex(&c.id),
                c.label,
                cert::subject(&parsed),
                cert::fmt_time(until)
            ));
        }
    }
    ctx.report(out);
    Ok(())
}

/// The issuing CAs a bundle carries for `leaf`, stored as plain certificates — never as trust
/// anchors — so that every signature carries the chain and a correspondent who trusts only
/// the SSMAX root can verify it. A self-signed root in the bundle is not stored: trusting a
/// root is import-anchor's decision.
fn store_issuers(
    p: &crate::ops::ctx::Parts<'_>,
    bundle: &[(Vec<u8>, x509_cert::Certificate)],
    leaf: &x509_cert::Certificate,
    notes: &mut Vec<String>,
) -> Result<(), Failure> {
    let on_token: Vec<Vec<u8>> = p.token.certificates()?.into_iter().map(|c| c.der).collect();
    let mut cur = leaf;
    for _ in 0..bundle.len() {
        let Some((der, ca)) =
            bundle.iter().find(|(_, c)| cert::is_ca(c) && c.tbs_certificate.subject == cur.tbs_certificate.issuer)
        else {
            break;
        };
        if ca.tbs_certificate.subject == ca.tbs_certificate.issuer {
            notes.push(crate::tr!("import-root-not-stored", subject = cert::subject(ca)));
            break;
        }
        if on_token.contains(der) {
            notes.push(crate::tr!("import-issuer-there", subject = cert::subject(ca)));
        } else {
            let label = format!("ca-{}", crate::ssmax::display_name(ca));
            let id = p.token.free_id()?;
            p.token.store_certificate(ca, &id, &label)?;
            notes.push(crate::tr!("import-issuer-stored", subject = cert::subject(ca), label = label));
        }
        cur = ca;
    }
    Ok(())
}

/// Certificates from PEM (any number), one DER certificate, or a PKCS#7 / CMS certs-only
/// bundle (`.p7b`, `.p7c`; DER or PEM), as CAs hand them out.
fn parse_certs(data: &[u8]) -> Result<Vec<Vec<u8>>, Failure> {
    let bad = |e: &dyn std::fmt::Display| {
        Failure::new(Exit::Usage, crate::tr!("import-not-certificate", error = e.to_string()))
    };
    let trimmed = data.trim_ascii_start();
    if trimmed.starts_with(b"-----BEGIN PKCS7")
        || trimmed.starts_with(b"-----BEGIN CMS")
        || (!trimmed.starts_with(b"-----BEGIN") && crate::cms::signed::parse(data).is_ok())
    {
        let der = crate::cms::unarmor(data)?;
        let sd = crate::cms::signed::parse(&der)?;
        let certs: Vec<Vec<u8>> = sd
            .certificates
            .iter()
            .flat_map(|s| s.iter())
            .filter_map(|c| match c {
                cms::cert::CertificateChoices::Certificate(c) => der::Encode::to_der(c).ok(),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(Failure::new(Exit::Usage, crate::tr!("import-empty-bundle")));
        }
        return Ok(certs);
    }
    if data.trim_ascii_start().starts_with(b"-----BEGIN") {
        let certs = x509_cert::Certificate::load_pem_chain(data).map_err(|e| bad(&e))?;
        certs.iter().map(|c| der::Encode::to_der(c).map_err(|e| bad(&e))).collect()
    } else {
        x509_cert::Certificate::from_der(data).map_err(|e| bad(&e))?;
        Ok(vec![data.to_vec()])
    }
}
