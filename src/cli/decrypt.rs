//! `ssmax-card decrypt`: the content key is recovered on the token; the mail is decrypted here.

use super::ctx::Ctx;
use crate::cms::{decrypt, unarmor};
use crate::error::{Exit, Failure};
use crate::mail::smime::{classify, rejoin, Incoming};
use crate::token::decrypt::TokenDecryptor;

pub fn run(ctx: &mut dyn Ctx) -> Result<(), Failure> {
    let raw = ctx.input()?;
    let (outer, der) = match classify(&raw)? {
        Incoming::Opaque { outer, cms, smime_type } => {
            if smime_type.contains("signed") {
                return Err(Failure::new(Exit::Usage, "this mail is signed, not encrypted: use 'ssmax-card verify'"));
            }
            (Some(outer), unarmor(&cms)?)
        }
        Incoming::Bare(der) => (None, unarmor(&der)?),
        Incoming::Detached { signed, .. } => {
            // SSMAX mail is signed by the organisation with encrypted attachments inside: receive it.
            if crate::ssmax::mail::parse(&signed).is_ok_and(|p| !p.protected.is_empty()) {
                return super::receive::receive(ctx, &raw);
            }
            return Err(Failure::new(Exit::Usage, "this mail is signed, not encrypted: use 'ssmax-card verify'"));
        }
    };
    let operation = match outer.as_ref().and_then(|o| o.from_address()) {
        Some(from) => format!("decrypt mail from {from}"),
        None => "decrypt a message".to_string(),
    };
    let (opened, token_label) = {
        let p = ctx.token()?;
        let label = p.token.label.clone();
        let mut dec = TokenDecryptor::new(p.token, p.prompt, p.g.allow_final_pin_try, &operation)?;
        (decrypt::open(&der, &mut dec)?, label)
    };
    let out = match &outer {
        Some(o) => rejoin(o, &opened.content),
        None => opened.content,
    };
    ctx.output(out)?;
    ctx.note(format!(
        "decrypted on token '{token_label}' with the key of '{}' ({}, {})",
        opened.recipient,
        opened.key_transport,
        opened.content_alg.name()
    ));
    Ok(())
}
