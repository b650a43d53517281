//! `ssmax-card forward`: verify as on receive, keep the chosen attachments, re-key them to your
//! organisation (only the content key is decrypted, on the card; the ciphertext stays byte
//! for byte), sign the new mail on the card.

use super::ctx::{Ctx, Parts};
use super::receive::verify_from_org;
use super::sign::sign_built_on_token;
use crate::cms::decrypt::Envelope;
use crate::cms::encrypt::recipient_info;
use crate::cms::{cert, CmsError};
use crate::error::{Exit, Failure};
use crate::mail::smime::build_signed;
use crate::mail::{quoted_printable, Field};
use crate::ssmax::binding;
use crate::ssmax::mail::{build, Protected};
use crate::ssmax::{display_name, org_certificate, token_trust};
use crate::token::decrypt::TokenDecryptor;
use crate::token::Token;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardArgs {
    pub to: Vec<String>,
    pub from: Option<String>,
    pub keep: Vec<String>,
    pub note: Option<String>,
    pub pss: bool,
}

pub fn run(ctx: &mut dyn Ctx, a: &ForwardArgs) -> Result<(), Failure> {
    if a.to.is_empty() {
        return Err(Failure::new(Exit::Usage, crate::tr!("forward-no-to")));
    }
    let raw = ctx.input()?;
    // Without --from the address is the token's own: then a token must be named if several are present.
    if let Some(from) = &a.from {
        super::sign::choose_signing_token(ctx, &from.to_ascii_lowercase(), super::sign::Binding::Organisation)?;
    }
    let (out, note) = {
        let mut p = ctx.token()?;
        forward(&mut p, a, &raw)?
    };
    ctx.done_with_token();
    ctx.output(out)?;
    ctx.note(note);
    Ok(())
}

fn forward(p: &mut Parts<'_>, a: &ForwardArgs, raw: &[u8]) -> Result<(Vec<u8>, String), Failure> {
    let trust = token_trust(p.token, &p.s.config)?;
    let rec = verify_from_org(raw, &trust, &p.s.config)?;
    let mut selected = Vec::new();
    for k in &a.keep {
        let p = rec.parts.protected.iter().find(|p| p.filename == *k || p.label == *k).ok_or_else(|| {
            let have: Vec<String> = rec
                .parts
                .protected
                .iter()
                .map(|p| format!("'{}' ({})", crate::l10n::escaped(&p.label), crate::l10n::escaped(&p.filename)))
                .collect();
            Failure::new(
                Exit::Usage,
                if have.is_empty() {
                    crate::tr!("forward-no-such-attachment-none", wanted = k)
                } else {
                    crate::tr!("forward-no-such-attachment", wanted = k, have = have.join(", "))
                },
            )
        })?;
        if !selected.iter().any(|q: &&Protected| std::ptr::eq(*q, p)) {
            selected.push(p);
        }
    }
    let org = org_certificate(&trust, &p.s.config)?;
    let org_name = display_name(&org);
    // Each kept attachment with its content key, recovered on the card: the binding is checked
    // as on receive, and the key shows the forwarder could open it (binding.rs).
    let mut kept = Vec::new();
    if !selected.is_empty() {
        let Some((sender, _)) = &rec.chain.originator else {
            return Err(CmsError::Verify(crate::tr!("receive-no-originator")).into());
        };
        let operation = crate::tr!("forward-operation");
        let mut dec = TokenDecryptor::new(p.token, p.prompt, p.allow_final_pin_try, &operation)?;
        for p in &selected {
            let label = |e| super::receive::with_label(e, &p.label);
            let env = Envelope::parse(&p.cms)?;
            crate::ssmax::check_protected(&env, &p.label).map_err(label)?;
            let (cek, _, _) = env.recover_cek(&mut dec).map_err(label)?;
            binding::check(&env, &p.label, &p.filename, sender, &cek).map_err(label)?;
            kept.push((*p, env, cek));
        }
    }
    let from = match &a.from {
        Some(f) => f.to_ascii_lowercase(),
        None => own_address(p.token)?,
    };
    // As the reader saw them: a Japanese subject arrives as ISO-2022-JP encoded words.
    let header = |name: &str| rec.outer.text(name).unwrap_or_default();
    let mut text = String::new();
    if let Some(n) = &a.note {
        text.push_str(n);
        text.push_str("\n\n");
    }
    text.push_str(&format!(
        "---------- Forwarded message ----------\nFrom: {}\nDate: {}\nSubject: {}\nTo: {}\n",
        header("From"),
        header("Date"),
        header("Subject"),
        header("To")
    ));
    let mut intro =
        b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".to_vec();
    intro.extend_from_slice(&quoted_printable(text.as_bytes()));
    let mut body = vec![intro];
    body.extend(rec.parts.body.iter().cloned());
    let forwarded = kept.len();
    let subject = header("Subject");
    let subject = if subject.to_ascii_lowercase().starts_with("fwd:") { subject } else { format!("Fwd: {subject}") };
    let date =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
    let outer = vec![
        Field::new("From", &from),
        Field::written("To", crate::mail::fields::address_list("To", &a.to)),
        Field::written("Subject", crate::mail::fields::unstructured("Subject", &subject)),
        Field::new("Date", &date),
    ];
    let mut kept = Some(kept);
    let mut build_for = |signer: &x509_cert::Certificate| -> Result<Vec<u8>, Failure> {
        let mut rekeyed = Vec::new();
        for (p, mut env, cek) in kept.take().unwrap_or_default() {
            if binding::read(&env, &p.label)?.originator != binding::ias(signer) {
                binding::add_forward_proof(&mut env, &cek, signer)?;
            }
            let cms = env.with_recipients(vec![recipient_info(&org, &cek)?])?;
            rekeyed.push(Protected { filename: p.filename.clone(), label: p.label.clone(), cms });
        }
        Ok(build(&body, rekeyed, &org_name))
    };
    let (done, inner) =
        sign_built_on_token(p, &from, &a.to.join(", "), &mut build_for, a.pss, super::sign::Binding::Organisation)?;
    let note = crate::tr!("forward-done", count = forwarded, org = org_name, summary = done.summary(&from, p.token));
    Ok((build_signed(&outer, &inner, &done.der, done.scheme.hash().micalg()), note))
}

/// The user's own address: the one e-mail address on the token's signing certificates.
fn own_address(token: &Token) -> Result<String, Failure> {
    let mut emails: Vec<String> = Vec::new();
    for c in token.certificates()? {
        if c.anchor || token.profile.is_org(&c.label) {
            continue;
        }
        if let Ok(p) = cert::parse(&c.der) {
            if !cert::is_ca(&p) {
                for e in cert::emails(&p) {
                    if !emails.contains(&e) {
                        emails.push(e);
                    }
                }
            }
        }
    }
    match emails.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(Failure::new(Exit::NoKey, crate::tr!("forward-no-address"))),
        many => Err(Failure::new(Exit::Usage, crate::tr!("forward-several-addresses", addresses = many.join(", ")))),
    }
}
