//! A module's calls in a process of their own (the agent's): a PKCS#11 module is untrusted C,
//! and its crash, abort or hang must cost the requests on it, never the agent, its socket, its
//! audit log or the PIN caches of tokens on other modules. The way gpg-agent keeps card drivers
//! in scdaemon: `ssmax-card module-worker MODULE` is the agent's child, one per module path,
//! started at the module's first use and again after it was lost (serve.rs); the agent speaks
//! to it through `remote::Remote`, a `calls::Library` like the in-process one. The PIN reaches
//! the worker only inside a C_Login call (it is the process that makes it); keys stay on the
//! token as ever.

pub mod remote;
pub mod serve;
pub mod wire;

use cryptoki::context::Function;
use std::time::Duration;

/// What became of a module's worker, for the request that saw it and the audit log.
#[derive(Debug, Clone)]
pub enum ModuleFault {
    /// It ended by itself during the call: killed by a signal (SIGSEGV, SIGABRT) or exited.
    Ended { during: Function, signal: Option<i32>, status: Option<i32> },
    /// The call did not come back within the limit (`token_timeout_ms`); the worker was stopped.
    Hung { during: Function, after: Duration },
    /// It answered with what is no answer to the call, or broke off without ending; stopped.
    Garbled { during: Function, what: String },
    /// It could not be started.
    Start(String),
}

impl ModuleFault {
    /// What happened, in words for the user.
    pub fn describe(&self) -> String {
        match self {
            ModuleFault::Ended { during, signal: Some(s), .. } => crate::tr!(
                "module-fault-signal",
                signal = signal_name(*s),
                function = crate::token::function_name(*during)
            ),
            ModuleFault::Ended { during, status, .. } => crate::tr!(
                "module-fault-exit",
                status = status.map(|c| c.to_string()).unwrap_or_else(|| "?".into()),
                function = crate::token::function_name(*during)
            ),
            ModuleFault::Hung { during, after } => crate::tr!(
                "module-fault-hung",
                function = crate::token::function_name(*during),
                ms = after.as_millis() as u64
            ),
            ModuleFault::Garbled { during, what } => crate::tr!(
                "module-fault-garbled",
                function = crate::token::function_name(*during),
                what = what.chars().take(120).collect::<String>()
            ),
            ModuleFault::Start(reason) => crate::tr!("module-fault-start", reason = reason),
        }
    }
}

/// SIGSEGV, SIGABRT, … as people know them.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGSYS => "SIGSYS",
        libc::SIGTRAP => "SIGTRAP",
        _ => return format!("signal {signal}"),
    };
    name.into()
}
