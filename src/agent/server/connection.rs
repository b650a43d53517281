//! One request on its request thread: the files it passed, the job, its answer.

use super::*;
use crate::l10n::Lang;

/// Run one request on a request thread and write its answer (blocking, within the connection's
/// write timeout). Returns whether the connection goes on (false: close it).
#[allow(clippy::too_many_arguments)]
pub(super) fn run_request(
    agent: &Agent,
    stream: &Arc<UnixStream>,
    peer: Peer,
    owed: &mut Owed,
    req: Request,
    call: Call,
    body: Vec<u8>,
    fds: Vec<OwnedFd>,
    received: Instant,
) -> bool {
    let dog = &agent.dog;
    let id = req.id;
    if dog.restarting.load(Ordering::SeqCst) {
        let _ = write_message(&mut &**stream, &restarting_response(id), &[]);
        return false;
    }
    let Received { body, passed, reply } = match passed_files(&req, body, fds) {
        Ok(b) => b,
        Err(msg) => {
            let written = write_message(&mut &**stream, &error_response(id, Exit::Usage, msg), &[]);
            owed.settle();
            return written.is_ok();
        }
    };
    let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 3_600_000));
    let job = Job { req: &req, peer, reply_file: reply.as_ref(), stream, deadline: received + timeout, timeout };
    let lang = req.client.lang.as_deref().and_then(Lang::from_tag).unwrap_or_else(crate::l10n::current);
    let answered = crate::l10n::speaking(lang, || run_job(agent, job, call, body, passed));
    let Some((resp, out)) = answered else {
        // The watchdog answered it (a hung token, or the client's deadline).
        owed.settled_elsewhere();
        return !dog.restarting.load(Ordering::SeqCst);
    };
    // The answer must be read within the idle time, all of it: a client that reads slowly
    // or not at all holds this thread no longer.
    let idle = Duration::from_millis(agent.cfg.idle_timeout_ms.max(100));
    let written = write_message(&mut WriteUntil { sock: stream, deadline: Instant::now() + idle }, &resp, &out);
    owed.settle();
    written.is_ok()
}

/// Read the descriptors a request passed. Regular files only: a pipe or a socket could hold
/// this thread (and the token turn) for as long as its writer liked; each within its limit.
pub(super) fn passed_files(req: &Request, body: Vec<u8>, fds: Vec<OwnedFd>) -> Result<Received, String> {
    let wanted = usize::from(req.body_in_fd) + req.passed.len() + usize::from(req.reply_in_fd);
    if fds.len() != wanted {
        return Err(format!("bad request: it names {wanted} file descriptor(s) and passed {}", fds.len()));
    }
    let regular = |f: File| -> Result<(File, u64), String> {
        let m = f.metadata().map_err(|e| format!("bad request: a passed file descriptor: {e}"))?;
        if !m.file_type().is_file() {
            return Err("bad request: a passed file descriptor is not a regular file".into());
        }
        Ok((f, m.len()))
    };
    // In this order: the body's file, the passed files, then the reply's.
    let mut files = fds.into_iter().map(File::from);
    let body_file = if req.body_in_fd { files.next() } else { None };
    let mut passed = Vec::with_capacity(req.passed.len());
    for (kind, f) in req.passed.iter().zip(files.by_ref()) {
        let (f, len) = regular(f)?;
        if len > kind.limit() {
            return Err(format!(
                "a passed {} file of {len} bytes is over the limit of {}",
                kind.name(),
                crate::files::size(kind.limit())
            ));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, 0).map_err(|e| format!("reading a passed {} file: {e}", kind.name()))?;
        passed.push((*kind, buf));
    }
    let reply_file = if req.reply_in_fd { files.next() } else { None };
    let body = match body_file {
        Some(f) => {
            if !body.is_empty() {
                return Err("bad request: a body both in the message and in a file descriptor".into());
            }
            let (f, len) = regular(f)?;
            if len > u64::from(MAX_BODY) {
                return Err(format!("body of {len} bytes is over the limit of {MAX_BODY}"));
            }
            // One allocation of the exact size, read from offset 0 whatever the client's position.
            let mut buf = vec![0u8; len as usize];
            f.read_exact_at(&mut buf, 0).map_err(|e| format!("reading the body from its file descriptor: {e}"))?;
            buf
        }
        None => body,
    };
    let reply = match reply_file {
        Some(f) => Some(regular(f)?.0),
        None => None,
    };
    Ok(Received { body, passed, reply })
}
