//! `ssmax-card sign`: RFC 5322 mail in, S/MIME multipart/signed out, signature made on the token.

use super::ctx::{Ctx, Parts};
use crate::cms::cert;
use crate::config::SignatureScheme;
use crate::error::{Exit, Failure};
use crate::mail::smime::{signed_parts, split_fields};
use crate::mail::{canonicalise, Entity, Field};
use crate::ssmax::IdentityMethod;
use crate::token::objects::Shown;
use crate::token::signer::{Hash, Scheme, TokenSigner};
use crate::token::uri::Pkcs11Uri;
use crate::token::{Token, TokenError};
use std::time::{Duration, SystemTime};
use x509_cert::Certificate;

/// A certificate on the token chosen to sign, with the CKA_ID that links it to its key.
pub struct Chosen {
    pub id: Vec<u8>,
    pub label: String,
    pub cert: std::sync::Arc<Certificate>,
    /// What `cert` was parsed from (carried in the signature as it is).
    pub der: Vec<u8>,
    pub subject: std::sync::Arc<str>,
}

/// How the signature is bound to the From address.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Binding {
    /// Plain S/MIME: the certificate must carry the From address.
    Certificate,
    /// The user confirmed (`--personal-certificate`) signing with a certificate that names them,
    /// not their mailbox: recipients see its personal data and no From binding.
    PersonalConfirmed,
    /// SSMAX `send` / `forward`: the organisation verifies the sender and re-signs, binding From.
    Organisation,
}

pub fn run(ctx: &mut dyn Ctx, pss: bool, binding: Binding) -> Result<(), Failure> {
    let raw = ctx.input()?;
    let mail = Entity::parse(&raw)?;
    let from = mail.from_address().map_err(|e| match e {
        crate::mail::FromError::Missing => Failure::new(Exit::Usage, crate::tr!("sign-no-from")),
        e => Failure::new(Exit::Usage, crate::tr!("sign-from-refused", why = e.to_string())),
    })?;
    // What will be signed must not name another sender (a message/rfc822 of someone else's as
    // the whole content): a reader honouring header protection would show that one.
    crate::mail::sender_inside(&raw, &from)
        .map_err(|e| Failure::new(Exit::Usage, crate::tr!("sign-from-refused", why = e.to_string())))?;
    let (outer, mut content_fields) = split_fields(&mail.fields);
    if !content_fields.iter().any(|f| f.is("Content-Type")) {
        let charset = if mail.body.is_ascii() { "us-ascii" } else { "utf-8" };
        content_fields.insert(0, Field::new("Content-Type", &format!("text/plain; charset={charset}")));
    }
    let to = recipients(&mail);
    // A body that is already canonical (CRLF, 7-bit, relay-safe: typical of large base64
    // attachments) is signed and written as it is, without a copy; anything else is rewritten.
    let mut fields: Vec<u8> = content_fields.iter().flat_map(|f| f.raw.iter().copied()).collect();
    fields.extend_from_slice(b"\r\n");
    let entity = Entity { fields: content_fields, body: mail.body };
    // The digest is taken here, before the token is needed (the agent serves other clients
    // meanwhile), and for a large body beside the canonical check rather than after it.
    let as_is = crate::mail::canonical_digest(&fields, mail.body, |pieces| Hash::Sha256.digest_pieces(pieces));
    let canonical_copy = match as_is {
        Some(_) => {
            crate::mail::check_structure(&entity, 0)?;
            None
        }
        None => Some(canonicalise(&entity, 0)?),
    };
    let signed: Vec<&[u8]> = match &canonical_copy {
        Some(c) => vec![c.as_slice()],
        None => vec![fields.as_slice(), mail.body],
    };
    let sha256 = as_is.unwrap_or_else(|| Hash::Sha256.digest_pieces(&signed));
    choose_signing_token(ctx, &from, binding)?;
    let (done, summary) = {
        let mut p = ctx.token()?;
        let done = sign_on_token(&mut p, &from, &to, &signed, Some(&sha256), pss, binding)?;
        let summary = done.summary(&from, p.token);
        (done, summary)
    };
    ctx.done_with_token();
    let [head, tail] = signed_parts(&outer, &signed, &done.der, done.scheme.hash().micalg());
    let mut pieces: Vec<&[u8]> = vec![&head];
    pieces.extend(signed.iter().copied());
    pieces.push(&tail);
    ctx.output_pieces(&pieces)?;
    for w in done.warnings {
        ctx.note(crate::tr!("warning", text = w));
    }
    ctx.note(summary);
    Ok(())
}

