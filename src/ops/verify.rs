//! `ssmax-card verify`: fail-closed verification of signed mail or CMS.

use super::ctx::Ctx;
use crate::cms::cert::{self, load_file};
use crate::cms::verify::{verify_with_lists, Trust, Verified};
use crate::cms::{unarmor, CmsError};
use crate::error::{Exit, Failure};
use crate::mail::smime::{classify, rejoin, Incoming};
use crate::mail::FromError;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What the user gave besides the mail, already read: the CLI reads the files it names, the
/// agent the descriptors its client passed (it never opens a client's path itself).
#[derive(Debug, Clone, Default)]
pub struct VerifyArgs {
    /// DER certificates from `--ca`.
    pub anchors: Vec<Vec<u8>>,
    /// DER certificates from `--certfile`.
    pub intermediates: Vec<Vec<u8>>,
    /// `--content`: what a bare detached signature signs.
    pub content: Option<Vec<u8>>,
    pub no_token: bool,
    /// `--crl`.
    pub crls: Vec<crate::cms::revocation::Shared>,
    /// `--revocation`.
    pub revocation: Option<crate::cms::revocation::Policy>,
}

impl VerifyArgs {
    pub fn from_files(
        ca: &[PathBuf],
        certfile: &[PathBuf],
        content: Option<&Path>,
        no_token: bool,
    ) -> Result<VerifyArgs, Failure> {
        let certs = |paths: &[PathBuf]| -> Result<Vec<Vec<u8>>, Failure> {
            paths.iter().map(|p| Ok(load_file(p)?)).collect::<Result<Vec<_>, Failure>>().map(|v| v.concat())
        };
        Ok(VerifyArgs {
            anchors: certs(ca)?,
            intermediates: certs(certfile)?,
            content: content.map(|p| crate::files::read_regular(p, crate::files::MAX_MAIL)).transpose()?,
            no_token,
            ..Default::default()
        })
    }
}

pub fn run(ctx: &mut dyn Ctx, a: &VerifyArgs) -> Result<(), Failure> {
    let raw = ctx.input()?;
    let checked = check(ctx, &raw, a)?;
    if ctx.wants_output() {
        ctx.output(checked.content)?;
    }
    if let Some(w) = checked.claimed {
        ctx.note(w);
    }
    ctx.report(checked.report);
    Ok(())
}

/// What verifying a mail found: the report, a warning about its display name, its sender (for
/// a mail), and the innermost signed content (a mail's with its header fields).
pub struct Checked {
    pub report: String,
    pub claimed: Option<String>,
    pub from: Option<String>,
    pub content: Vec<u8>,
}

