//! `ssmax-card verify`: fail-closed verification of signed mail or CMS.

use super::common::{read_file, read_input, setup, write_output};
use super::{Global, InOut};
use crate::cms::cert::{self, load_file};
use crate::cms::verify::{verify, Trust};
use crate::cms::{unarmor, CmsError};
use crate::error::{Exit, Failure};
use crate::mail::smime::{classify, rejoin, Incoming};
use crate::token::{Token, TokenError};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub fn run(g: &Global, io: &InOut, ca: &[PathBuf], certfile: &[PathBuf], content: Option<&Path>, no_token: bool) -> Result<(), Failure> {
    let s = setup(g)?;
    let raw = read_input(io)?;
    let mut trust = Trust::default();
    for f in ca.iter().chain(&s.config.anchors) {
        trust.anchors.extend(load_file(f)?);
    }
    for f in certfile {
        trust.intermediates.extend(load_file(f)?);
    }
    if !no_token {
        // Anchors on the token are the ones a PC cannot swap; without a token only --ca counts.
        match Token::open(&s.token_uri, &s.profiles) {
            Ok(t) => {
                for c in t.certificates()? {
                    if c.anchor {
                        trust.anchors.push(c.der);
                    } else {
                        trust.intermediates.push(c.der);
                    }
                }
            }
            Err(e @ (TokenError::NotPresent(_) | TokenError::ModuleLoad { .. })) if s.token_uri == Default::default() => {
                let _ = e;
                eprintln!("ssmax-card: note: no token present; trusting only --ca / configured anchors");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let now = SystemTime::now();
    let (verified, outer) = match classify(&raw)? {
        Incoming::Detached { outer, signed, signature } => (verify(&unarmor(&signature)?, Some(&signed), &trust, now)?, Some(outer)),
        Incoming::Opaque { outer, cms, smime_type } => {
            if smime_type.contains("enveloped") {
                return Err(Failure::new(Exit::Usage, "this mail is encrypted, not signed: use 'ssmax-card decrypt'"));
            }
            (verify(&unarmor(&cms)?, None, &trust, now)?, Some(outer))
        }
        Incoming::Bare(der) => {
            let detached = content.map(read_file).transpose()?;
            (verify(&unarmor(&der)?, detached.as_deref(), &trust, now)?, None)
        }
    };
    if let Some(outer) = &outer {
        let from = outer.from_address().ok_or_else(|| Failure::from(CmsError::Verify("the mail has no From address to compare with the certificate".into())))?;
        for signer in &verified.signers {
            if !signer.emails.iter().any(|e| *e == from) {
                return Err(CmsError::Verify(format!(
                    "the From address {from} is not in the signer's certificate ({} names: {})",
                    signer.subject,
                    if signer.emails.is_empty() { "no e-mail address".into() } else { signer.emails.join(", ") }
                ))
                .into());
            }
        }
    }
    let mut report = String::new();
    for s in &verified.signers {
        report.push_str(&format!("Good signature from {} <{}>\n", s.subject, s.emails.join(", ")));
        report.push_str(&format!("  issued by:    {}\n", s.issuer));
        report.push_str(&format!("  algorithm:    {}\n", s.algorithm));
        if let Some(t) = s.signing_time {
            report.push_str(&format!("  signed at:    {}\n", cert::fmt_time(t)));
        }
        report.push_str(&format!("  valid until:  {}\n", cert::fmt_time(s.not_after)));
        if s.pinned {
            report.push_str("  trust:        the signer's certificate itself is a trust anchor\n");
        } else {
            report.push_str(&format!("  chain:        {}\n", s.chain.join(" <- ")));
        }
    }
    if let Some(outer) = &outer {
        if let Some(from) = outer.from_address() {
            report.push_str(&format!("  From matches: {from}\n"));
        }
    }
    if io.output.is_some() {
        let content = match &outer {
            Some(o) => rejoin(o, &verified.content),
            None => verified.content.clone(),
        };
        write_output(io, &content)?;
    }
    print!("{report}");
    Ok(())
}
