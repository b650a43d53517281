//! What the IMAP door shows a mail client for one mail (issue 28, docs/mail-clients.md): a mail
//! that is not SSMAX exactly as it is; an SSMAX mail as a plain multipart/mixed *view* — the
//! mail's own header fields less any that claim the door's verdict, the door's
//! `Authentication-Results`, a first text part saying who vouched for the mail, the mail's text
//! parts, each protected attachment decrypted on the card as the sender attached it. Never
//! multipart/signed: the content changed, and the verdict is the door's, made against the
//! certificate on the card. A mail that fails gets no attachment decrypted and says why. Any mail
//! loses the header fields that claim the door's verdict.
//! The same mail and verdict give the same bytes (the boundary comes from the mail): a view
//! rebuilt after eviction is the one the client has.

use super::ctx::Ctx;
use super::receive::{open, OpenedMail};
use crate::error::{Exit, Failure};
use crate::mail::auth_results::{self, Smime};
use crate::mail::smime::{classify, split_fields, Incoming};
use crate::mail::{quoted_printable, Entity, Field};
use crate::ssmax::binding::Origin;
use sha2::Digest;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not an SSMAX mail: served as it is.
    Untouched,
    /// Verified against the organisation certificate on the card, every attachment opened.
    Pass { sender: String },
    /// Signed as SSMAX mail, but it does not verify (or an attachment does not open): why.
    Fail { why: String },
}

pub struct View {
    pub mail: Vec<u8>,
    pub verdict: Verdict,
}

/// Whether `raw` is an SSMAX mail: multipart/signed whose signature an organisation made (it
/// records the original sender) or whose content carries SSMAX parts. Read without verifying
/// anything: it decides only which way the mail is judged, never that it passes.
pub fn is_ssmax(raw: &[u8]) -> bool {
    let Ok(Incoming::Detached { signed, signature, .. }) = classify(raw) else { return false };
    let by_organisation =
        crate::cms::unarmor(&signature).ok().and_then(|der| crate::cms::signed::parse(&der).ok()).is_some_and(|sd| {
            sd.signer_infos.iter().any(|si| {
                si.signed_attrs.as_ref().is_some_and(|a| a.iter().any(|a| a.is(&crate::ssmax::oid_originator())))
            })
        });
    by_organisation
        || crate::ssmax::mail::parse(&signed).is_ok_and(|p| !p.protected.is_empty())
        || Entity::parse(&signed).is_ok_and(|e| e.content_type().mime == "multipart/mixed" && has_ssmax_part(&signed))
}

fn has_ssmax_part(signed: &[u8]) -> bool {
    memchr::memmem::find(signed, crate::ssmax::mail::PART_HEADER.as_bytes()).is_some()
        || memchr::memmem::find(signed, crate::ssmax::mail::LABEL_HEADER.as_bytes()).is_some()
}

/// The view of `raw`. A failure that is about the mail (it does not verify, an attachment does
/// not open) is the view's verdict; one that is about the card (absent, PIN declined) is the
/// caller's to show, and the mail is tried again later.
pub fn view(ctx: &mut dyn Ctx, raw: &[u8], authserv_id: &str) -> Result<View, Failure> {
    if !is_ssmax(raw) {
        if is_smime(raw) {
            return smime_view(ctx, raw, authserv_id);
        }
        return Ok(View { mail: untouched(raw, authserv_id), verdict: Verdict::Untouched });
    }
    // One of each (RFC 5322 §3.6): two Subjects or two Reply-Tos show one thing and do another.
    // Judged before the card is asked: such a mail costs no PIN.
    if let Ok(Incoming::Detached { outer, .. }) = classify(raw) {
        if let Some(name) = twice_given(&outer) {
            return Ok(failed(raw, &crate::tr!("view-field-twice", field = name), authserv_id));
        }
    }
    match open(ctx, raw) {
        Ok(o) => Ok(passed(raw, &o, authserv_id)),
        // About the mail: it does not verify, is malformed, or is not for a key on this card.
        Err(f) if matches!(f.exit, Exit::VerificationFailed | Exit::Usage | Exit::NoKey) => {
            Ok(failed(raw, &f.message, authserv_id))
        }
        Err(f) => Err(f),
    }
}

