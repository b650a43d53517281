//! Commands run here rather than in an agent: the operations (`crate::ops`) with what only the
//! command line has — files named by options, and attachments written into a directory.

use super::common;
use super::common::read_file;
use super::ctx::CliCtx;
use super::{Global, InOut};
use crate::error::{Exit, Failure};
use crate::ops::ctx::Ctx;
use crate::ops::{receive, send};
use crate::ssmax::mail::file_attachment;
use std::path::{Path, PathBuf};

pub fn run_send(g: &Global, io: &InOut, attach: &[PathBuf], labels: &[String], pss: bool) -> Result<(), Failure> {
    if attach.len() != labels.len() {
        return Err(Failure::new(
            Exit::Usage,
            crate::tr!("cli-labels-per-attachment", files = attach.len(), labels = labels.len()),
        ));
    }
    let mut extra = Vec::new();
    for (path, label) in attach.iter().zip(labels) {
        extra.push(file_attachment(path, label, &read_file(path, crate::files::MAX_MAIL)?));
    }
    send::run(&mut CliCtx::new(g, io)?, extra, pss)
}

pub fn run_receive(g: &Global, io: &InOut, extract: Option<&Path>, force: bool) -> Result<(), Failure> {
    let mut ctx = CliCtx::new(g, io)?;
    let raw = ctx.input()?;
    let mime = receive::open_mail(&mut ctx, &raw)?;
    match extract {
        Some(dir) => {
            for x in super::extract::extract_all(&mime, dir, force)? {
                ctx.note(x.note());
            }
            Ok(())
        }
        None => ctx.output(mime),
    }
}

/// `ssmax-card imap view`: the door's view of one mail, and its verdict on stderr.
pub fn run_view(g: &Global, io: &InOut, authserv_id: Option<String>) -> Result<(), Failure> {
    let mut ctx = CliCtx::new(g, io)?;
    let raw = ctx.input()?;
    let id = authserv_id.unwrap_or_else(|| ctx.setup().config.imap.authserv_id.clone());
    let view = crate::ops::view::view(&mut ctx, &raw, &id)?;
    let note = match &view.verdict {
        crate::ops::view::Verdict::Untouched => crate::tr!("view-untouched"),
        crate::ops::view::Verdict::Pass { sender } => crate::tr!("view-pass", sender = sender.as_str()),
        crate::ops::view::Verdict::Fail { why } => crate::tr!("view-fail", why = why.as_str()),
    };
    ctx.output(view.mail)?;
    ctx.note(note);
    Ok(())
}

/// `ssmax-card agent`: serve this user's mail clients until stopped.
pub fn run_agent(g: &Global, audit_log: Option<PathBuf>) -> Result<(), Failure> {
    // One descriptor holds one PIN, and the agent serves many requests from many clients:
    // it asks each client's pinentry instead. Accepting the option would fail every sign.
    if g.pin_fd.is_some() {
        return Err(Failure::new(Exit::Usage, crate::tr!("cli-agent-no-pin-fd")));
    }
    let setup = common::setup(g)?;
    let socket = crate::agent::client::socket_path(g.socket.as_deref());
    crate::agent::server::run(
        setup,
        crate::agent::server::AgentArgs { socket, audit_log, config_path: g.config.clone() },
    )
}

/// `ssmax-card probe` (the agent's presence check, in a fresh process): "present\tLABEL\tSERIAL"
/// or "absent".
pub fn probe(g: &Global) -> Result<(), Failure> {
    let setup = common::setup(g)?;
    match crate::token::Token::open(&setup.token_uri, &setup.profiles) {
        Ok(t) => {
            println!("present\t{}\t{}", t.label, t.serial);
            Ok(())
        }
        Err(e) => {
            println!("absent");
            Err(e.into())
        }
    }
}

/// `ssmax-card audit verify`: check the agent's hash-chained audit log.
pub fn audit_verify(g: &Global, log: Option<PathBuf>) -> Result<(), Failure> {
    let setup = common::setup(g)?;
    let path = log
        .or(setup.config.agent.audit_log.clone())
        .or_else(|| directories::ProjectDirs::from("jp", "SSMAX", "ssmax-card").map(|d| d.data_dir().join("audit.log")))
        .ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("cli-no-audit-log")))?;
    let (n, _) = crate::agent::audit::verify(&path).map_err(|e| {
        Failure::new(Exit::VerificationFailed, crate::tr!("audit-broken", path = path, error = e.to_string()))
    })?;
    println!("{}", crate::tr!("audit-intact", path = path, entries = n));
    Ok(())
}