/// Verify `raw` (a signed mail, or bare CMS with `a.content`), fail-closed: every signature,
/// chain, usage, revocation, and the From address against the certificate.
pub fn check(ctx: &mut dyn Ctx, raw: &[u8], a: &VerifyArgs) -> Result<Checked, Failure> {
    let mut trust = Trust { anchors: a.anchors.clone(), intermediates: a.intermediates.clone(), ..Default::default() };
    for f in &ctx.setup().config.anchors {
        trust.anchors.extend(load_file(f)?);
    }
    trust.crls = a.crls.clone();
    for f in &ctx.setup().config.crls {
        trust.crls.extend(crate::cms::revocation::load_file(f)?);
    }
    trust.revocation = a.revocation.or(ctx.setup().config.revocation).unwrap_or_default();
    trust.grace = ctx.setup().config.revocation_grace();
    if !a.no_token {
        // Anchors on the token are the ones a PC cannot swap; without a token only --ca counts.
        let named = ctx.setup().token_uri != Default::default();
        match ctx.token_certificates() {
            Ok(certs) => {
                for c in certs {
                    if c.anchor {
                        trust.anchors.push(c.der);
                    } else {
                        trust.intermediates.push(c.der);
                    }
                }
            }
            Err(f) if f.exit == Exit::TokenNotPresent && !named => {
                ctx.note("note: no token present; trusting only --ca / configured anchors".into());
            }
            Err(e) => return Err(e),
        }
        ctx.done_with_token();
    }
    let now = SystemTime::now();
    // The evidence about each validated path (its CRLs, OCSP answers), from the cache or fetched
    // once the signature and chain are good; what could not be had is noted, the policy judges it.
    let config = ctx.setup().config.clone();
    let policy = trust.revocation;
    let given = trust.crls.clone();
    let mut lists = |path: &crate::cms::verify::ValidPath| {
        let (found, notes) = crate::crl_store::evidence_for(path, &given, policy, &config);
        for n in notes {
            ctx.note(crate::tr!("warning", text = n));
        }
        found
    };
    let (verified, outer) = match classify(raw)? {
        Incoming::Detached { outer, signed, signature } => {
            let der = unarmor(&signature)?;
            (verify_with_lists(&der, Some(&signed), &trust, now, &mut lists)?, Some(outer))
        }
        Incoming::Opaque { outer, cms, smime_type } => {
            if smime_type.contains("enveloped") {
                return Err(Failure::new(Exit::Usage, crate::tr!("verify-is-encrypted")));
            }
            let der = unarmor(&cms)?;
            (verify_with_lists(&der, None, &trust, now, &mut lists)?, Some(outer))
        }
        Incoming::Bare(der) => {
            let der = unarmor(&der)?;
            let detached = a.content.as_deref();
            match (verify_with_lists(&der, detached, &trust, now, &mut lists), detached) {
                // A MIME entity is signed in its canonical form, CRLF line ends (RFC 8551 §3.1.1);
                // a content file saved with bare LFs is the same text: check that form too, as
                // openssl does in its default text mode. Anything else still fails.
                (Err(first), Some(content)) if !crate::mail::is_crlf(content) => {
                    match verify_with_lists(&der, Some(&crate::mail::to_crlf(content)), &trust, now, &mut lists) {
                        Ok(v) => (v, None),
                        Err(_) => return Err(first.into()),
                    }
                }
                (result, _) => (result?, None),
            }
        }
    };
    // The address the mail programs show: one From field, one mailbox, in the certificate.
    let from = match &outer {
        Some(outer) => {
            let from = outer.from_address().map_err(|e| {
                Failure::from(CmsError::Verify(match e {
                    FromError::Missing => crate::tr!("verify-no-from"),
                    e => e.to_string(),
                }))
            })?;
            check_from(&verified, &from)?;
            same_sender_inside(&verified.content, &from)?;
            Some(from)
        }
        None => None,
    };
    let mut report = String::new();
    signer_report(&mut report, &verified, None);
    if let Some(from) = &from {
        line(&mut report, crate::tr!("report-from-matches", from = from));
    }
    // A display name that is itself another address: what the reader sees first is not checked.
    let claimed = outer.as_ref().and_then(|o| o.from_name_claims()).map(|claim| {
        let from = from.as_deref().unwrap_or_default();
        crate::tr!("warning", text = crate::tr!("from-name-claims", claim = crate::l10n::escaped(&claim), from = from))
    });
    if let Some(w) = &claimed {
        line(&mut report, format!("  {w}"));
    }
    // A signature around another (a signed message signed again on its way): each layer is
    // verified the same way, fail-closed; the content written is the innermost one.
    let mut content = verified.content;
    if outer.is_some() {
        for layer in 2..=MAX_LAYERS + 1 {
            let inner = match classify(&content) {
                Ok(Incoming::Detached { outer: e, signed, signature }) => {
                    (verify_with_lists(&unarmor(&signature)?, Some(&signed), &trust, now, &mut lists), e)
                }
                Ok(Incoming::Opaque { outer: e, cms, smime_type }) if !smime_type.contains("enveloped") => {
                    (verify_with_lists(&unarmor(&cms)?, None, &trust, now, &mut lists), e)
                }
                Ok(Incoming::Opaque { .. }) => {
                    report.push_str("  the signed content is encrypted: decrypt it with 'ssmax-card decrypt'\n");
                    break;
                }
                _ => break,
            };
            if layer > MAX_LAYERS {
                return Err(Failure::new(Exit::Usage, crate::tr!("verify-too-deep", layers = MAX_LAYERS)));
            }
            let (result, entity) = inner;
            let v = result.map_err(|e| {
                let mut f = Failure::from(e);
                f.message = crate::tr!("verify-inner-failed", layer = layer, error = f.message);
                f
            })?;
            // This layer's own From (checked to be the one the mail shows, with the content
            // that carried it) must be in its signer's certificate too.
            let own_from = from.clone().filter(|_| entity.has_from());
            if let Some(f) = &own_from {
                check_from(&v, f)?;
            }
            same_sender_inside(&v.content, from.as_deref().unwrap_or_default())?;
            signer_report(&mut report, &v, Some(layer));
            if let Some(from) = own_from {
                line(&mut report, crate::tr!("report-from-matches", from = from));
            }
            content = v.content;
        }
    }
    let content = match &outer {
        Some(o) => rejoin(o, &content),
        None => content,
    };
    Ok(Checked { report, claimed, from, content })
}

/// The sender named inside the signed content, if any, is the one the mail shows
/// (`mail::sender_inside`).
fn same_sender_inside(content: &[u8], outer_from: &str) -> Result<(), Failure> {
    crate::mail::sender_inside(content, outer_from).map_err(|e| CmsError::Verify(e.to_string()).into())
}

/// Signatures inside signatures verified before refusing (real mail has one or two).
const MAX_LAYERS: usize = 4;

fn check_from(verified: &Verified, from: &str) -> Result<(), Failure> {
    for signer in &verified.signers {
        if !signer.emails.iter().any(|e| e == from) {
            let names = signer.emails.join(", ");
            return Err(CmsError::Verify(if names.is_empty() {
                crate::tr!("verify-from-mismatch-none", from = from, subject = signer.subject)
            } else {
                crate::tr!("verify-from-mismatch", from = from, subject = signer.subject, names = names)
            })
            .into());
        }
    }
    Ok(())
}

fn line(report: &mut String, text: String) {
    report.push_str(&text);
    report.push('\n');
}

/// The report of each signer: the outer signature (`layer` None) or one nested inside it.
fn signer_report(report: &mut String, verified: &Verified, layer: Option<usize>) {
    for s in &verified.signers {
        let (subject, emails) = (&s.subject, crate::l10n::escaped(&s.emails.join(", ")));
        line(
            report,
            match layer {
                None => crate::tr!("report-good", subject = subject, emails = emails),
                Some(layer) => crate::tr!("report-inner", layer = layer, subject = subject, emails = emails),
            },
        );
        line(report, crate::tr!("report-issuer", issuer = s.issuer));
        line(report, crate::tr!("report-algorithm", algorithm = s.algorithm));
        if let Some(t) = s.signing_time {
            line(report, crate::tr!("report-signed-at", when = cert::fmt_time(t)));
        }
        line(report, crate::tr!("report-valid-until", when = cert::fmt_time(s.not_after)));
        if s.pinned {
            line(report, crate::tr!("report-pinned"));
        } else {
            line(report, crate::tr!("report-chain", chain = s.chain.join(" <- ")));
        }
        line(report, crate::tr!("report-revocation", status = s.revocation.describe()));
    }
}