/// Whether `token` can sign for `from` under `binding`, judged without a PIN: a certificate
/// for the address, or (where the binding allows) a personal certificate (My Number card).
fn signs_for(token: &Shown, from: &str, personal: bool) -> Result<bool, Failure> {
    if token.profile.keys.personal_certificate.is_some() {
        return Ok(personal);
    }
    if personal {
        return Ok(false);
    }
    let ids = token.profile.signing_ids();
    Ok(token.certificates.iter().any(|c| {
        !c.anchor
            && (ids.is_empty() || ids.contains(&c.id))
            && c.parsed.as_deref().is_some_and(|p| !cert::is_ca(p) && cert::emails(p).iter().any(|e| e == from))
    }))
}

/// With several tokens present and none named: the one whose certificate carries `from`. For
/// SSMAX (the organisation binds From) a personal certificate serves when no token carries it.
pub fn choose_signing_token(ctx: &mut dyn Ctx, from: &str, binding: Binding) -> Result<(), Failure> {
    let by_address = crate::tr!("sign-wanted-certificate", from = from);
    let personal = &crate::tr!("sign-wanted-personal");
    match binding {
        Binding::Certificate => ctx.choose_token(&by_address, &|t| signs_for(t, from, false)),
        Binding::PersonalConfirmed => ctx.choose_token(personal, &|t| signs_for(t, from, true)),
        Binding::Organisation => match ctx.choose_token(&by_address, &|t| signs_for(t, from, false)) {
            Err(f) if f.exit == Exit::NoKey => ctx.choose_token(personal, &|t| signs_for(t, from, true)),
            other => other,
        },
    }
}

/// `sign --signature-only --from ADDRESS`: the input is the MIME entity a mail client puts first
/// in multipart/signed (neomutt's smime_sign_command); the output is only the detached DER
/// signature. The client sends the entity itself, so it is signed exactly as it will travel
/// (CRLF line ends), never rewritten: one that would not survive relays is refused instead.
pub fn run_signature_only(ctx: &mut dyn Ctx, pss: bool, from: &str) -> Result<(), Failure> {
    let raw = ctx.input()?;
    let from = from.trim().to_ascii_lowercase();
    if !from.contains('@') {
        return Err(Failure::new(Exit::Usage, crate::tr!("sign-from-not-address", from = from)));
    }
    let entity = if crate::mail::is_crlf(&raw) { raw } else { crate::mail::to_crlf(&raw) };
    let parsed = Entity::parse(&entity)?;
    if !parsed.fields.iter().any(|f| f.is("Content-Type")) {
        return Err(Failure::new(Exit::Usage, crate::tr!("sign-not-mime-entity")));
    }
    if !entity.is_ascii() || entity.split(|&b| b == b'\n').any(|l| l.len() > 1000) {
        return Err(Failure::new(Exit::Usage, crate::tr!("sign-not-7bit")));
    }
    crate::mail::check_structure(&parsed, 0)?;
    choose_signing_token(ctx, &from, Binding::Certificate)?;
    let (done, summary) = {
        let mut p = ctx.token()?;
        let done = sign_on_token(&mut p, &from, "", &[&entity], None, pss, Binding::Certificate)?;
        let summary = done.summary(&from, p.token);
        (done, summary)
    };
    ctx.done_with_token();
    ctx.output(done.der)?;
    for w in done.warnings {
        ctx.note(crate::tr!("warning", text = w));
    }
    ctx.note(summary);
    Ok(())
}

/// The To and Cc addresses of a mail, for the PIN prompt.
pub fn recipients(mail: &Entity<'_>) -> String {
    ["To", "Cc"].iter().filter_map(|h| mail.field(h).map(crate::mail::field_value)).collect::<Vec<_>>().join(", ")
}

/// A signature made on the token.
pub struct Signed {
    pub der: Vec<u8>,
    pub warnings: Vec<String>,
    pub scheme: Scheme,
    pub subject: String,
    pub key_label: String,
}

impl Signed {
    pub fn summary(&self, from: &str, token: &Token) -> String {
        crate::tr!(
            "sign-done",
            from = from,
            subject = self.subject,
            key = self.key_label,
            token = token.label,
            scheme = self.scheme.describe()
        )
    }
}

