//! ssmax-card: the user-side half of SSMAX. Parses arguments and dispatches; nothing else.

use clap::Parser;
use ssmax_card::{cli, error};
use std::process::ExitCode;

fn main() -> ExitCode {
    harden_process();
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { error::Exit::Usage as u8 } else { 0 });
        }
    };
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("ssmax-card: {}", f.message);
            ExitCode::from(f.exit as u8)
        }
    }
}

/// A PIN passes through this process's memory: keep it out of core files and away from
/// same-user debuggers.
fn harden_process() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain syscalls on our own process with constant arguments.
    unsafe {
        // Like other Unix filters: a closed pipe ends us quietly instead of a write error panic.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let zero = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::setrlimit(libc::RLIMIT_CORE, &zero);
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}
