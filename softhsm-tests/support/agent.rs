//! Running an agent for a test: a real socket, a real SoftHSM2 token, and a scripted pinentry
//! that speaks the Assuan protocol.

#![allow(dead_code)]

use super::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

pub struct Agent {
    pub child: Child,
    pub socket: PathBuf,
    pub audit: PathBuf,
    pub pinentry_log: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pinentry that logs what it is told and answers GETPIN with `pin_file`'s PIN after `delay`.
pub fn pinentry(tok: &Tok, pin_file: &Path, delay_s: &str) -> (PathBuf, PathBuf) {
    let log = tok.path("pinentry.log");
    let script = tok.write(
        "pinentry.sh",
        format!(
            "#!/bin/sh\necho \"ENV DISPLAY=$DISPLAY\" >> '{log}'\necho 'OK Pleased to meet you'\nwhile read -r cmd rest; do\n  echo \"$cmd $rest\" >> '{log}'\n  case $cmd in\n    GETPIN) sleep {delay_s}; echo \"D $(head -n1 '{pin}')\"; echo OK ;;\n    BYE) echo OK; exit 0 ;;\n    *) echo OK ;;\n  esac\ndone\n",
            log = log.display(),
            pin = pin_file.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    (script, log)
}

pub fn start_agent(tok: &Tok, extra_config: &str, delay_s: &str) -> Agent {
    start_agent_with(tok, "", extra_config, delay_s)
}

/// `top` goes before the `[agent]` table, `agent_config` into it.
pub fn start_agent_with(tok: &Tok, top: &str, agent_config: &str, delay_s: &str) -> Agent {
    start_agent_env(tok, top, agent_config, delay_s, &[])
}

/// The same, with extra environment for the agent (e.g. the shim's fault file).
pub fn start_agent_env(tok: &Tok, top: &str, agent_config: &str, delay_s: &str, env: &[(&str, &Path)]) -> Agent {
    let (script, log) = pinentry(tok, &tok.pin_file, delay_s);
    start_agent_script(tok, &script, log, top, agent_config, env)
}

/// An agent whose pinentry answers each token its own PIN: `answers` pairs a text the prompt's
/// description contains (the token's label) with the PIN to give.
pub fn start_agent_answering(tok: &Tok, agent_config: &str, answers: &[(&str, &str)]) -> Agent {
    let log = tok.path("pinentry.log");
    let cases: String =
        answers.iter().map(|(needle, pin)| format!("      *'{needle}'*) echo \"D {pin}\" ;;\n")).collect();
    let script = tok.write(
        "pinentry-by-token.sh",
        format!(
            "#!/bin/sh\necho 'OK Pleased to meet you'\ndesc=\nwhile read -r cmd rest; do\n  echo \"$cmd $rest\" >> '{log}'\n  case $cmd in\n    SETDESC) desc=$rest; echo OK ;;\n    GETPIN)\n      case $desc in\n{cases}      *) echo 'D none' ;;\n      esac\n      echo OK ;;\n    BYE) echo OK; exit 0 ;;\n    *) echo OK ;;\n  esac\ndone\n",
            log = log.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    start_agent_script(tok, &script, log, "", agent_config, &[])
}

/// An answer for `start_agent_answering` that is given only once `file` exists: a person who
/// has not finished typing.
pub fn answer_once_exists(file: &Path, pin: &str) -> String {
    format!("$(while [ ! -e '{}' ]; do sleep 0.02; done){pin}", file.display())
}

fn start_agent_script(
    tok: &Tok,
    script: &Path,
    log: PathBuf,
    top: &str,
    agent_config: &str,
    env: &[(&str, &Path)],
) -> Agent {
    let audit = tok.path("audit.log");
    let config = tok.write(
        "agent.toml",
        format!(
            "{top}pinentry_program = \"{}\"\n[agent]\naudit_log = \"{}\"\n{agent_config}",
            script.display(),
            audit.display()
        ),
    );
    let socket = tok.path("run/agent.sock");
    let mut cmd = tok.cmd();
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd
        .args(["agent", "--config"])
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .stderr(match std::env::var_os("SSMAX_TEST_AGENT_STDERR") {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap();
    wait_for(&socket);
    Agent { child, socket, audit, pinentry_log: log }
}

pub fn wait_for(socket: &Path) {
    let start = Instant::now();
    while UnixStream::connect(socket).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "agent did not start on {}", socket.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The CLI as a client of the agent.
pub fn via(tok: &Tok, agent: &Agent, args: &[&str]) -> std::process::Output {
    let mut c = tok.cmd();
    c.arg("--agent").arg("always").arg("--socket").arg(&agent.socket).args(args);
    run(&mut c)
}

// The wire format, written out here as a second implementation of docs/agent-protocol.md.
pub fn send_msg(s: &mut UnixStream, header: &serde_json::Value, body: &[u8]) {
    let h = serde_json::to_vec(header).unwrap();
    s.write_all(&(h.len() as u32).to_be_bytes()).unwrap();
    s.write_all(&h).unwrap();
    s.write_all(&(body.len() as u32).to_be_bytes()).unwrap();
    s.write_all(body).unwrap();
}

pub fn recv_msg(s: &mut UnixStream) -> std::io::Result<(serde_json::Value, Vec<u8>)> {
    let mut frame = || -> std::io::Result<Vec<u8>> {
        let mut len = [0u8; 4];
        s.read_exact(&mut len)?;
        let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut buf)?;
        Ok(buf)
    };
    let h = frame()?;
    let b = frame()?;
    Ok((serde_json::from_slice(&h).unwrap(), b))
}

pub fn sign_request(id: u64) -> serde_json::Value {
    serde_json::json!({"v": 1, "id": id, "method": "sign", "args": {}, "key": "pkcs11:id=%02", "timeout_ms": 120000, "client": {}})
}

pub fn getpins(agent: &Agent) -> usize {
    std::fs::read_to_string(&agent.pinentry_log)
        .map(|s| s.lines().filter(|l| l.starts_with("GETPIN")).count())
        .unwrap_or(0)
}

pub fn next_event(sub: &mut UnixStream, name: &str) -> serde_json::Value {
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    loop {
        let (ev, _) = recv_msg(sub).unwrap_or_else(|e| panic!("no '{name}' event: {e}"));
        if ev["event"] == name {
            return ev;
        }
    }
}

pub fn subscribe(agent: &Agent) -> UnixStream {
    let mut sub = UnixStream::connect(&agent.socket).unwrap();
    send_msg(&mut sub, &serde_json::json!({"v": 1, "id": 1, "method": "subscribe", "timeout_ms": 1000}), b"");
    assert_eq!(recv_msg(&mut sub).unwrap().0["ok"], true);
    sub
}

/// `audit verify` once the audit thread has written `entries` lines (it writes after answering).
pub fn audit_verified(tok: &Tok, agent: &Agent, entries: usize) -> std::process::Output {
    let start = Instant::now();
    loop {
        let o = run(tok.cmd().args(["audit", "verify", "--log"]).arg(&agent.audit));
        if stdout(&o).contains(&format!(": {entries} entries")) || start.elapsed() > Duration::from_secs(5) {
            return o;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `send_msg` with descriptors passed alongside (SCM_RIGHTS on the first byte), written with
/// plain libc as a second implementation of the protocol's "body_in_fd" / "reply_in_fd".
pub fn send_msg_with_fds(s: &mut UnixStream, header: &serde_json::Value, body: &[u8], fds: &[std::os::fd::RawFd]) {
    use std::os::fd::AsRawFd;
    let h = serde_json::to_vec(header).unwrap();
    let len = (h.len() as u32).to_be_bytes();
    let fd_bytes = std::mem::size_of_val(fds) as u32;
    // SAFETY: CMSG_SPACE/CMSG_LEN are arithmetic; the control buffer is sized by CMSG_SPACE and
    // aligned for cmsghdr (u64 words); every pointer handed to sendmsg points into live buffers.
    unsafe {
        let mut control = vec![0u64; (libc::CMSG_SPACE(fd_bytes) as usize).div_ceil(8)];
        let mut iov = libc::iovec { iov_base: len.as_ptr() as *mut libc::c_void, iov_len: 4 };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = libc::CMSG_SPACE(fd_bytes) as usize;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(fd_bytes) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c) as *mut std::os::fd::RawFd, fds.len());
        assert_eq!(libc::sendmsg(s.as_raw_fd(), &msg, 0), 4);
    }
    // The agent may refuse on the first four bytes (too many descriptors) and close before the
    // rest arrives; its answer is what the caller checks.
    let _ =
        s.write_all(&h).and_then(|()| s.write_all(&(body.len() as u32).to_be_bytes())).and_then(|()| s.write_all(body));
}
