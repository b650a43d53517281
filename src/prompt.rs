//! The ways to ask a person for a PIN, each a `PinPrompt` (token/pin.rs) so the CLI and the
//! agent share the token logic: a descriptor the caller opened (`--pin-fd`), the terminal
//! (rpassword), and pinentry, on the display of the client the agent serves.

use crate::token::pin::{PinPrompt, PinRequest};
use crate::token::TokenError;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::PathBuf;
use zeroize::{Zeroize, Zeroizing};

/// What the client tells the agent about where the user is, so pinentry appears there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientEnv {
    pub tty: Option<String>,
    pub term: Option<String>,
    pub display: Option<String>,
    pub wayland_display: Option<String>,
    /// The language the client's messages are in (`en`, `ja`): the agent answers in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lang: Option<String>,
}

/// A file descriptor the caller opened for us (`--pin-fd N`): for automation and tests.
pub struct FdPin {
    fd: i32,
    used: std::cell::Cell<bool>,
}

impl FdPin {
    pub fn new(fd: i32) -> Self {
        FdPin { fd, used: std::cell::Cell::new(false) }
    }
}

/// Longest PIN we read; PKCS#11 tokens allow at most a few hundred bytes.
const MAX_PIN_BYTES: usize = 1024;

impl PinPrompt for FdPin {
    fn ask(&self, _request: &PinRequest<'_>) -> Result<SecretString, TokenError> {
        // One PIN per invocation: a second read would be an automatic retry.
        if self.used.replace(true) {
            return Err(TokenError::NoPinSource(crate::tr!("pin-fd-used")));
        }
        secret_from_fd(self.fd, "--pin-fd", &crate::tr!("secret-pin")).map_err(TokenError::NoPinSource)
    }
}

/// The first line of an already-open descriptor, as a secret: the PIN (`--pin-fd`) or another
/// password handed over the same way (`flag` and `what` name it in errors). At most 1024 bytes;
/// a non-blocking descriptor is waited on for up to 2 minutes; the buffer is wiped.
pub fn secret_from_fd(fd: i32, flag: &str, what: &str) -> Result<SecretString, String> {
    if fd == 1 || fd == 2 || fd < 0 {
        return Err(crate::tr!("secret-fd-unreadable", flag = flag, fd = fd, what = what));
    }
    #[cfg(unix)]
    {
        use std::os::fd::FromRawFd;
        // SAFETY: the caller handed us this descriptor for exactly this purpose; we own it from here.
        let file = unsafe { std::fs::File::from_raw_fd(fd) };
        let mut buf = Zeroizing::new(Vec::with_capacity(64));
        read_pin_bytes(file, fd, flag, &mut buf)?;
        // Only the first line is the secret; a trailing newline is not part of it.
        let end = buf.iter().position(|&b| b == b'\n' || b == b'\r').unwrap_or(buf.len());
        if end > MAX_PIN_BYTES {
            buf.zeroize();
            return Err(crate::tr!("secret-too-long", flag = flag, fd = fd, most = MAX_PIN_BYTES));
        }
        buf[end..].zeroize();
        buf.truncate(end);
        if buf.is_empty() {
            return Err(crate::tr!("secret-empty", flag = flag, fd = fd, what = what));
        }
        let s = String::from_utf8(std::mem::take(&mut *buf)).map_err(|e| {
            let mut v = e.into_bytes();
            v.zeroize();
            crate::tr!("secret-not-utf8", flag = flag, fd = fd, what = what)
        })?;
        Ok(SecretString::from(s))
    }
    #[cfg(not(unix))]
    Err(crate::tr!("secret-unix-only", flag = flag))
}

#[cfg(unix)]
/// Read up to the first newline (or end of file): a writer that keeps the descriptor open (a
/// password manager, a FIFO opened read-write) must not hold us until it closes. Every wait,
/// blocking descriptor or not, ends with the 2-minute deadline.
fn read_pin_bytes(mut file: std::fs::File, fd: i32, flag: &str, buf: &mut Vec<u8>) -> Result<(), String> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let deadline = std::time::Instant::now() + PIN_FD_WAIT;
    let mut chunk = Zeroizing::new([0u8; 256]);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) };
        let mut fds = [PollFd::new(&file, PollFlags::IN)];
        match poll(&mut fds, Some(&timeout)) {
            Ok(0) => {
                let minutes = PIN_FD_WAIT.as_secs() / 60;
                return Err(crate::tr!("secret-timed-out", flag = flag, fd = fd, minutes = minutes));
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(crate::tr!("secret-cannot-wait", flag = flag, fd = fd, error = e.to_string())),
        }
        match file.read(&mut chunk[..]) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') || buf.len() > MAX_PIN_BYTES {
                    return Ok(());
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock) => {}
            Err(e) => return Err(crate::tr!("secret-cannot-read", flag = flag, fd = fd, error = e.to_string())),
        }
    }
}

/// How long `--pin-fd` (and `--password-fd`) waits for its first line (README: limits).
const PIN_FD_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The controlling terminal, echo off (rpassword).
pub struct TtyPin;

impl PinPrompt for TtyPin {
    fn ask(&self, request: &PinRequest<'_>) -> Result<SecretString, TokenError> {
        let prompt = crate::tr!("pin-tty-prompt", token = request.token_shown(), operation = request.operation_shown());
        let s = rpassword::prompt_password(format!("{prompt} "))
            .map_err(|e| TokenError::NoPinSource(crate::tr!("pin-no-terminal", error = e.to_string())))?;
        Ok(SecretString::from(s))
    }
}

/// A pinentry program (the Assuan ones users already have for GnuPG).
pub struct PinentryPin {
    pub program: Option<PathBuf>,
    /// Where the user is, when the prompt comes from the agent on a client's behalf.
    pub client: Option<ClientEnv>,
}

impl PinentryPin {
    pub fn for_client(program: Option<PathBuf>, client: ClientEnv) -> Self {
        PinentryPin { program, client: Some(client) }
    }
}

impl PinPrompt for PinentryPin {
    fn ask(&self, request: &PinRequest<'_>) -> Result<SecretString, TokenError> {
        let input = match &self.program {
            Some(p) => pinentry::PassphraseInput::with_binary(p),
            None => pinentry::PassphraseInput::with_default_binary(),
        };
        let Some(mut input) = input else {
            return Err(TokenError::NoPinSource(crate::tr!("pin-no-pinentry")));
        };
        let r = request.rules;
        let description = crate::tr!(
            "pin-entry-description",
            token = request.token_shown(),
            operation = request.operation_shown(),
            min = *r.min_length.get_ref(),
            max = r.max_length
        );
        let required = crate::tr!("pin-entry-required");
        input.with_title("ssmax-card").with_description(&description).with_prompt("PIN:").required(&required);
        if let Some(c) = &self.client {
            let mut o = pinentry::unix::Options::builder();
            if let Some(t) = c.tty.as_deref() {
                o = o.tty_name(t);
            }
            if let Some(t) = c.term.as_deref() {
                o = o.tty_type(t);
            }
            if let Some(d) = c.display.as_deref() {
                o = o.x11_display(d);
            }
            if let Some(d) = c.wayland_display.as_deref() {
                o = o.wayland_display(d);
            }
            input.with_unix_options(o.build());
        }
        input.interact().map_err(|e| TokenError::NoPinSource(format!("pinentry: {e}")))
    }
}
