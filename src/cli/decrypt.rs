//! `ssmax-card decrypt`: the content key is recovered on the token; the mail is decrypted here.

use super::common::{prompt, read_input, setup, write_output};
use super::{Global, InOut};
use crate::cms::{decrypt, unarmor};
use crate::error::{Exit, Failure};
use crate::mail::smime::{classify, rejoin, Incoming};
use crate::token::decrypt::TokenDecryptor;
use crate::token::Token;

pub fn run(g: &Global, io: &InOut) -> Result<(), Failure> {
    let s = setup(g)?;
    let raw = read_input(io)?;
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
                return super::receive::receive(g, io, &raw, None, false);
            }
            return Err(Failure::new(Exit::Usage, "this mail is signed, not encrypted: use 'ssmax-card verify'"));
        }
    };
    let operation = match outer.as_ref().and_then(|o| o.from_address()) {
        Some(from) => format!("decrypt mail from {from}"),
        None => "decrypt a message".to_string(),
    };
    let prompt = prompt(g, &s.config, Some(io))?;
    let mut token = Token::open(&s.token_uri, &s.profiles)?;
    let token_label = token.label.clone();
    let opened = {
        let mut dec = TokenDecryptor::new(&mut token, prompt.as_ref(), g.allow_final_pin_try, &operation)?;
        decrypt::open(&der, &mut dec)?
    };
    token.logout();
    let out = match &outer {
        Some(o) => rejoin(o, &opened.content),
        None => opened.content,
    };
    write_output(io, &out)?;
    eprintln!(
        "ssmax-card: decrypted on token '{token_label}' with the key of '{}' ({}, {})",
        opened.recipient,
        opened.key_transport,
        opened.content_alg.name()
    );
    Ok(())
}
