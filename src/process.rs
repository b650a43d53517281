//! What the process as a whole does with signals and core files.
//!
//! One-shot commands behave like other Unix filters: a closed output pipe ends them quietly
//! (`ssmax-card verify … | head`). A server must not: a client that sends a request and goes
//! away before reading the answer would otherwise kill the agent or the SMTP front door for
//! everyone (SIGPIPE, exit 141). Servers ignore SIGPIPE, so such a write fails with EPIPE and
//! ends that one connection.

/// A PIN passes through this process's memory: keep it out of core files and away from
/// same-user debuggers; a closed pipe ends a one-shot command quietly.
pub fn harden() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on our own process with constant arguments.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// For long-running servers (agent, SMTP front door): a peer that vanishes costs its own
/// connection only; writes to it fail with EPIPE instead of killing the process.
pub fn survive_vanished_peers() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler and touches no
    // memory; it is process-wide, which is what a server wants.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}
