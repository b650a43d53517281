//! `ssmax-card send`: each protected attachment encrypted on its own to the sending
//! organisation, labels in clear, the whole mail signed on the card.

use super::common::{prompt, read_file, read_input, setup, write_output};
use super::sign::sign_on_token;
use super::{Global, InOut};
use crate::cms::encrypt;
use crate::error::{Exit, Failure};
use crate::mail::smime::{build_signed, split_fields};
use crate::mail::{Entity, Field};
use crate::ssmax::mail::{file_attachment, parse_draft, Protected};
use crate::ssmax::{display_name, org_certificate, token_trust};
use crate::token::Token;
use std::path::PathBuf;

pub fn run(g: &Global, io: &InOut, attach: &[PathBuf], labels: &[String], pss: bool) -> Result<(), Failure> {
    let s = setup(g)?;
    if attach.len() != labels.len() {
        return Err(Failure::new(Exit::Usage, format!("give one --label for each --attach ({} files, {} labels)", attach.len(), labels.len())));
    }
    let raw = read_input(io)?;
    let mail = Entity::parse(&raw)?;
    let from = mail.from_address().ok_or_else(|| Failure::new(Exit::Usage, "the draft has no From address"))?;
    let (outer, mut content_fields) = split_fields(&mail.fields);
    if !content_fields.iter().any(|f| f.is("Content-Type")) {
        let charset = if mail.body.is_ascii() { "us-ascii" } else { "utf-8" };
        content_fields.insert(0, Field::new("Content-Type", &format!("text/plain; charset={charset}")));
    }
    let mut parts = parse_draft(&Entity { fields: content_fields, body: mail.body })?;
    for (path, label) in attach.iter().zip(labels) {
        parts.attachments.push(file_attachment(path, label, &read_file(path)?));
    }

    let prompt = prompt(g, &s.config, Some(io))?;
    let mut token = Token::open(&s.token_uri, &s.profiles)?;
    let trust = token_trust(&token, &s.config)?;
    let org = org_certificate(&trust, &s.config)?;
    let org_name = display_name(&org);
    let mut protected = Vec::new();
    for a in &parts.attachments {
        // Only the organisation can open it: never the recipient's key (the sender manages none).
        protected.push(Protected { filename: a.filename.clone(), label: a.label.clone(), cms: encrypt::encrypt(&a.entity, std::slice::from_ref(&org))? });
    }
    let inner = crate::ssmax::mail::build(&parts.body, &protected, &org_name);
    let done = sign_on_token(g, &s, &mut token, prompt.as_ref(), &from, &inner, pss)?;
    let out = build_signed(&outer, &inner, &done.der, done.scheme.hash().micalg());
    write_output(io, &out)?;
    eprintln!("ssmax-card: {} attachment(s) encrypted for '{org_name}'; {}", protected.len(), done.summary(&from, &token));
    Ok(())
}