/// Both factors, then the signature: choose the certificate for `from` (before the PIN unless the
/// token hides certificates behind it), log in, sign `content` on the token. The signature
/// carries the SSMAX identity-method attribute: which factors were checked, and when.
/// `to` names the recipients in the PIN prompt, so the user sees what they are signing.
pub fn sign_on_token(
    p: &mut Parts<'_>,
    from: &str,
    to: &str,
    content: &[&[u8]],
    sha256: Option<&[u8]>,
    pss: bool,
    binding: Binding,
) -> Result<Signed, Failure> {
    sign_content(p, from, to, Content::Given(content, sha256), pss, binding).map(|(signed, _)| signed)
}

/// As `sign_on_token`, for content that names the signing certificate: `build` makes it once
/// the certificate is chosen (an SSMAX mail binds each attachment to its sender). The content
/// comes back with the signature.
pub fn sign_built_on_token(
    p: &mut Parts<'_>,
    from: &str,
    to: &str,
    build: &mut dyn FnMut(&Certificate) -> Result<Vec<u8>, Failure>,
    pss: bool,
    binding: Binding,
) -> Result<(Signed, Vec<u8>), Failure> {
    sign_content(p, from, to, Content::ForSigner(build), pss, binding)
}

/// What is signed: given (with its SHA-256 when already known), or built for the signer.
enum Content<'c> {
    Given(&'c [&'c [u8]], Option<&'c [u8]>),
    ForSigner(&'c mut dyn FnMut(&Certificate) -> Result<Vec<u8>, Failure>),
}

fn sign_content(
    p: &mut Parts<'_>,
    from: &str,
    to: &str,
    content: Content<'_>,
    pss: bool,
    binding: Binding,
) -> Result<(Signed, Vec<u8>), Failure> {
    let (allow_final_pin_try, s, prompt) = (p.allow_final_pin_try, p.s, p.prompt);
    let token: &mut Token = p.token;
    let to = if to.is_empty() { String::new() } else { crate::tr!("sign-operation-to", to = to) };
    let mut warnings = Vec::new();
    // Decided from the profile, before the PIN: a refusal must not cost the user a try.
    let personal = token.profile.keys.personal_certificate.clone();
    if let Some(what) = &personal {
        match binding {
            Binding::Certificate => {
                return Err(Failure::new(
                    Exit::NoKey,
                    crate::tr!("sign-personal-unasked", token = token.label, what = what, from = from),
                ))
            }
            Binding::PersonalConfirmed => {
                warnings.push(crate::tr!("sign-personal-confirmed", what = what, from = from))
            }
            Binding::Organisation => {}
        }
    }
    if token.profile.keys.certificates_need_login {
        token.login(prompt, &crate::tr!("sign-operation", from = from, to = to), allow_final_pin_try)?;
    }
    let candidates = choose_signing_cert(token, s.key_uri.as_ref(), from, personal.is_some())?;
    // Before the PIN: a revoked certificate is not one to type it for.
    let mut refusal = None;
    let candidates: Vec<Chosen> = candidates
        .into_iter()
        .filter(|c| match refuse_revoked(token, s, &c.der) {
            Ok(()) => true,
            Err(f) => {
                refusal.get_or_insert(f);
                false
            }
        })
        .collect();
    if let (true, Some(f)) = (candidates.is_empty(), refusal) {
        return Err(f);
    }
    // Name the key when there is no choice left to make after login (renewed keys are skipped then).
    let operation = match candidates.as_slice() {
        [only] => crate::tr!("sign-operation-key", from = from, to = to, key = only.label),
        _ => crate::tr!("sign-operation", from = from, to = to),
    };
    token.login(prompt, &operation, allow_final_pin_try)?;
    let (chosen, key) = first_signing_key(token, candidates, s.key_uri.is_some(), &mut warnings)?;
    if key.always_authenticate {
        token.fresh_pin_for_context(prompt, &operation, allow_final_pin_try)?;
    }
    let scheme = Scheme::for_key(&key.kind, pss || s.config.rsa_signature == SignatureScheme::Pss)?;
    let key_label = key.label.clone();
    let identity = IdentityMethod {
        factors: vec![format!("possession of the {} token", token.profile.name), "knowledge of its PIN".into()],
        token_profile: token.profile.name.clone(),
        token_description: format!("{} — {}", token.description, token.profile.description),
        pin_verified_at: token.login_time.unwrap_or_else(SystemTime::now),
    };
    let chain = intermediates(token, &chosen.cert, &s.config.intermediates)?;
    let certificates: Vec<&[u8]> =
        std::iter::once(chosen.der.as_slice()).chain(chain.iter().map(|c| c.as_slice())).collect();
    let (built, given, sha256) = match content {
        Content::Given(pieces, sha256) => (Vec::new(), Some(pieces), sha256),
        Content::ForSigner(build) => (build(&chosen.cert)?, None, None),
    };
    let built_pieces = [built.as_slice()];
    let der = {
        let spki = chosen.cert.tbs_certificate.subject_public_key_info.clone();
        let signer = TokenSigner::new(token, key, scheme, spki)?;
        crate::token::signer::sign_detached(
            &signer,
            &chosen.cert,
            &certificates,
            given.unwrap_or(&built_pieces),
            sha256,
            vec![identity.attribute()?],
        )?
    };
    Ok((Signed { der, warnings, scheme, subject: chosen.subject.to_string(), key_label }, built))
}