/// Whether `raw` is S/MIME at its top (multipart/signed, or application/pkcs7-mime signed or
/// enveloped): its view needs the card (its anchors, its key).
pub fn is_smime(raw: &[u8]) -> bool {
    matches!(classify(raw), Ok(Incoming::Detached { .. } | Incoming::Opaque { .. }))
}

/// Ordinary S/MIME (RFC 8551), as the door shows it: a mail enveloped to a key on the card
/// decrypted on it; a signed one (or what the decrypted one holds) with the door's verdict in
/// `Authentication-Results`, judged as `verify` judges (the card's anchors, the chain, usage,
/// revocation, From against the certificate), and otherwise as it is. A mail for someone
/// else's key, or one that does not decrypt, is shown as it is.
fn smime_view(ctx: &mut dyn Ctx, raw: &[u8], authserv_id: &str) -> Result<View, Failure> {
    // The card decides (its anchors, its key) and a view is made once: without it, the mail
    // waits (exit 3), rather than be judged without the anchors.
    ctx.token_certificates()?;
    let cleaned = untouched(raw, authserv_id);
    let shown = match super::decrypt::open_mail(ctx, cleaned.clone()) {
        // What was inside may name our verdict among its fields too: they are the mail's now.
        Ok(Some(opened)) => untouched(&opened, authserv_id),
        Ok(None) => cleaned,
        Err(f) if matches!(f.exit, Exit::NoKey | Exit::Usage | Exit::VerificationFailed) => {
            return Ok(View { mail: cleaned, verdict: Verdict::Untouched })
        }
        Err(f) => return Err(f),
    };
    if !matches!(classify(&shown), Ok(Incoming::Detached { .. } | Incoming::Opaque { .. })) {
        return Ok(View { mail: shown, verdict: Verdict::Untouched });
    }
    let args = super::verify::VerifyArgs::default();
    let (smime, identifier, verdict) = match super::verify::check(ctx, &shown, &args) {
        Ok(c) => {
            let sender = c.from.unwrap_or_default();
            (Smime::Pass, Some(sender.clone()), Verdict::Pass { sender })
        }
        Err(f) if matches!(f.exit, Exit::VerificationFailed | Exit::Usage | Exit::NoKey) => {
            let from = Entity::parse(&shown).ok().and_then(|e| e.from_address().ok());
            (Smime::Fail, from, Verdict::Fail { why: f.message })
        }
        Err(f) => return Err(f),
    };
    let mut mail = auth_results::field(authserv_id, &smime, identifier.as_deref()).raw;
    mail.extend_from_slice(&shown);
    Ok(View { mail, verdict })
}

/// A mail that is not SSMAX as the door shows it: as it is, but for a verdict it claims in the
/// door's name (RFC 8601 §5), hidden or not behind a bare CR. Needs no card: the door makes it
/// itself.
pub fn untouched(raw: &[u8], authserv_id: &str) -> Vec<u8> {
    untouched_owned(raw.to_vec(), authserv_id)
}

/// `untouched`, taking the mail: one that has nothing to take out is its own view, not a copy
/// (the IMAP door makes a view of each plain mail it serves, most of them as they are).
pub fn untouched_owned(raw: Vec<u8>, authserv_id: &str) -> Vec<u8> {
    let cleaned = auth_results::header_without_bare_cr(&raw);
    let base = cleaned.as_deref().unwrap_or(&raw);
    match auth_results::strip_ours(base, authserv_id) {
        Some(stripped) => stripped,
        None => cleaned.unwrap_or(raw),
    }
}

