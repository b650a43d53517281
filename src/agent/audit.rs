//! The audit log: append-only JSON lines, each chained to the previous by SHA-256, plus a head
//! file holding the last sequence number and hash, so an edited, removed or truncated line is
//! found by `ssmax-card audit verify`. Never the content, never the PIN: a digest of the input.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub time: String,
    pub op: String,
    pub client_pid: Option<i32>,
    pub client_exe: Option<String>,
    /// SHA-256 of the request body (the mail), hex.
    pub digest: String,
    /// The token (and key, when named) the operation used.
    pub key: Option<String>,
    pub result: String,
    /// Hash of the previous entry (hex; zeros for the first).
    pub prev: String,
    /// SHA-256 over this entry without `hash`, hex.
    #[serde(default)]
    pub hash: String,
}

impl Entry {
    fn compute_hash(&self) -> String {
        let mut e = self.clone();
        e.hash = String::new();
        let json = serde_json::to_vec(&e).unwrap_or_default();
        base16ct::lower::encode_string(&Sha256::digest(&json))
    }
}

/// SHA-256 of a request body, as the audit log records it.
pub fn body_digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

pub struct AuditLog {
    path: PathBuf,
    seq: u64,
    last: String,
    /// Kept open: reopening and renaming per request cost more than the token operation.
    log: Option<std::fs::File>,
    head: Option<std::fs::File>,
}

/// The head line is written in place at a fixed width, so every write covers the whole file.
const HEAD_WIDTH: usize = 20 + 1 + 64;

fn head_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".head");
    PathBuf::from(p)
}

impl AuditLog {
    /// Open (or start) a log; an existing one must verify, or the agent refuses to add to it.
    pub fn open(path: &Path) -> Result<AuditLog, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        if !path.exists() {
            return Ok(AuditLog { path: path.to_path_buf(), seq: 0, last: "0".repeat(64), log: None, head: None });
        }
        // A line without its newline is a write the previous agent did not finish (it was
        // killed mid-write): it was never part of the chain, so it goes before checking.
        if let Some(keep) = unfinished_tail(path).map_err(|e| format!("cannot read {}: {e}", path.display()))? {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|e| format!("cannot repair {}: {e}", path.display()))?;
            f.set_len(keep).map_err(|e| format!("cannot repair {}: {e}", path.display()))?;
            eprintln!("ssmax-card agent: {}", crate::tr!("audit-repaired"));
        }
        let (seq, last) = verify(path)?;
        Ok(AuditLog { path: path.to_path_buf(), seq, last, log: None, head: None })
    }

    pub fn append(
        &mut self,
        op: &str,
        client_pid: Option<i32>,
        client_exe: Option<String>,
        body: &[u8],
        key: Option<String>,
        result: &str,
    ) -> Result<(), String> {
        self.append_all(std::iter::once(NewEntry {
            op: op.into(),
            client_pid,
            client_exe,
            digest: body_digest(body),
            key,
            result: result.into(),
        }))
    }

    /// Append entries in order, made durable together with one fsync (the agent's audit thread
    /// writes whatever queued up meanwhile as one batch). Line, then head, entry by entry: a stop
    /// between two writes leaves the head behind by one entry at most, which `verify` accepts.
    pub fn append_all(&mut self, entries: impl IntoIterator<Item = NewEntry>) -> Result<(), String> {
        let mut wrote = false;
        for n in entries {
            let time = time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            let mut e = Entry {
                seq: self.seq + 1,
                time,
                op: n.op,
                client_pid: n.client_pid,
                client_exe: n.client_exe,
                digest: base16ct::lower::encode_string(&n.digest),
                key: n.key,
                result: n.result,
                prev: self.last.clone(),
                hash: String::new(),
            };
            e.hash = e.compute_hash();
            let mut line = serde_json::to_vec(&e).map_err(|e| e.to_string())?;
            line.push(b'\n');
            self.write_line(&line, e.seq, &e.hash)?;
            self.seq = e.seq;
            self.last = e.hash;
            wrote = true;
        }
        if let (true, Some(f)) = (wrote, self.log.as_ref()) {
            f.sync_data().map_err(|e| format!("audit log {}: {e}", self.path.display()))?;
        }
        Ok(())
    }

    fn write_line(&mut self, line: &[u8], seq: u64, hash: &str) -> Result<(), String> {
        let err = |e: std::io::Error| format!("audit log {}: {e}", self.path.display());
        if self.log.is_none() {
            let f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path).map_err(err)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
            }
            self.log = Some(f);
        }
        if let Some(f) = self.log.as_mut() {
            f.write_all(line).map_err(err)?;
        }
        // The head records where the log ends; cutting lines off the end no longer matches it.
        if self.head.is_none() {
            self.head = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(head_path(&self.path))
                    .map_err(err)?,
            );
        }
        if let Some(h) = self.head.as_ref() {
            use std::os::unix::fs::FileExt;
            let text = format!("{:<width$}\n", format!("{seq} {hash}"), width = HEAD_WIDTH);
            h.write_all_at(text.as_bytes(), 0).map_err(err)?;
        }
        Ok(())
    }
}

/// An entry to append: what happened, before it gets its place in the chain.
pub struct NewEntry {
    pub op: String,
    pub client_pid: Option<i32>,
    pub client_exe: Option<String>,
    /// SHA-256 of the request body.
    pub digest: [u8; 32],
    pub key: Option<String>,
    pub result: String,
}

