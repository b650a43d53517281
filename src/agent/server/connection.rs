//! One client connection: its requests read within the idle time, the files they pass, ping and
//! subscriptions answered here, everything else run as a job.

use super::*;
use crate::l10n::Lang;

pub(super) fn serve(stream: Arc<UnixStream>, peer: Peer, agent: &Agent, mut owed: Owed) {
    let dog = &agent.dog;
    let idle = Duration::from_millis(agent.cfg.idle_timeout_ms.max(100));
    // A client that does not read its answer holds this thread no longer than one that sends
    // nothing.
    let _ = stream.set_write_timeout(Some(idle));
    loop {
        let (req, body, fds) = match read_message_with_fds_within::<Request>(&stream, idle) {
            Ok(m) => {
                owed.owe();
                m
            }
            Err(ProtocolError::Closed) => return,
            Err(e @ ProtocolError::TimedOut(_)) => {
                let msg = format!("closing an idle connection: {e} ([agent] idle_timeout_ms)");
                let _ = write_message(&mut &*stream, &error_response(0, Exit::Usage, msg), &[]);
                return;
            }
            Err(e) => {
                let _ = write_message(&mut &*stream, &error_response(0, Exit::Usage, format!("bad request: {e}")), &[]);
                return;
            }
        };
        let received = Instant::now();
        if req.v != VERSION {
            let _ = write_message(
                &mut &*stream,
                &error_response(req.id, Exit::Usage, format!("protocol version {} is not {VERSION}", req.v)),
                &[],
            );
            return;
        }
        let call = match req.call() {
            Ok(c) => c,
            Err(e) => {
                let written = write_message(&mut &*stream, &error_response(req.id, Exit::Usage, e.to_string()), &[]);
                owed.settle();
                if written.is_err() {
                    return;
                }
                continue;
            }
        };
        match call {
            Call::Ping => {
                let r = Response {
                    v: VERSION,
                    id: req.id,
                    ok: true,
                    notes: vec![format!("ssmax-card agent {}", env!("CARGO_PKG_VERSION"))],
                    ..Default::default()
                };
                let written = write_message(&mut &*stream, &r, &[]);
                owed.settle();
                if written.is_err() {
                    return;
                }
            }
            Call::Subscribe => {
                let (tx, rx) = mpsc::channel();
                lock(&agent.events).push(tx);
                let r = Response { v: VERSION, id: req.id, ok: true, ..Default::default() };
                let written = write_message(&mut &*stream, &r, &[]);
                // A subscriber waits for events, not answers: it does not hold up a restart.
                owed.settle();
                if written.is_err() {
                    return;
                }
                // Events as they come; between them, a subscriber that has gone (or sends
                // anything: it has nothing to send) ends the subscription and frees its place.
                loop {
                    match rx.recv_timeout(SUBSCRIBER_CHECK) {
                        Ok(ev) => {
                            let written = write_message(&mut &*stream, &ev, &[]);
                            if ev.event.as_deref() == Some(crate::agent::watchdog::RESTARTING) {
                                dog.event_written();
                            }
                            if written.is_err() {
                                return;
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) if readable_or_closed(&stream) => return,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
            call => {
                let id = req.id;
                if dog.restarting.load(Ordering::SeqCst) {
                    let _ = write_message(&mut &*stream, &restarting_response(id), &[]);
                    return;
                }
                let Received { body, passed, reply } = match passed_files(&req, body, fds) {
                    Ok(b) => b,
                    Err(msg) => {
                        let written = write_message(&mut &*stream, &error_response(id, Exit::Usage, msg), &[]);
                        owed.settle();
                        if written.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 3_600_000));
                let job = Job {
                    req: &req,
                    peer,
                    reply_file: reply.as_ref(),
                    stream: &stream,
                    deadline: received + timeout,
                    timeout,
                };
                let lang = req.client.lang.as_deref().and_then(Lang::from_tag).unwrap_or_else(crate::l10n::current);
                let answered = crate::l10n::speaking(lang, || run_job(agent, job, call, body, passed));
                let Some((resp, out)) = answered else {
                    // The watchdog answered it (a hung token, or the client's deadline).
                    owed.settled_elsewhere();
                    if dog.restarting.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                };
                let written = write_message(&mut &*stream, &resp, &out);
                owed.settle();
                if written.is_err() {
                    return;
                }
            }
        }
    }
}

/// How often a quiet subscription checks that its client is still there.
pub(super) const SUBSCRIBER_CHECK: Duration = Duration::from_secs(1);

/// The client closed its end or sent something (poll without waiting).
pub(super) fn readable_or_closed(stream: &UnixStream) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(stream, PollFlags::IN)];
    poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })).is_ok_and(|n| n > 0)
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
