//! `ssmax-card send`: each protected attachment encrypted on its own to the sending
//! organisation, labels in clear, the whole mail signed on the card.

use super::common::read_file;
use super::ctx::{CliCtx, Ctx};
use super::sign::sign_on_token;
use super::{Global, InOut};
use crate::cms::encrypt;
use crate::error::{Exit, Failure};
use crate::mail::smime::{signed_parts, split_fields};
use crate::mail::{Entity, Field};
use crate::ssmax::mail::{file_attachment, parse_draft, Attachment, Protected};
use crate::ssmax::{display_name, org_certificate, token_trust};
use std::path::PathBuf;

pub fn run_cli(g: &Global, io: &InOut, attach: &[PathBuf], labels: &[String], pss: bool) -> Result<(), Failure> {
    if attach.len() != labels.len() {
        return Err(Failure::new(
            Exit::Usage,
            format!("give one --label for each --attach ({} files, {} labels)", attach.len(), labels.len()),
        ));
    }
    let mut extra = Vec::new();
    for (path, label) in attach.iter().zip(labels) {
        extra.push(file_attachment(path, label, &read_file(path, crate::files::MAX_MAIL)?));
    }
    run(&mut CliCtx::new(g, io)?, extra, pss)
}

pub fn run(ctx: &mut dyn Ctx, extra: Vec<Attachment>, pss: bool) -> Result<(), Failure> {
    let raw = ctx.input()?;
    let mail = Entity::parse(&raw)?;
    let from = mail.from_address().ok_or_else(|| Failure::new(Exit::Usage, "the draft has no From address"))?;
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
    let (inner, done, summary, org_name, count) = {
        let mut p = ctx.token()?;
        let trust = token_trust(p.token, &p.s.config)?;
        let org = org_certificate(&trust, &p.s.config)?;
        let org_name = display_name(&org);
        let mut protected = Vec::new();
        // Each attachment is encrypted in its own buffer: no plaintext copy outlives the loop.
        for a in std::mem::take(&mut parts.attachments) {
            // Only the organisation can open it: never the recipient's key (the sender manages none).
            let cms = encrypt::encrypt(a.entity, std::slice::from_ref(&org))?;
            protected.push(Protected { filename: a.filename, label: a.label, cms });
        }
        let count = protected.len();
        let inner = crate::ssmax::mail::build(&parts.body, protected, &org_name);
        let done = sign_on_token(&mut p, &from, &to, &[&inner], None, pss)?;
        let summary = done.summary(&from, p.token);
        (inner, done, summary, org_name, count)
    };
    ctx.done_with_token();
    let [head, tail] = signed_parts(&outer, &[&inner], &done.der, done.scheme.hash().micalg());
    ctx.output_pieces(&[&head, &inner, &tail])?;
    for w in &done.warnings {
        ctx.note(format!("warning: {w}"));
    }
    ctx.note(format!("{count} attachment(s) encrypted for '{org_name}'; {summary}"));
    Ok(())
}
