//! `ssmax-card status`: what is plugged in and what it holds. Never asks for a PIN.

use super::ctx::Ctx;
use crate::cms::cert;
use crate::error::Failure;
use crate::token::objects::hex;
use crate::token::uri::Pkcs11Uri;
use crate::token::{candidate_modules, Module, Token};
use const_oid::db::{rfc5912, rfc8410};
use std::time::{Duration, SystemTime};

/// One line into the report.
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        $out.push_str(&format!($($arg)*));
        $out.push('\n');
    }};
}

pub fn run(ctx: &mut dyn Ctx) -> Result<(), Failure> {
    let s = ctx.setup().clone();
    let mut out = String::new();
    let modules = match &s.token_uri.module_path {
        Some(p) => vec![p.clone()],
        None => candidate_modules(&s.profiles),
    };
    if modules.is_empty() {
        say!(out, "no PKCS#11 module installed (looked for: softhsm2, opensc, ykcs11); install one or pass --token 'pkcs11:?module-path=...'");
    }
    let now = SystemTime::now();
    ctx.using_modules();
    for path in modules {
        say!(out, "module {}", path.display());
        let module = match Module::load(&path) {
            Ok(m) => m,
            Err(e) => {
                say!(out, "  error: {e}");
                continue;
            }
        };
        let slots = match module.slots(&s.profiles) {
            Ok(s) => s,
            Err(e) => {
                say!(out, "  error: {e}");
                continue;
            }
        };
        if slots.is_empty() {
            say!(out, "  no slots (no reader connected, or pcscd is not running)");
        }
        for slot in slots {
            let Some(t) = &slot.token else {
                match &slot.problem {
                    Some(p) => say!(out, "  slot {} '{}': {p}", slot.slot.id(), slot.description),
                    None => say!(out, "  slot {} '{}': no token", slot.slot.id(), slot.description),
                }
                continue;
            };
            if !t.initialized {
                say!(out, "  slot {} '{}': uninitialised token", slot.slot.id(), slot.description);
                continue;
            }
            say!(out, "  slot {} '{}': token '{}'", slot.slot.id(), slot.description, t.label);
            say!(out, "    manufacturer {} / model {} / serial {}", t.manufacturer, t.model, t.serial);
            let set_aside = s.profiles.iter().find(|p| p.ignores(&t.label, &t.manufacturer, &t.model));
            if let (None, Some(p)) = (&t.profile, set_aside) {
                // Known and not for mail (JPKI's authentication slot): said, and left alone.
                say!(out, "    profile      {} sets this slot aside: it is not for mail", p.name);
                continue;
            }
            say!(out, "    profile      {}", t.profile.as_deref().unwrap_or("none (add one to use this token)"));
            say!(
                out,
                "    PIN          {}",
                t.pin.describe(s.profiles.iter().find(|p| Some(&p.name) == t.profile.as_ref()))
            );
            let uri = Pkcs11Uri {
                token: Some(t.label.clone()),
                serial: Some(t.serial.clone()),
                module_path: Some(path.clone()),
                ..Default::default()
            };
            let token = match Token::open(&uri, &s.profiles) {
                Ok(tok) => tok,
                Err(e) => {
                    say!(out, "    error: {e}");
                    continue;
                }
            };
            let certificates = token.certificates()?;
            let revocation = Revocation::for_token(&token, &s.config, &certificates)?;
            for c in certificates {
                let Ok(parsed) = cert::parse(&c.der) else {
                    say!(out, "    certificate id {} '{}': does not parse", hex(&c.id), c.label);
                    continue;
                };
                let role = if c.anchor {
                    "trust anchor"
                } else if cert::is_ca(&parsed) {
                    "CA certificate"
                } else {
                    "certificate"
                };
                let spki = &parsed.tbs_certificate.subject_public_key_info;
                let kind = match spki.algorithm.oid {
                    rfc5912::RSA_ENCRYPTION => format!("RSA-{}", rsa_bits(spki.subject_public_key.raw_bytes())),
                    rfc5912::ID_EC_PUBLIC_KEY => match spki.subject_public_key.raw_bytes().len() {
                        65 => "EC P-256".into(),
                        97 => "EC P-384".into(),
                        _ => "EC".into(),
                    },
                    rfc8410::ID_ED_25519 => "Ed25519".into(),
                    other => other.to_string(),
                };
                let until = cert::not_after(&parsed);
                let expiry = if now > until {
                    format!("EXPIRED {}", cert::fmt_time(until))
                } else if until.duration_since(now).unwrap_or_default() < Duration::from_secs(30 * 86400) {
                    format!("expires {} — WARNING: in under 30 days, renew it", cert::fmt_time(until))
                } else {
                    format!("valid until {}", cert::fmt_time(until))
                };
                say!(out, "    {role} id {} '{}'", hex(&c.id), c.label);
                say!(out, "      subject {}", cert::subject(&parsed));
                let emails = cert::emails(&parsed);
                if !emails.is_empty() {
                    say!(out, "      e-mail  {}", emails.join(", "));
                }
                say!(out, "      key     {kind}; {expiry}");
                if role == "certificate" {
                    say!(out, "      revocation {}", revocation.of(&c.der));
                }
            }
            for (id, label, kind) in token.public_keys()? {
                say!(
                    out,
                    "    key pair id {} '{label}': {kind} (private key on the token; listing it needs the PIN)",
                    hex(&id)
                );
            }
            if !token.profile.keys.can_decrypt {
                say!(
                    out,
                    "    note: {}",
                    token.profile.keys.no_decrypt_reason.as_deref().unwrap_or("this token cannot decrypt")
                );
            }
        }
    }
    ctx.report(out);
    Ok(())
}

fn rsa_bits(pkcs1: &[u8]) -> usize {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::traits::PublicKeyParts;
    rsa::RsaPublicKey::from_pkcs1_der(pkcs1).map(|k| k.size() * 8).unwrap_or(0)
}

/// What status says about a user certificate's revocation: its chain to the token's (and the
/// config's) anchors, checked against the config's CRLs and those its distribution points name.
struct Revocation {
    trust: Option<crate::ssmax::TokenTrust>,
}

impl Revocation {
    fn for_token(
        token: &Token,
        config: &crate::config::Config,
        certificates: &[crate::token::objects::CertObject],
    ) -> Result<Revocation, Failure> {
        let mut trust = crate::ssmax::token_trust(token, config)?;
        if trust.revocation == crate::cms::revocation::Policy::Off || trust.anchors.is_empty() {
            return Ok(Revocation { trust: None });
        }
        let ders: Vec<&[u8]> = certificates.iter().map(|c| c.der.as_slice()).collect();
        trust.add_lists_for(&ders, config);
        Ok(Revocation { trust: Some(trust) })
    }

    fn of(&self, der: &[u8]) -> String {
        let Some(trust) = &self.trust else { return "not checked (no trust anchor here, or revocation off)".into() };
        if crate::cms::verify::check_chain(der, &[], &trust.for_chains(), SystemTime::now()).is_err() {
            return "not checked (its chain does not lead to an anchor here)".into();
        }
        let check = trust.for_chains();
        match crate::cms::verify::check_revocation(der, &[], &check, SystemTime::now()) {
            Ok(status) => status.describe(),
            Err(e @ webpki::Error::CertRevoked) => {
                format!("REVOKED: {}", crate::cms::verify::revocation_error("this certificate", &[der], &check, e))
            }
            Err(e) => crate::cms::verify::revocation_error("this certificate", &[der], &check, e),
        }
    }
}
