//! `ssmax-card send`: each protected attachment encrypted on its own to the sending
//! organisation, labels in clear, the whole mail signed on the card.

use super::ctx::Ctx;
use super::sign::sign_built_on_token;
use crate::cms::encrypt;
use crate::error::{Exit, Failure};
use crate::mail::smime::{signed_parts, split_fields};
use crate::mail::{Entity, Field};
use crate::ssmax::binding;
use crate::ssmax::mail::{as_field_reads, parse_draft, Attachment, Protected, FILENAME_HEADER, LABEL_HEADER};
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
    let attachments = std::mem::take(&mut parts.attachments);
    let count = attachments.len();
    let (done, summary, inner) = {
        let mut p = ctx.token()?;
        let trust = token_trust(p.token, &p.s.config)?;
        let org = org_certificate(&trust, &p.s.config)?;
        let org_name = display_name(&org);
        let mut attachments = Some(attachments);
        // Each attachment is bound to the certificate that signs (its sender), so it is
        // encrypted once that certificate is chosen; each in its own buffer, so no plaintext
        // copy outlives the loop.
        let mut build = |signer: &x509_cert::Certificate| -> Result<Vec<u8>, Failure> {
            let mut protected = Vec::new();
            for a in attachments.take().unwrap_or_default() {
                // As the hops and the reader will read the fields back.
                let label = as_field_reads(LABEL_HEADER, &a.label).unwrap_or_else(|| a.filename.clone());
                let filename = as_field_reads(FILENAME_HEADER, &a.filename).unwrap_or_default();
                let attrs = binding::auth_attrs(signer, &label, &filename)?;
                // Only the organisation can open it: never the recipient's key (the sender manages none).
                let cms = encrypt::encrypt_with(a.entity, std::slice::from_ref(&org), Some(attrs))?;
                protected.push(Protected { filename, label, cms });
            }
            Ok(crate::ssmax::mail::build(&parts.body, protected, &org_name))
        };
        let (done, inner) =
            sign_built_on_token(&mut p, &from, &to, &mut build, pss, super::sign::Binding::Organisation)?;
        let summary = done.summary(&from, p.token);
        (done, crate::tr!("send-done", count = count, org = org_name, summary = summary), inner)
    };
    ctx.done_with_token();
    let [head, tail] = signed_parts(&outer, &[&inner], &done.der, done.scheme.hash().micalg());
    ctx.output_pieces(&[&head, &inner, &tail])?;
    for w in &done.warnings {
        ctx.note(crate::tr!("warning", text = w));
    }
    ctx.note(summary);
    Ok(())
}