/// The first field of those a mail may have once (RFC 5322 §3.6) that it has twice.
fn twice_given(outer: &Entity<'_>) -> Option<&'static str> {
    const ONCE: [&str; 10] =
        ["Date", "From", "Sender", "Reply-To", "To", "Cc", "Subject", "Message-ID", "In-Reply-To", "References"];
    ONCE.into_iter().find(|name| outer.fields.iter().filter(|f| f.is(name)).count() > 1)
}

fn passed(raw: &[u8], o: &OpenedMail<'_>, authserv_id: &str) -> View {
    let mut text = crate::tr!("view-verified", org = o.org.as_str());
    text.push('\n');
    // The signature covers the content, not the header: where replies would go, or who says
    // they sent it, if not the verified sender, is said first.
    for field in ["Reply-To", "Sender"] {
        let Some(f) = o.rec.outer.field(field) else { continue };
        let value = crate::mail::field_value(f);
        if !value.to_ascii_lowercase().contains(&o.rec.from) || value.matches('@').count() != 1 {
            text.push_str(&crate::tr!("view-header-other", field = field, value = crate::l10n::escaped(&value)));
            text.push('\n');
        }
    }
    for l in o.rec.chain.lines() {
        text.push_str(&format!("  {l}\n"));
    }
    if !o.opened.is_empty() {
        text.push('\n');
        text.push_str(&crate::tr!("view-attachments"));
        text.push('\n');
        let e = crate::l10n::escaped;
        for (i, (a, origin)) in o.opened.iter().enumerate() {
            text.push_str(&format!("  [{}] {} — {}\n", i + 1, e(&a.label), e(&a.filename)));
            if *origin == Origin::Forwarded {
                text.push_str(&format!("      {}\n", crate::tr!("receive-forwarded-attachment")));
            }
        }
    }
    let mut parts = vec![text_part(&text)];
    parts.extend(o.rec.parts.body.iter().cloned());
    parts.extend(o.opened.iter().map(|(a, _)| a.entity.clone()));
    let verdict = Verdict::Pass { sender: o.rec.from.clone() };
    View { mail: assemble(raw, &o.rec.outer.fields, &verdict, authserv_id, parts), verdict }
}

fn failed(raw: &[u8], why: &str, authserv_id: &str) -> View {
    let verdict = Verdict::Fail { why: why.to_string() };
    let text = crate::tr!("view-failed", why = crate::l10n::escaped(why));
    let mut parts = vec![text_part(&format!("{text}\n"))];
    let mut fields = Vec::new();
    if let Ok(Incoming::Detached { outer, signed, .. }) = classify(raw) {
        // A lone CR inside a field could hide another field for some readers: made a space.
        fields = outer
            .fields
            .iter()
            .map(|f| {
                let mut f = f.clone();
                let n = f.raw.len();
                for i in 0..n {
                    if f.raw[i] == b'\r' && f.raw.get(i + 1) != Some(&b'\n') {
                        f.raw[i] = b' ';
                    }
                }
                f
            })
            .collect();
        // The text the mail carries, for what it is worth: its protected parts stay closed.
        if let Ok(p) = crate::ssmax::mail::parse(&signed) {
            parts.extend(p.body);
        }
    }
    View { mail: assemble(raw, &fields, &verdict, authserv_id, parts), verdict }
}

fn text_part(text: &str) -> Vec<u8> {
    let mut out =
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".to_vec();
    out.extend_from_slice(&quoted_printable(text.as_bytes()));
    out
}

/// The view's header — the mail's own fields but its content fields and any verdict claimed
/// under our authserv-id, our verdict first (RFC 8601 §5) — and a multipart/mixed of `parts`
/// under a boundary taken from the mail's digest and found in no part.
fn assemble(raw: &[u8], fields: &[Field], verdict: &Verdict, authserv_id: &str, parts: Vec<Vec<u8>>) -> Vec<u8> {
    let (outer, _) = split_fields(fields);
    let (smime, sender) = match verdict {
        Verdict::Pass { sender } => (Smime::Pass, Some(sender.as_str())),
        _ => (Smime::Fail, None),
    };
    let from = Entity::parse(raw).ok().and_then(|e| e.from_address().ok());
    let identifier = sender.map(str::to_string).or(from);
    let mut out = auth_results::field(authserv_id, &smime, identifier.as_deref()).raw;
    for f in outer.iter().filter(|f| !auth_results::is_ours(f, authserv_id)) {
        out.extend_from_slice(&f.raw);
    }
    let digest = sha2::Sha256::digest(raw);
    let mut boundary = format!("=_ssmax-view-{}", base16ct::lower::encode_string(&digest[..12]));
    let mut n = 0;
    while parts.iter().any(|p| memchr::memmem::find(p, boundary.as_bytes()).is_some()) {
        n += 1;
        boundary = format!("=_ssmax-view-{}-{n}", base16ct::lower::encode_string(&digest[..12]));
    }
    out.extend_from_slice(
        format!("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n").as_bytes(),
    );
    // The line end before each delimiter belongs to the delimiter (RFC 2046 §5.1.1): every
    // part's bytes stay exactly as they are.
    for p in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        out.extend_from_slice(&p);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}
