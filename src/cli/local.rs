//! Commands run here rather than in an agent: the operations (`crate::ops`) with what only the
//! command line has — files named by options, and attachments written into a directory.

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
            format!("give one --label for each --attach ({} files, {} labels)", attach.len(), labels.len()),
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