/// The token's certificate for `from`: named by --key if given, else any whose rfc822Name is
/// the From address; it must be valid now and allowed to sign mail.
/// `personal`: the token's certificates name a person, not a mailbox (the caller has decided the
/// binding), so they are not filtered by the From address.
pub fn choose_signing_cert(
    token: &Token,
    key_uri: Option<&Pkcs11Uri>,
    from: &str,
    personal: bool,
) -> Result<Vec<Chosen>, Failure> {
    let wanted_ids = token.profile.signing_ids();
    let mut candidates = Vec::new();
    for c in token.certificates()? {
        if c.anchor || c.id.is_empty() || (!wanted_ids.is_empty() && !wanted_ids.contains(&c.id)) {
            continue;
        }
        if let Some(k) = key_uri {
            if k.id.as_ref().is_some_and(|id| *id != c.id) || k.object.as_ref().is_some_and(|o| *o != c.label) {
                continue;
            }
        }
        let Some(parsed) = c.parsed else { continue };
        if cert::is_ca(&parsed) {
            continue;
        }
        candidates.push(Chosen { id: c.id, label: c.label, cert: parsed, der: c.der, subject: c.subject });
    }
    if candidates.is_empty() {
        return Err(Failure::new(
            Exit::NoKey,
            match key_uri {
                Some(k) => crate::tr!("sign-no-matching-certificate", token = token.label, uri = k.to_string()),
                None => crate::tr!("sign-no-certificate", token = token.label),
            },
        ));
    }
    let for_from: Vec<Chosen> = candidates
        .iter()
        .filter(|c| personal || cert::emails(&c.cert).iter().any(|e| e == from))
        .map(|c| Chosen {
            id: c.id.clone(),
            label: c.label.clone(),
            cert: c.cert.clone(),
            der: c.der.clone(),
            subject: c.subject.clone(),
        })
        .collect();
    if for_from.is_empty() {
        let names: Vec<String> = candidates.iter().flat_map(|c| cert::emails(&c.cert)).collect();
        return Err(Failure::new(
            Exit::NoKey,
            if names.is_empty() {
                crate::tr!("sign-from-not-in-certificate-none", from = from, token = token.label)
            } else {
                crate::tr!("sign-from-not-in-certificate", from = from, token = token.label, names = names.join(", "))
            },
        ));
    }
    let now = SystemTime::now();
    let mut usable: Vec<Chosen> = Vec::new();
    let mut reasons = Vec::new();
    for c in for_from {
        if now > cert::not_after(&c.cert) {
            let when = cert::fmt_time(cert::not_after(&c.cert));
            reasons.push(crate::tr!("sign-certificate-expired", label = c.label, when = when));
        } else if now < cert::not_before(&c.cert) {
            let when = cert::fmt_time(cert::not_before(&c.cert));
            reasons.push(crate::tr!("sign-certificate-not-yet-valid", label = c.label, when = when));
        } else if let Err(r) = cert::check_signing_usage(&c.cert) {
            reasons.push(crate::tr!("sign-certificate-wrong-usage", label = c.label, reason = r));
        } else {
            usable.push(c);
        }
    }
    // The most recently issued certificate is the current one (renewal); then the longest-lived.
    usable.sort_by_key(|c| std::cmp::Reverse((cert::not_before(&c.cert), cert::not_after(&c.cert))));
    if usable.is_empty() {
        return Err(Failure::new(Exit::NoKey, crate::tr!("sign-no-usable", from = from, reasons = reasons.join("; "))));
    }
    Ok(usable)
}

