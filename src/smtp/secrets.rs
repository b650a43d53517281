//! The two secrets of the front door, both in the OS keyring (Secret Service / kernel keyring on
//! Linux, Keychain on macOS, Credential Manager on Windows), never in a file: the relay account's
//! password, and the per-user secret local mail clients authenticate with.

use crate::error::{Exit, Failure};
use secrecy::{ExposeSecret, SecretString};

const SERVICE: &str = "ssmax-card smtp";

/// On Linux the keyring crate keeps entries in the kernel's keyrings: in the session keyring,
/// linked into the per-user persistent keyring that every process of the user can reach. A
/// process started without a login session (a systemd service, a container, CI) only borrows
/// the user-session keyring, which it may not write to (EACCES, reported by the crate as "no
/// entry"). Give such a process its own session keyring first; the persistent keyring still
/// carries the entries between processes.
#[cfg(target_os = "linux")]
fn ensure_session_keyring() {
    const KEYCTL_GET_KEYRING_ID: libc::c_long = 0;
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    const KEY_SPEC_SESSION_KEYRING: libc::c_long = -3;
    const KEY_SPEC_USER_SESSION_KEYRING: libc::c_long = -5;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: keyctl with integer arguments and a null name only reads or creates keyrings
        // of this process; no memory of ours is written.
        unsafe {
            let session = libc::syscall(libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0);
            let user_session = libc::syscall(libc::SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_SESSION_KEYRING, 0);
            if session < 0 || session == user_session {
                libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, std::ptr::null::<libc::c_char>());
            }
        }
    });
}

#[cfg(not(target_os = "linux"))]
fn ensure_session_keyring() {}

fn keyring_failure(what: &str, e: keyring::Error) -> Failure {
    Failure::new(Exit::Io, crate::tr!("keyring-failed", what = what, error = e.to_string()))
}

/// An account whose password the doors keep in the keyring.
#[derive(Clone, Copy)]
enum Account {
    /// The SMTP door's relay (`smtp set-relay-password`).
    Relay,
    /// The IMAP door's mail store (`imap set-upstream-password`).
    Upstream,
}

fn account_entry(kind: Account, host: &str, user: &str) -> Result<keyring::Entry, Failure> {
    ensure_session_keyring();
    let label = match kind {
        Account::Relay => format!("relay {user}@{host}"),
        Account::Upstream => format!("imap upstream {user}@{host}"),
    };
    keyring::Entry::new(SERVICE, &label).map_err(|e| keyring_failure(&crate::tr!("keyring-open-relay"), e))
}

fn account_password(kind: Account, host: &str, user: &str) -> Result<SecretString, Failure> {
    match account_entry(kind, host, user)?.get_password() {
        Ok(p) => Ok(SecretString::from(p)),
        Err(keyring::Error::NoEntry) => Err(Failure::new(
            Exit::Usage,
            match kind {
                Account::Relay => crate::tr!("keyring-no-relay-password", user = user, host = host),
                Account::Upstream => crate::tr!("keyring-no-upstream-password", user = user, host = host),
            },
        )),
        Err(e) => Err(keyring_failure(&crate::tr!("keyring-read-relay"), e)),
    }
}

fn store_account_password(kind: Account, host: &str, user: &str, password: &SecretString) -> Result<(), Failure> {
    account_entry(kind, host, user)?
        .set_password(password.expose_secret())
        .map_err(|e| keyring_failure(&crate::tr!("keyring-store-relay"), e))
}

pub fn relay_password(host: &str, user: &str) -> Result<SecretString, Failure> {
    account_password(Account::Relay, host, user)
}

pub fn upstream_password(host: &str, user: &str) -> Result<SecretString, Failure> {
    account_password(Account::Upstream, host, user)
}

pub fn store_upstream_password(host: &str, user: &str, password: &SecretString) -> Result<(), Failure> {
    store_account_password(Account::Upstream, host, user, password)
}

pub fn store_relay_password(host: &str, user: &str, password: &SecretString) -> Result<(), Failure> {
    store_account_password(Account::Relay, host, user, password)
}

fn client_entry(user: &str) -> Result<keyring::Entry, Failure> {
    ensure_session_keyring();
    keyring::Entry::new(SERVICE, &format!("client {user}"))
        .map_err(|e| keyring_failure(&crate::tr!("keyring-open-client"), e))
}

/// The key the IMAP door seals its cache with (32 random bytes, made the first time). A key
/// that is lost or renewed makes the cache unreadable, never readable by another key.
pub fn imap_cache_key(host: &str, user: &str) -> Result<zeroize::Zeroizing<[u8; 32]>, Failure> {
    ensure_session_keyring();
    let what = crate::tr!("imap-cache-key");
    let entry =
        keyring::Entry::new(SERVICE, &format!("imap cache {user}@{host}")).map_err(|e| keyring_failure(&what, e))?;
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    match entry.get_password() {
        Ok(hex) => {
            let hex = zeroize::Zeroizing::new(hex);
            if base16ct::lower::decode(hex.as_bytes(), key.as_mut()).is_ok_and(|k| k.len() == 32) {
                return Ok(key);
            }
        }
        Err(keyring::Error::NoEntry) => {}
        Err(e) => return Err(keyring_failure(&what, e)),
    }
    // None, or not a key: a new one (the old cache no longer opens, and is started anew).
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, key.as_mut());
    let hex = zeroize::Zeroizing::new(base16ct::lower::encode_string(key.as_ref()));
    entry.set_password(&hex).map_err(|e| keyring_failure(&what, e))?;
    Ok(key)
}

/// The keyring entry where the IMAP door marks how far its UIDs have gone (not a secret; kept
/// where whoever can write the cache directory cannot).
pub fn imap_cache_mark(host: &str, user: &str) -> Result<keyring::Entry, Failure> {
    ensure_session_keyring();
    keyring::Entry::new(SERVICE, &format!("imap cache mark {user}@{host}"))
        .map_err(|e| keyring_failure(&crate::tr!("imap-cache-key"), e))
}

/// 32 random bytes in hex. Not URL-safe base64: one such secret in 64 began with '-', which
/// command-line clients (swaks among them) take for an option.
fn new_client_secret() -> SecretString {
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, raw.as_mut());
    SecretString::from(base16ct::lower::encode_string(raw.as_ref()))
}

/// The secret local mail clients log in with; made (random, 32 bytes) the first time.
pub fn client_secret(user: &str, renew: bool) -> Result<SecretString, Failure> {
    let entry = client_entry(user)?;
    if !renew {
        match entry.get_password() {
            Ok(s) => return Ok(SecretString::from(s)),
            Err(keyring::Error::NoEntry) => {}
            Err(e) => return Err(keyring_failure(&crate::tr!("keyring-read-client"), e)),
        }
    }
    let secret = new_client_secret();
    entry.set_password(secret.expose_secret()).map_err(|e| keyring_failure(&crate::tr!("keyring-store-client"), e))?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_secrets_are_256_bit_hex_that_no_command_line_takes_for_an_option() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..2000 {
            let s = new_client_secret();
            let s = s.expose_secret();
            assert_eq!(s.len(), 64);
            assert!(s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{s}");
            assert!(seen.insert(s.to_string()), "a secret repeated");
        }
    }
}
