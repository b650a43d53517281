//! `ssmax-card decrypt`: the content key is recovered on the token; the mail is decrypted here.

use super::ctx::Ctx;
use crate::cms::{decrypt, unarmor};
use crate::error::{Exit, Failure};
use crate::mail::smime::{classify, rejoin_head, Incoming};
use crate::token::decrypt::TokenDecryptor;

pub fn run(ctx: &mut dyn Ctx) -> Result<(), Failure> {
    let raw = ctx.input()?;
    let (outer, der, from): (Option<Vec<crate::mail::Field>>, Vec<u8>, Option<String>) = match classify(&raw)? {
        Incoming::Opaque { outer, cms, smime_type } => {
            if smime_type.contains("signed") {
                return Err(Failure::new(Exit::Usage, "this mail is signed, not encrypted: use 'ssmax-card verify'"));
            }
            let der = match unarmor(&cms)? {
                std::borrow::Cow::Borrowed(_) => cms,
                std::borrow::Cow::Owned(v) => v,
            };
            (Some(outer.fields.clone()), der, outer.from_address())
        }
        Incoming::Bare(der) => (None, unarmor(&der)?.into_owned(), None),
        Incoming::Detached { signed, .. } => {
            // SSMAX mail is signed by the organisation with encrypted attachments inside: receive it.
            if crate::ssmax::mail::parse(&signed).is_ok_and(|p| !p.protected.is_empty()) {
                return super::receive::receive(ctx, &raw);
            }
            return Err(Failure::new(Exit::Usage, "this mail is signed, not encrypted: use 'ssmax-card verify'"));
        }
    };
    // From here only the envelope is needed: let the mail and its DER go (bounded memory).
    drop(raw);
    let env = decrypt::Envelope::parse(&der)?;
    drop(der);
    let operation = match &from {
        Some(from) => format!("decrypt mail from {from}"),
        None => "decrypt a message".to_string(),
    };
    let (cek, transport, recipient, token_label) = {
        let p = ctx.token()?;
        let label = p.token.label.clone();
        let mut dec = TokenDecryptor::new(p.token, p.prompt, p.g.allow_final_pin_try, &operation)?;
        let (cek, transport, recipient) = env.recover_cek(&mut dec)?;
        (cek, transport, recipient, label)
    };
    // The content key is all the token gives; the bulk decryption needs it no more.
    ctx.done_with_token();
    let alg = env.content_alg()?;
    let content = env.into_plaintext(&cek)?;
    drop(cek);
    match &outer {
        Some(fields) => {
            let head = rejoin_head(fields);
            if crate::mail::is_crlf(&content) {
                ctx.output_pieces(&[&head, &content])?;
            } else {
                ctx.output_pieces(&[&head, &crate::mail::to_crlf(&content)])?;
            }
        }
        None => ctx.output(content)?,
    }
    ctx.note(format!("decrypted on token '{token_label}' with the key of '{recipient}' ({transport}, {})", alg.name()));
    Ok(())
}
