//! The audit thread: entries in the order they come, written and made durable in batches.

use super::*;

/// How long the audit thread gathers entries before making them durable together. An fsync
/// costs more CPU than the agent's own work on a request (a virtio flush here); the answer to the
/// client never waits for it either way.
pub(super) const AUDIT_WINDOW: Duration = Duration::from_millis(20);
pub(super) const AUDIT_BATCH: usize = 256;

/// The audit thread: entries in the order they come, written and made durable in batches.
pub(super) fn write_audit(mut log: AuditLog, rx: mpsc::Receiver<AuditMsg>) {
    while let Ok(first) = rx.recv() {
        let until = Instant::now() + AUDIT_WINDOW;
        let mut batch = Vec::new();
        let mut close = None;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                AuditMsg::Entry(e) => batch.push(crate::agent::audit::NewEntry {
                    op: e.op,
                    client_pid: e.pid,
                    client_exe: e.exe,
                    digest: e.body_digest,
                    key: e.key,
                    result: e.result,
                }),
                AuditMsg::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if batch.len() < AUDIT_BATCH {
                // What came meanwhile, without waiting; then the rest of the window asleep: a
                // thread that waited for each entry was woken once per request (a context
                // switch per signature under load), not once per batch.
                next = rx.try_recv().ok();
                let left = until.saturating_duration_since(Instant::now());
                if next.is_none() && !left.is_zero() {
                    std::thread::sleep(left);
                    next = rx.try_recv().ok();
                }
            }
        }
        if let Err(err) = log.append_all(batch) {
            eprintln!("ssmax-card agent: {}", crate::tr!("audit-failed", error = err.to_string()));
        }
        if let Some(done) = close {
            drop(log);
            let _ = done.send(());
            return;
        }
    }
}

pub(super) fn log_request(audit: Option<Audit<'_>>, req: &Request, resp: &Response, key: Option<String>) {
    if let Some(a) = audit {
        let result = if resp.ok { "ok".to_string() } else { resp.error.clone().unwrap_or_default() };
        let _ = a.log.send(AuditMsg::Entry(AuditEntry {
            op: req.method.clone(),
            pid: Some(a.pid),
            exe: a.exe,
            body_digest: a.body_digest,
            key,
            result,
        }));
    }
}

pub(super) fn default_audit_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("jp", "SSMAX", "ssmax-card").map(|d| d.data_dir().join("audit.log"))
}
