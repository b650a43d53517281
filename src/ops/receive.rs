//! `ssmax-card receive`: verify the receiving organisation's signature against the organisation
//! certificate on the token, show what the organisations recorded, decrypt each attachment on
//! the card.

use super::ctx::Ctx;
use crate::cms::verify::{verify, SignerReport, Trust};
use crate::cms::{cert, decrypt, unarmor, CmsError};
use crate::error::{Exit, Failure};
use crate::mail::smime::{classify, rejoin, Incoming};
use crate::mail::Entity;
use crate::ssmax::binding::{self, Origin};
use crate::ssmax::mail::{build_opened, parse, Attachment, Parts};
use crate::ssmax::{display_name, token_trust, ChainInfo, TokenTrust};
use crate::token::decrypt::TokenDecryptor;
use std::time::SystemTime;

/// A mail whose organisation signature checked out.
pub struct Received<'a> {
    pub outer: Entity<'a>,
    pub parts: Parts,
    pub signer: SignerReport,
    pub chain: ChainInfo,
    pub from: String,
}

/// Fail-closed: the signature must be by an organisation certificate stored on the token, and
/// the From address must be the original sender the organisations recorded.
pub fn verify_from_org<'a>(
    raw: &'a [u8],
    trust: &TokenTrust,
    config: &crate::config::Config,
) -> Result<Received<'a>, Failure> {
    let Incoming::Detached { outer, signed, signature } = classify(raw)? else {
        return Err(Failure::new(Exit::Usage, crate::tr!("receive-not-ssmax")));
    };
    if trust.orgs.is_empty() {
        return Err(CmsError::Verify(crate::tr!("receive-no-org-certificate")).into());
    }
    // Organisation certificates on the token are trusted as themselves; anchors as issuers.
    let t = Trust {
        anchors: trust.anchors.iter().chain(&trust.orgs).cloned().collect(),
        intermediates: trust.others.clone(),
        ..Default::default()
    };
    let verified = verify(&unarmor(&signature)?, Some(&signed), &t, SystemTime::now())?;
    let [signer] = <[SignerReport; 1]>::try_from(verified.signers)
        .map_err(|s| Failure::from(CmsError::Verify(crate::tr!("receive-signature-count", found = s.len()))))?;
    if !trust.orgs.contains(&signer.cert_der) {
        return Err(CmsError::Verify(crate::tr!("receive-not-your-org", subject = signer.subject)).into());
    }
    // Trusted as itself on the token, so path validation did not look: a revoked organisation
    // (accreditation lost) is refused here.
    let mut with_lists = trust.clone();
    // Stricter than a plain verify: when the organisation's certificate says where its status is
    // published (a distribution point, a responder), a status that cannot be had refuses the
    // mail, unless the config chose a policy itself.
    let published = cert::parse(&signer.cert_der).is_ok_and(|c| {
        !crate::crl_store::distribution_points(&c).is_empty() || !crate::cms::ocsp::responders(&c).is_empty()
    });
    if config.revocation.is_none() && published {
        with_lists.revocation = crate::cms::revocation::Policy::Require;
    }
    let whose = crate::tr!("receive-your-org", subject = signer.subject);
    let path = match with_lists.path_for(&signer.cert_der) {
        Ok(p) => Some(p),
        Err(_) if with_lists.revocation == crate::cms::revocation::Policy::Off => None,
        // Its status is published by its issuer: without a path to an anchor there is no issuer
        // whose word counts.
        Err(e) => {
            let c = cert::parse(&signer.cert_der)?;
            let why = crate::cms::verify::chain_error(&whose, &c, &crate::tr!("verify-when-now"), e);
            return Err(CmsError::Verify(why).into());
        }
    };
    let missing = path.as_ref().map(|p| with_lists.add_lists_for(p, config)).unwrap_or_default();
    path.as_ref().map(|p| with_lists.check_revocation(p, &whose)).transpose().map_err(|e| {
        match e {
            // What could not be fetched is the reason the status is unknown: said with it.
            CmsError::Verify(m) if !missing.is_empty() => CmsError::Verify(format!("{m} ({})", missing.join("; "))),
            e => e,
        }
    })?;
    let chain = ChainInfo::from_signer(&signer)?;
    let from = outer.from_address().map_err(|e| {
        Failure::from(CmsError::Verify(match e {
            crate::mail::FromError::Missing => crate::tr!("receive-no-from"),
            e => e.to_string(),
        }))
    })?;
    let Some((orig, _)) = &chain.originator else {
        return Err(CmsError::Verify(crate::tr!("receive-no-originator")).into());
    };
    if !cert::emails(orig).contains(&from) {
        let verified = cert::emails(orig).join(", ");
        return Err(CmsError::Verify(crate::tr!(
            "receive-from-not-originator",
            from = from,
            verified = crate::l10n::escaped(&verified)
        ))
        .into());
    }
    crate::mail::sender_inside(&signed, &from).map_err(|e| Failure::from(CmsError::Verify(e.to_string())))?;
    // What an SSMAX recipient sees as the sender is what the organisations vouched for: a display
    // name showing another address is refused here, not only said.
    if let Some(claim) = outer.from_name_claims() {
        let why = crate::tr!("from-name-claims", claim = crate::l10n::escaped(&claim), from = from);
        return Err(CmsError::Verify(why).into());
    }
    let parts = parse(&signed)?;
    Ok(Received { outer, parts, signer, chain, from })
}

/// The receive path on an already-read mail (`decrypt` uses it for SSMAX mail too).
pub fn receive(ctx: &mut dyn Ctx, raw: &[u8]) -> Result<(), Failure> {
    let mime = open_mail(ctx, raw)?;
    ctx.output(mime)
}

