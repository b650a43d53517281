//! Where a PIN comes from and the rules around it. A PIN lives in a `SecretString` (zeroized on
//! drop) from the moment it is read until the token has it; it is never formatted or logged.

use super::{PinFlags, TokenError};
use crate::profile::{Charset, Normalise, PinRules, Profile};
use secrecy::{ExposeSecret, SecretString};
use std::io::Read;
use std::path::PathBuf;
use zeroize::{Zeroize, Zeroizing};

/// What the prompt shows the user, so they know which card and which operation.
pub struct PinRequest<'a> {
    pub token: &'a str,
    pub operation: &'a str,
    pub rules: &'a PinRules,
}

/// A source of PINs; the CLI and the agent share the core through this.
pub trait PinPrompt {
    fn ask(&self, request: &PinRequest<'_>) -> Result<SecretString, TokenError>;
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
            return Err(TokenError::NoPinSource("the PIN from --pin-fd was already used once".into()));
        }
        secret_from_fd(self.fd, "--pin-fd", "PIN").map_err(TokenError::NoPinSource)
    }
}

/// The first line of an already-open descriptor, as a secret: the PIN (`--pin-fd`) or another
/// password handed over the same way (`flag` and `what` name it in errors). At most 1024 bytes;
/// a non-blocking descriptor is waited on for up to 2 minutes; the buffer is wiped.
pub fn secret_from_fd(fd: i32, flag: &str, what: &str) -> Result<SecretString, String> {
    if fd == 1 || fd == 2 || fd < 0 {
        return Err(format!("{flag} {fd} is not readable for a {what}"));
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
            return Err(format!("{flag} {fd} gave more than {MAX_PIN_BYTES} bytes"));
        }
        buf[end..].zeroize();
        buf.truncate(end);
        if buf.is_empty() {
            return Err(format!("{flag} {fd} gave an empty {what}"));
        }
        let s = String::from_utf8(std::mem::take(&mut *buf)).map_err(|e| {
            let mut v = e.into_bytes();
            v.zeroize();
            format!("the {what} from {flag} {fd} is not UTF-8")
        })?;
        Ok(SecretString::from(s))
    }
    #[cfg(not(unix))]
    Err(format!("{flag} is only available on Unix"))
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
                return Err(format!("no PIN line arrived on {flag} {fd} within {} minutes", PIN_FD_WAIT.as_secs() / 60))
            }
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(format!("cannot wait for {flag} {fd}: {e}")),
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
            Err(e) => return Err(format!("cannot read {flag} {fd}: {e}")),
        }
    }
}

/// How long `--pin-fd` (and `--password-fd`) waits for its first line (README: limits).
const PIN_FD_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The controlling terminal, echo off (rpassword).
pub struct TtyPin;

impl PinPrompt for TtyPin {
    fn ask(&self, request: &PinRequest<'_>) -> Result<SecretString, TokenError> {
        let prompt = format!("PIN for '{}' ({}): ", request.token, request.operation);
        let s = rpassword::prompt_password(prompt).map_err(|e| {
            TokenError::NoPinSource(format!("no terminal to ask on ({e}); configure pinentry or pass --pin-fd N"))
        })?;
        Ok(SecretString::from(s))
    }
}

/// A pinentry program (the Assuan ones users already have for GnuPG).
pub struct PinentryPin {
    pub program: Option<PathBuf>,
    /// Where the user is, when the prompt comes from the agent on a client's behalf.
    pub client: Option<crate::agent::protocol::ClientEnv>,
}