/// Where the log should end when its last line has no newline (None when it is whole). Reads
/// only the tail: an unfinished line is at most one entry long.
fn unfinished_tail(path: &Path) -> std::io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let from = len.saturating_sub(MAX_LINE as u64 + 1);
    let mut tail = vec![0u8; (len - from) as usize];
    f.read_exact_at(&mut tail, from)?;
    if tail.last().is_none_or(|&b| b == b'\n') {
        return Ok(None);
    }
    Ok(Some(tail.iter().rposition(|&b| b == b'\n').map_or(from, |i| from + i as u64 + 1)))
}

/// Longest line `verify` reads: an entry is a few hundred bytes; a longer line is not one.
const MAX_LINE: usize = 64 * 1024;

/// Check every line's hash and link, and the head: Ok((entries, last hash)) or where it breaks.
pub fn verify(path: &Path) -> Result<(u64, String), String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut prev = "0".repeat(64);
    let mut before_last = prev.clone();
    let mut seq = 0u64;
    let mut reader = std::io::BufReader::new(f);
    let mut buf = Vec::new();
    for n in 0.. {
        buf.clear();
        (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        if buf.is_empty() {
            break;
        }
        if buf.len() > MAX_LINE {
            return Err(format!("line {}: longer than {MAX_LINE} bytes — not an audit entry", n + 1));
        }
        let line = std::str::from_utf8(buf.strip_suffix(b"\n").unwrap_or(&buf))
            .map_err(|_| format!("line {}: not UTF-8 text", n + 1))?;
        let e: Entry = serde_json::from_str(line).map_err(|e| format!("line {}: not an audit entry ({e})", n + 1))?;
        if e.seq != seq + 1 {
            return Err(format!(
                "line {}: sequence {} follows {} — lines were removed or reordered",
                n + 1,
                e.seq,
                seq
            ));
        }
        if e.prev != prev {
            return Err(format!(
                "line {}: does not chain to the line before it — lines were removed or changed",
                n + 1
            ));
        }
        if e.compute_hash() != e.hash {
            return Err(format!("line {}: its content does not match its hash — the line was edited", n + 1));
        }
        seq = e.seq;
        before_last = std::mem::replace(&mut prev, e.hash);
    }
    let head = crate::files::read_regular_text(&head_path(path), 4096).map_err(|e| format!("the head file: {e}"))?;
    let expected = format!("{seq} {prev}");
    // The agent writes the line, then the head: stopped in between, the head lags by exactly
    // one entry. A log cut short has the head ahead of it instead.
    let lagging = seq > 0 && head.trim() == format!("{} {before_last}", seq - 1);
    if head.trim() != expected && !lagging {
        return Err(format!(
            "the log ends at entry {seq} but its head file says '{}' — the end of the log was cut off or replaced",
            head.trim()
        ));
    }
    Ok((seq, prev))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_removals_and_truncation_are_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        for i in 0..4 {
            log.append(
                "sign",
                Some(100 + i),
                Some("/usr/bin/mutt".into()),
                format!("mail {i}").as_bytes(),
                Some("token 'x'".into()),
                "ok",
            )
            .unwrap();
        }
        assert_eq!(verify(&path).unwrap().0, 4);
        let good = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = good.lines().collect();

        std::fs::write(&path, good.replacen("\"result\":\"ok\"", "\"result\":\"no\"", 1)).unwrap();
        assert!(verify(&path).unwrap_err().contains("edited"));
        std::fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[2], lines[3])).unwrap();
        assert!(verify(&path).unwrap_err().contains("removed"));
        std::fs::write(&path, format!("{}\n{}\n{}\n", lines[0], lines[1], lines[2])).unwrap();
        assert!(verify(&path).unwrap_err().contains("cut off"));
        std::fs::write(&path, &good).unwrap();
        // A log that does not verify is not appended to.
        assert!(AuditLog::open(&path).is_ok());
        std::fs::write(&path, good.replacen("mutt", "evil", 1)).unwrap();
        assert!(AuditLog::open(&path).is_err());
    }
}

#[cfg(test)]
mod crash_window {
    use super::*;

    #[test]
    fn a_head_one_entry_behind_is_the_crash_window_and_is_accepted_then_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        log.append("sign", None, None, b"a", None, "ok").unwrap();
        let head_after_one = std::fs::read(head_path(&path)).unwrap();
        log.append("sign", None, None, b"b", None, "ok").unwrap();
        drop(log);
        // As if the agent died between writing the line and the head.
        std::fs::write(head_path(&path), &head_after_one).unwrap();
        assert_eq!(verify(&path).unwrap().0, 2);
        let mut log = AuditLog::open(&path).unwrap();
        log.append("sign", None, None, b"c", None, "ok").unwrap();
        assert_eq!(verify(&path).unwrap().0, 3);
    }

    #[test]
    fn a_line_cut_off_mid_write_is_dropped_and_the_log_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut log = AuditLog::open(&path).unwrap();
        log.append("sign", None, None, b"a", None, "ok").unwrap();
        drop(log);
        let whole = std::fs::read(&path).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"seq\":2,\"ts\":").unwrap();
        let mut log = AuditLog::open(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole);
        log.append("sign", None, None, b"b", None, "ok").unwrap();
        assert_eq!(verify(&path).unwrap().0, 2);
    }

    #[test]
    fn a_line_longer_than_any_entry_is_refused_not_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, vec![b'x'; MAX_LINE * 3]).unwrap();
        assert!(verify(&path).unwrap_err().contains("longer than"));
    }
}
