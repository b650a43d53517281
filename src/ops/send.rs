//! `ssmax-card send`: each protected attachment encrypted on its own to the sending
//! organisation, labels in clear, the whole mail signed on the card.

use super::ctx::Ctx;
use super::sign::sign_on_token;
use crate::cms::encrypt;
use crate::error::{Exit, Failure};
use crate::mail::smime::{signed_parts, split_fields};
use crate::mail::{Entity, Field};
use crate::ssmax::mail::{parse_draft, Attachment, Protected};
use crate::ssmax::{display_name, org_certificate, token_trust};

pub fn run(ctx: &mut dyn Ctx, extra: Vec<Attachment>, pss: bool) -> Result<(), Failure> {
    let raw = ctx.input()?;
    let mail = Entity::parse(&raw)?;
    let from = mail.from_address().map_err(|e| match e {
        crate::mail::FromError::Missing => Failure::new(Exit::Usage, crate::tr!("send-no-from")),
        e => Failure::new(Exit::Usage, crate::tr!("sign-from-refused", why = e.to_string())),
    })?;
    let (outer, mut content_fields) = split_fields(&mail.fields);
    if !content_fields.iter().any(|f| f.is("Content-Type")) {
        let charset = if mail.body.is_ascii() { "us-ascii" } else { "utf-8" };
        content_fields.insert(0, Field::new("Content-Type", &format!("text/plain; charset={charset}")));
    }
    let mut parts = parse_draft(&Entity { fields: content_fields, body: mail.body })?;
    parts.attachments.extend(extra);
    // The draft has been copied into its parts: let the original go (large attachments).
    let to = super::sign::recipients(&mail);
    drop(mail);
    drop(raw);
    super::sign::choose_signing_token(ctx, &from, super::sign::Binding::Organisation)?;
    let (org_name, org, logged_in) = {
        let p = ctx.token()?;
        let trust = token_trust(p.token, &p.s.config)?;
        let org = org_certificate(&trust, &p.s.config)?;
        (display_name(&org), org, p.token.profile.keys.certificates_need_login)
    };
    // Encryption needs only the organisation's certificate: other clients may use the token
    // meanwhile, and signing takes a new turn. A token that needed the PIN to show its
    // certificates keeps the turn, so the user is asked once.
    if !logged_in {
        ctx.done_with_token();
    }
    let mut protected = Vec::new();
    // Each attachment is encrypted in its own buffer: no plaintext copy outlives the loop.
    for a in std::mem::take(&mut parts.attachments) {
        // Only the organisation can open it: never the recipient's key (the sender manages none).
        let cms = encrypt::encrypt(a.entity, std::slice::from_ref(&org))?;
        protected.push(Protected { filename: a.filename, label: a.label, cms });
    }
    let count = protected.len();
    let inner = crate::ssmax::mail::build(&parts.body, protected, &org_name);
    let (done, summary) = {
        let mut p = ctx.token()?;
        let done = sign_on_token(&mut p, &from, &to, &[&inner], None, pss, super::sign::Binding::Organisation)?;
        let summary = done.summary(&from, p.token);
        (done, summary)
    };
    ctx.done_with_token();
    let [head, tail] = signed_parts(&outer, &[&inner], &done.der, done.scheme.hash().micalg());
    ctx.output_pieces(&[&head, &inner, &tail])?;
    for w in &done.warnings {
        ctx.note(crate::tr!("warning", text = w));
    }
    ctx.note(crate::tr!("send-done", count = count, org = org_name, summary = summary));
    Ok(())
}