/// A revoked certificate (a card reported lost) is not signed with: checked against the
/// config's CRLs when its chain can be built here. A chain that cannot be built is the
/// verifier's business, not a reason to refuse; a status the policy requires is.
fn refuse_revoked(token: &Token, s: &crate::ops::setup::Setup, der: &[u8]) -> Result<(), Failure> {
    use crate::cms::revocation::Policy;
    use webpki::Error as E;
    let mut trust = crate::ssmax::token_trust(token, &s.config)?;
    let named = cert::parse(der)
        .map(|c| !crate::crl_store::distribution_points(&c).is_empty() || !crate::cms::ocsp::responders(&c).is_empty())
        .unwrap_or(false);
    if trust.revocation == Policy::Off || (trust.crls.is_empty() && !named && trust.revocation != Policy::Require) {
        return Ok(());
    }
    let path = match trust.path_for(der) {
        Ok(p) => p,
        // No issuer here whose word on it counts: unknown, which only `require` refuses.
        Err(_) if trust.revocation == Policy::Require => {
            let who = crate::tr!("sign-your-certificate");
            let reason = crate::tr!("revocation-required-unknown", who = who);
            return Err(Failure::new(Exit::NoKey, crate::tr!("sign-revocation-unknown", reason = reason)));
        }
        Err(_) => return Ok(()),
    };
    trust.add_lists_for(&path, &s.config);
    let check = trust.for_chains();
    let why = |e| crate::cms::verify::revocation_error(&crate::tr!("sign-your-certificate"), &path, &check, e);
    match crate::cms::verify::check_revocation(&path, &check, SystemTime::now()) {
        Ok(_) => Ok(()),
        Err(e @ E::CertRevoked) => Err(Failure::new(Exit::NoKey, crate::tr!("sign-revoked", reason = why(e)))),
        Err(e @ (E::UnknownRevocationStatus | E::CrlExpired { .. })) if trust.revocation == Policy::Require => {
            Err(Failure::new(Exit::NoKey, crate::tr!("sign-revocation-unknown", reason = why(e))))
        }
        Err(_) => Ok(()),
    }
}

/// After login: the first candidate whose key may still sign (renewed keys only decrypt).
fn first_signing_key(
    token: &Token,
    candidates: Vec<Chosen>,
    explicit: bool,
    warnings: &mut Vec<String>,
) -> Result<(Chosen, crate::token::objects::KeyObject), Failure> {
    let mut retired = None;
    for c in candidates {
        let Some(k) = token.private_key(&c.id)? else { continue };
        if !k.can_sign && !explicit {
            retired.get_or_insert(c.label.clone());
            continue;
        }
        let left = cert::not_after(&c.cert).duration_since(SystemTime::now()).unwrap_or_default();
        if left < Duration::from_secs(30 * 86400) {
            let when = cert::fmt_time(cert::not_after(&c.cert));
            let days = left.as_secs() / 86400;
            warnings.push(crate::tr!("sign-certificate-expiring", label = c.label, when = when, days = days));
        }
        return Ok((c, k));
    }
    Err(TokenError::NoKey(match retired {
        Some(l) => crate::tr!("sign-key-retired", label = l),
        None => crate::tr!("sign-no-private-key", token = token.label),
    })
    .into())
}

/// CA certificates that lead from `leaf` towards an anchor, to help the verifier: those on the
/// token, then those the config names (`intermediates`: a card carries only its holder's
/// certificates, and a recipient who trusts only the root needs the issuing CA too). DER.
fn intermediates(
    token: &Token,
    leaf: &Certificate,
    configured: &[std::path::PathBuf],
) -> Result<Vec<Vec<u8>>, Failure> {
    let mut pool: Vec<(Vec<u8>, Certificate)> = token
        .certificates()?
        .into_iter()
        .filter(|c| !c.anchor)
        .filter_map(|c| Some((c.der.clone(), (*c.parsed?).clone())))
        .collect();
    for f in configured {
        for der in cert::load_file(f)? {
            let parsed = cert::parse(&der)?;
            pool.push((der, parsed));
        }
    }
    pool.retain(|(_, c)| cert::is_ca(c));
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut cur: &Certificate = leaf;
    while let Some((der, next)) = pool.iter().find(|(_, c)| {
        c.tbs_certificate.subject == cur.tbs_certificate.issuer && c.tbs_certificate.subject != c.tbs_certificate.issuer
    }) {
        if out.contains(der) || out.len() > 8 {
            break;
        }
        out.push(der.clone());
        cur = next;
    }
    Ok(out)
}
