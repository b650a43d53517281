//! `ssmax-card decrypt`: the content key is recovered on the token; the mail is decrypted here.

use super::ctx::Ctx;
use crate::cms::{decrypt, unarmor};
use crate::error::{Exit, Failure};
use crate::mail::smime::{classify, rejoin_head, take_opaque, Incoming};
use crate::token::decrypt::TokenDecryptor;

pub fn run(ctx: &mut dyn Ctx) -> Result<(), Failure> {
    let raw = ctx.input()?;
    // An encrypted mail is decoded where it lies: mail, CMS and ciphertext share one buffer.
    let (outer, der, from): (Option<Vec<crate::mail::Field>>, Vec<u8>, Option<String>) = match take_opaque(raw)? {
        Ok(mail) => {
            if mail.smime_type.contains("signed") {
                return Err(signed_not_encrypted());
            }
            let der = match unarmor(&mail.cms)? {
                std::borrow::Cow::Borrowed(_) => mail.cms,
                std::borrow::Cow::Owned(v) => v,
            };
            (Some(mail.fields), der, mail.from)
        }
        Err(raw) => match classify(&raw)? {
            Incoming::Bare(der) => (None, unarmor(&der)?.into_owned(), None),
            Incoming::Detached { signed, .. } => {
                // SSMAX mail is signed by the organisation with encrypted attachments inside: receive it.
                if crate::ssmax::mail::parse(&signed).is_ok_and(|p| !p.protected.is_empty()) {
                    return super::receive::receive(ctx, &raw);
                }
                return Err(signed_not_encrypted());
            }
            Incoming::Opaque { .. } => {
                return Err(Failure::new(Exit::Usage, "internal: an S/MIME mail was not taken apart"))
            }
        },
    };
    let (head, content) = open(ctx, outer, der, from)?;
    match head {
        Some(head) => ctx.output_pieces(&[&head, &content]),
        None => ctx.output(content),
    }
}

/// An enveloped mail (any other mail: None) decrypted on the token: its header fields and
/// content, one mail again.
pub fn open_mail(ctx: &mut dyn Ctx, raw: Vec<u8>) -> Result<Option<Vec<u8>>, Failure> {
    let Ok(mail) = take_opaque(raw)? else { return Ok(None) };
    if mail.smime_type.contains("signed") {
        return Ok(None);
    }
    let der = match unarmor(&mail.cms)? {
        std::borrow::Cow::Borrowed(_) => mail.cms,
        std::borrow::Cow::Owned(v) => v,
    };
    let (head, content) = open(ctx, Some(mail.fields), der, mail.from)?;
    Ok(Some([head.unwrap_or_default(), content].concat()))
}

/// The content of the CMS `der` opened with the content key the token recovers, and the mail's
/// header fields (`outer`) to go before it (the content then with CRLF line ends).
fn open(
    ctx: &mut dyn Ctx,
    outer: Option<Vec<crate::mail::Field>>,
    der: Vec<u8>,
    from: Option<String>,
) -> Result<(Option<Vec<u8>>, Vec<u8>), Failure> {
    let env = decrypt::Envelope::parse_owned(der)?;
    let operation = match &from {
        Some(from) => crate::tr!("decrypt-operation-from", from = from),
        None => crate::tr!("decrypt-operation"),
    };
    ctx.choose_token(&crate::tr!("decrypt-wanted-key"), &|t| {
        Ok(t.profile.keys.can_decrypt && env.addressed_to(&t.holder_certificates()))
    })?;
    let (cek, transport, recipient, token_label) = {
        let p = ctx.token()?;
        let label = p.token.label.clone();
        let mut dec = TokenDecryptor::new(p.token, p.prompt, p.allow_final_pin_try, &operation)?;
        let (cek, transport, recipient) = env.cek_for_reading(&mut dec)?;
        (cek, transport, recipient, label)
    };
    // The content key is all the token gives; the bulk decryption needs it no more.
    ctx.done_with_token();
    let alg = env.content_alg()?;
    let content = env.into_plaintext(&cek)?;
    drop(cek);
    let opened = match &outer {
        Some(fields) => {
            let head = rejoin_head(fields, &content);
            if crate::mail::is_crlf(&content) {
                (Some(head), content)
            } else {
                (Some(head), crate::mail::to_crlf(&content))
            }
        }
        None => (None, content),
    };
    ctx.note(crate::tr!(
        "decrypt-done",
        token = token_label,
        recipient = recipient,
        transport = transport.to_string(),
        algorithm = alg.name()
    ));
    Ok(opened)
}

fn signed_not_encrypted() -> Failure {
    Failure::new(Exit::Usage, crate::tr!("decrypt-is-signed"))
}
