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
fn say(out: &mut String, line: String) {
    out.push_str(&line);
    out.push('\n');
}

pub fn run(ctx: &mut dyn Ctx) -> Result<(), Failure> {
    let s = ctx.setup().clone();
    let mut out = String::new();
    let modules = match &s.token_uri.module_path {
        Some(p) => vec![p.clone()],
        None => candidate_modules(&s.profiles),
    };
    if modules.is_empty() {
        say(&mut out, crate::tr!("status-no-module"));
    }
    let now = SystemTime::now();
    ctx.using_modules();
    for path in modules {
        say(&mut out, crate::tr!("status-module", path = path));
        let module = match Module::load(&path) {
            Ok(m) => m,
            Err(e) => {
                say(&mut out, crate::tr!("status-module-error", error = e.to_string()));
                continue;
            }
        };
        let slots = match module.slots(&s.profiles) {
            Ok(s) => s,
            Err(e) => {
                say(&mut out, crate::tr!("status-module-error", error = e.to_string()));
                continue;
            }
        };
        if slots.is_empty() {
            say(&mut out, crate::tr!("status-no-slots"));
        }
        for slot in slots {
            let Some(t) = &slot.token else {
                match &slot.problem {
                    Some(p) => say(
                        &mut out,
                        crate::tr!(
                            "status-slot-problem",
                            slot = slot.slot.id(),
                            description = slot.description,
                            problem = p
                        ),
                    ),
                    None => say(
                        &mut out,
                        crate::tr!("status-slot-empty", slot = slot.slot.id(), description = slot.description),
                    ),
                }
                continue;
            };
            if !t.initialized {
                say(
                    &mut out,
                    crate::tr!("status-slot-uninitialised", slot = slot.slot.id(), description = slot.description),
                );
                continue;
            }
            say(
                &mut out,
                crate::tr!("status-slot-token", slot = slot.slot.id(), description = slot.description, token = t.label),
            );
            say(
                &mut out,
                crate::tr!("status-token-model", manufacturer = t.manufacturer, model = t.model, serial = t.serial),
            );
            let set_aside = s.profiles.iter().find(|p| p.ignores(&t.label, &t.manufacturer, &t.model));
            if let (None, Some(p)) = (&t.profile, set_aside) {
                // Known and not for mail (JPKI's authentication slot): said, and left alone.
                say(&mut out, crate::tr!("status-profile-aside", profile = p.name));
                continue;
            }
            say(
                &mut out,
                match t.profile.as_deref() {
                    Some(p) => crate::tr!("status-profile", profile = p),
                    None => crate::tr!("status-profile-none"),
                },
            );
            let pin = t.pin.describe(s.profiles.iter().find(|p| Some(&p.name) == t.profile.as_ref()));
            say(&mut out, crate::tr!("status-pin", state = pin));
            let uri = Pkcs11Uri {
                token: Some(t.label.clone()),
                serial: Some(t.serial.clone()),
                module_path: Some(path.clone()),
                ..Default::default()
            };
            let token = match Token::open(&uri, &s.profiles) {
                Ok(tok) => tok,
                Err(e) => {
                    say(&mut out, crate::tr!("status-token-error", error = e.to_string()));
                    continue;
                }
            };
            let certificates = token.certificates()?;
            let revocation = Revocation::for_token(&token, &s.config, &certificates)?;
            for c in certificates {
                let Ok(parsed) = cert::parse(&c.der) else {
                    say(&mut out, crate::tr!("status-certificate-unparsable", id = hex(&c.id), label = c.label));
                    continue;
                };
                let (id, label) = (hex(&c.id), &c.label);
                let user_certificate = !c.anchor && !cert::is_ca(&parsed);
                let heading = if c.anchor {
                    crate::tr!("status-anchor", id = id, label = label)
                } else if cert::is_ca(&parsed) {
                    crate::tr!("status-ca-certificate", id = id, label = label)
                } else {
                    crate::tr!("status-certificate", id = id, label = label)
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
                let when = cert::fmt_time(until);
                let expiry = if now > until {
                    crate::tr!("status-expired", when = when)
                } else if until.duration_since(now).unwrap_or_default() < Duration::from_secs(30 * 86400) {
                    crate::tr!("status-expiring", when = when)
                } else {
                    crate::tr!("status-valid-until", when = when)
                };
                say(&mut out, heading);
                say(&mut out, crate::tr!("status-subject", subject = cert::subject(&parsed)));
                let emails = cert::emails(&parsed);
                if !emails.is_empty() {
                    say(&mut out, crate::tr!("status-emails", emails = emails.join(", ")));
                }
                say(&mut out, crate::tr!("status-key", kind = kind, expiry = expiry));
                if user_certificate {
                    say(&mut out, crate::tr!("status-revocation", status = revocation.of(&c.der)));
                }
            }
            for (id, label, kind) in token.public_keys()? {
                say(&mut out, crate::tr!("status-key-pair", id = hex(&id), label = label, kind = kind));
            }
            if !token.profile.keys.can_decrypt {
                say(
                    &mut out,
                    match token.profile.keys.no_decrypt_reason.as_deref() {
                        Some(reason) => crate::tr!("status-note", note = reason),
                        None => crate::tr!("status-cannot-decrypt"),
                    },
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
        for c in certificates {
            if let Ok(path) = trust.path_for(&c.der) {
                trust.add_lists_for(&path, config);
            }
        }
        Ok(Revocation { trust: Some(trust) })
    }

    fn of(&self, der: &[u8]) -> String {
        let Some(trust) = &self.trust else { return crate::tr!("status-revocation-no-trust") };
        let Ok(path) = trust.path_for(der) else { return crate::tr!("status-revocation-no-chain") };
        let this = crate::tr!("status-this-certificate");
        let check = trust.for_chains();
        match crate::cms::verify::check_revocation(&path, &check, SystemTime::now()) {
            Ok(status) => status.describe(),
            Err(e @ webpki::Error::CertRevoked) => {
                crate::tr!("status-revoked", reason = crate::cms::verify::revocation_error(&this, &path, &check, e))
            }
            Err(e) => crate::cms::verify::revocation_error(&this, &path, &check, e),
        }
    }
}