/// The envelopes of an SSMAX mail's protected attachments, read without verifying anything (what
/// does not parse is left out: the verification that follows says why).
fn attachment_envelopes(raw: &[u8]) -> Vec<decrypt::Envelope> {
    let Ok(Incoming::Detached { signed, .. }) = classify(raw) else { return Vec::new() };
    let Ok(parts) = parse(&signed) else { return Vec::new() };
    parts
        .protected
        .iter()
        .filter_map(|a| {
            decrypt::without_content(&a.cms).and_then(|(outline, _)| decrypt::Envelope::parse(&outline).ok())
        })
        .collect()
}

/// One protected attachment, which must be what the profile allows (AES-GCM, bound to its
/// sender, label and name), opened.
fn open_protected(
    a: &crate::ssmax::mail::Protected,
    sender: &x509_cert::Certificate,
    keys: &mut dyn decrypt::Decryptor,
) -> Result<(decrypt::Opened, Origin), CmsError> {
    let env = decrypt::Envelope::parse(&a.cms)?;
    crate::ssmax::check_protected(&env, &a.label)?;
    // Before the card is asked: an attachment bound to nobody is not worth a PIN try.
    binding::read(&env, &a.label)?;
    let (cek, key_transport, recipient) = env.cek_for_reading(keys)?;
    let content_alg = env.content_alg()?;
    let head = env.without_ciphertext();
    // The content opens first: a key that did not unwrap fails there, as every other failure
    // to decrypt does (cek_for_reading), never as a binding that does not check.
    let content = env.into_plaintext(&cek)?;
    let origin = binding::check(&head, &a.label, &a.filename, sender, &cek)?;
    binding::check_entity_name(&content, &a.label, &a.filename)?;
    Ok((decrypt::Opened { content, content_alg, key_transport, recipient }, origin))
}

/// An SSMAX mail verified against the organisation certificate on the token, each attachment
/// decrypted on the card.
pub struct OpenedMail<'a> {
    pub rec: Received<'a>,
    /// Each attachment as decrypted, its entity as the sender attached it.
    pub opened: Vec<(Attachment, Origin)>,
    /// The organisation certificate on the token that the mail is signed with, for the reader.
    pub org: String,
    /// What `receive` tells the user, line by line.
    pub notes: Vec<String>,
}

/// Verify, report the chain, decrypt every attachment on the card: the readable mail out.
pub fn open_mail(ctx: &mut dyn Ctx, raw: &[u8]) -> Result<Vec<u8>, Failure> {
    let o = open(ctx, raw)?;
    let opened: Vec<Attachment> = o.opened.into_iter().map(|(a, _)| a).collect();
    let inner = build_opened(&o.rec.parts.body, &opened, &format!("{}; decrypted on your token", o.org));
    let mime = rejoin(&o.rec.outer, &inner);
    for n in o.notes {
        ctx.note(n);
    }
    Ok(mime)
}

/// Verify an SSMAX mail and decrypt its attachments on the card (the token chosen among several
/// by whom the attachments are for).
pub fn open<'a>(ctx: &mut dyn Ctx, raw: &'a [u8]) -> Result<OpenedMail<'a>, Failure> {
    let mut notes = Vec::new();
    // Unverified, only to choose among several tokens: whom the protected attachments are for.
    // Read only when there is a choice to make (several tokens), and without the ciphertexts.
    let for_whom = std::cell::OnceCell::new();
    ctx.choose_token(&crate::tr!("receive-wanted-key"), &|t| {
        if !t.profile.keys.can_decrypt {
            return Ok(false);
        }
        let for_whom = for_whom.get_or_init(|| attachment_envelopes(raw));
        if for_whom.is_empty() {
            return Ok(true);
        }
        let certs = t.holder_certificates();
        Ok(for_whom.iter().any(|e| e.addressed_to(&certs)))
    })?;
    let opened = {
        let p = ctx.token()?;
        let trust = token_trust(p.token, &p.s.config)?;
        let rec = verify_from_org(raw, &trust, &p.s.config)?;
        notes.push(crate::tr!("receive-verified", subject = rec.signer.subject));
        notes.extend(rec.chain.lines().into_iter().map(|l| format!("  {l}")));
        let mut opened = Vec::new();
        if !rec.parts.protected.is_empty() {
            let mut dec = TokenDecryptor::new(
                p.token,
                p.prompt,
                p.allow_final_pin_try,
                &crate::tr!("receive-operation", from = rec.from),
            )?;
            let Some((sender, _)) = &rec.chain.originator else {
                return Err(CmsError::Verify(crate::tr!("receive-no-originator")).into());
            };
            for a in &rec.parts.protected {
                let (o, origin) = open_protected(a, sender, &mut dec).map_err(|e| with_label(e, &a.label))?;
                notes.push(crate::tr!(
                    "receive-opened",
                    label = crate::l10n::escaped(&a.label),
                    recipient = o.recipient,
                    transport = o.key_transport.to_string(),
                    algorithm = o.content_alg.name()
                ));
                if origin == Origin::Forwarded {
                    notes.push(format!("  {}", crate::tr!("receive-forwarded-attachment")));
                }
                let a = Attachment { filename: a.filename.clone(), label: a.label.clone(), entity: o.content };
                opened.push((a, origin));
            }
        }
        let org = trust.orgs.first().and_then(|d| cert::parse(d).ok()).map(|c| display_name(&c)).unwrap_or_default();
        OpenedMail { rec, opened, org, notes }
    };
    ctx.done_with_token();
    Ok(opened)
}

/// A failure about one attachment, named by its label (the sender's text, escaped).
pub(super) fn with_label(e: CmsError, label: &str) -> Failure {
    let mut f = Failure::from(e);
    f.message = crate::tr!("attachment-failed", label = crate::l10n::escaped(label), error = f.message);
    f
}