impl PinentryPin {
    pub fn for_client(program: Option<PathBuf>, client: crate::agent::protocol::ClientEnv) -> Self {
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
            return Err(TokenError::NoPinSource("pinentry is configured but no pinentry program was found".into()));
        };
        let r = request.rules;
        let description = format!(
            "Enter the PIN of token \"{}\" to {} ({} to {} characters).",
            request.token,
            request.operation,
            r.min_length.get_ref(),
            r.max_length
        );
        input.with_title("ssmax-card").with_description(&description).with_prompt("PIN:").required("A PIN is required");
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

/// Refuse before `C_Login` when the token says a try would lock it or it is locked already.
/// Returns a warning to show when tries are running low.
pub fn check_flags(token: &str, flags: PinFlags, allow_final_try: bool) -> Result<Option<String>, TokenError> {
    if flags.locked {
        return Err(TokenError::PinLocked(token.to_string()));
    }
    if flags.final_try {
        if !allow_final_try {
            return Err(TokenError::FinalTryRefused(token.to_string()));
        }
        return Ok(Some(format!("token '{token}' has one PIN try left; a wrong PIN now locks it")));
    }
    if flags.count_low {
        return Ok(Some(format!("token '{token}' reports an earlier wrong PIN: tries may be running low")));
    }
    Ok(None)
}

/// The remaining-tries sentence for a wrong-PIN error, from the flags read after the failure.
pub fn tries_left(after: Option<PinFlags>, profile: &Profile) -> String {
    match after {
        Some(f) if f.locked => "the PIN is now locked".into(),
        Some(f) if f.final_try => "one try left before it locks".into(),
        Some(f) if f.count_low && profile.pin.reports_retry_flags => "few tries left".into(),
        _ if profile.pin.max_tries == 0 => "this token does not count tries".into(),
        _ => "the token does not say how many tries are left".into(),
    }
}

/// Check length and charset before a try is spent, and normalise as the token's official
/// software does. The reason never contains the PIN.
pub fn apply_rules(rules: &PinRules, pin: SecretString) -> Result<SecretString, String> {
    let normalised = match rules.normalise {
        Normalise::None => pin,
        Normalise::Uppercase => {
            let upper = pin.expose_secret().to_ascii_uppercase();
            drop(pin);
            SecretString::from(upper)
        }
    };
    let s = normalised.expose_secret();
    let len = s.chars().count();
    let (min, max) = (*rules.min_length.get_ref(), rules.max_length);
    if len < min || len > max {
        return Err(format!("it must be {min} to {max} characters long, it has {len}"));
    }
    let ok = match rules.charset {
        Charset::Any => true,
        Charset::Digits => s.chars().all(|c| c.is_ascii_digit()),
        Charset::UpperAlnum => s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
    };
    if !ok {
        let what = match rules.charset {
            Charset::Digits => "digits only",
            _ => "letters A–Z and digits only",
        };
        return Err(format!("it must contain {what}"));
    }
    if rules.mix_letters_and_digits
        && !(s.chars().any(|c| c.is_ascii_digit()) && s.chars().any(|c| c.is_ascii_alphabetic()))
    {
        return Err("it must mix letters and digits".into());
    }
    Ok(normalised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::load_all;

    fn profile(name: &str) -> Profile {
        load_all(None).unwrap().into_iter().find(|p| p.name == name).unwrap()
    }

    #[test]
    fn locked_pin_is_refused_before_login() {
        let f = PinFlags { locked: true, ..Default::default() };
        assert!(matches!(check_flags("t", f, true), Err(TokenError::PinLocked(_))));
    }

    #[test]
    fn final_try_is_refused_unless_allowed() {
        let f = PinFlags { final_try: true, count_low: true, ..Default::default() };
        assert!(matches!(check_flags("t", f, false), Err(TokenError::FinalTryRefused(_))));
        assert!(check_flags("t", f, true).unwrap().unwrap().contains("one PIN try left"));
    }

    #[test]
    fn count_low_warns_but_proceeds() {
        let f = PinFlags { count_low: true, ..Default::default() };
        assert!(check_flags("t", f, false).unwrap().is_some());
        assert!(check_flags("t", PinFlags::default(), false).unwrap().is_none());
    }

    #[test]
    fn jpki_password_is_uppercased_and_checked_without_spending_a_try() {
        let p = profile("jpki");
        let pin = apply_rules(&p.pin, SecretString::from("abc123".to_string())).unwrap();
        assert_eq!(pin.expose_secret(), "ABC123");
        let e = apply_rules(&p.pin, SecretString::from("abcdef".to_string())).unwrap_err();
        assert!(e.contains("mix"), "{e}");
        let e = apply_rules(&p.pin, SecretString::from("ab-123".to_string())).unwrap_err();
        assert!(e.contains("A–Z"), "{e}");
        assert!(!e.contains("ab-123"));
    }

    #[test]
    fn piv_pin_length_and_digits_are_checked() {
        let p = profile("opensc-piv");
        assert!(apply_rules(&p.pin, SecretString::from("12345".to_string())).unwrap_err().contains("6 to 8"));
        assert!(apply_rules(&p.pin, SecretString::from("12345a".to_string())).unwrap_err().contains("digits"));
        assert!(apply_rules(&p.pin, SecretString::from("123456".to_string())).is_ok());
    }

    #[test]
    fn tries_left_reports_what_the_token_tells() {
        let p = profile("yubikey");
        assert_eq!(
            tries_left(Some(PinFlags { final_try: true, ..Default::default() }), &p),
            "one try left before it locks"
        );
        assert_eq!(tries_left(Some(PinFlags { locked: true, ..Default::default() }), &p), "the PIN is now locked");
        assert_eq!(tries_left(None, &profile("softhsm2")), "this token does not count tries");
    }
}
