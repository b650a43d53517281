//! The CLI edge: every error becomes one clear line and a documented exit code.

use crate::cms::CmsError;
use crate::config::ConfigError;
use crate::mail::MailError;
use crate::profile::ProfileError;
use crate::token::uri::UriError;
use crate::token::TokenError;

/// Exit codes, as documented in README.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    VerificationFailed = 1,
    Usage = 2,
    TokenNotPresent = 3,
    WrongPin = 4,
    PinLocked = 5,
    NoKey = 6,
    AgentUnreachable = 7,
    Io = 8,
    Busy = 9,
}

impl Exit {
    /// A failure about the card, the person or the agent, not about what was asked: worth
    /// trying again later.
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            Exit::TokenNotPresent | Exit::WrongPin | Exit::PinLocked | Exit::AgentUnreachable | Exit::Io | Exit::Busy
        )
    }

    /// The code an agent reported, back into the enum (unknown codes become I/O failures).
    pub fn from_code(code: u8) -> Exit {
        match code {
            1 => Exit::VerificationFailed,
            2 => Exit::Usage,
            3 => Exit::TokenNotPresent,
            4 => Exit::WrongPin,
            5 => Exit::PinLocked,
            6 => Exit::NoKey,
            7 => Exit::AgentUnreachable,
            9 => Exit::Busy,
            _ => Exit::Io,
        }
    }
}

#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Failure { exit, message: message.into() }
    }
}

impl From<TokenError> for Failure {
    fn from(e: TokenError) -> Self {
        let exit = match &e {
            TokenError::ModuleLoad { .. } | TokenError::NotPresent(_) => Exit::TokenNotPresent,
            TokenError::Pkcs11 { .. } if e.is_not_present() => Exit::TokenNotPresent,
            TokenError::Pkcs11 { .. }
            | TokenError::Library(_)
            | TokenError::BadAnswer { .. }
            | TokenError::ModuleFailed { .. } => Exit::Io,
            TokenError::WrongPin { .. } | TokenError::PinRules { .. } | TokenError::NoPinSource(_) => Exit::WrongPin,
            TokenError::PinLocked(_) | TokenError::FinalTryRefused(_) => Exit::PinLocked,
            TokenError::NoKey(_) => Exit::NoKey,
            TokenError::Ambiguous(_) => Exit::Usage,
        };
        Failure::new(exit, e.to_string())
    }
}

impl From<CmsError> for Failure {
    fn from(e: CmsError) -> Self {
        match e {
            CmsError::Key(k) => match k.downcast::<TokenError>() {
                Ok(t) => (*t).into(),
                Err(other) => Failure::new(Exit::Io, other.to_string()),
            },
            CmsError::Malformed(_) | CmsError::Unsupported(_) => Failure::new(Exit::Usage, e.to_string()),
            CmsError::Verify(_) | CmsError::Decrypt(_) => Failure::new(Exit::VerificationFailed, e.to_string()),
            CmsError::NoKey(_) | CmsError::CannotDecrypt(_) => Failure::new(Exit::NoKey, e.to_string()),
            CmsError::Read(r) => r.into(),
        }
    }
}

impl From<crate::files::ReadError> for Failure {
    fn from(e: crate::files::ReadError) -> Self {
        Failure::new(if e.is_usage() { Exit::Usage } else { Exit::Io }, e.to_string())
    }
}

impl From<MailError> for Failure {
    fn from(e: MailError) -> Self {
        Failure::new(Exit::Usage, e.to_string())
    }
}

impl From<ProfileError> for Failure {
    fn from(e: ProfileError) -> Self {
        Failure::new(Exit::Usage, crate::tr!("bad-profile", error = e.to_string()))
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Self {
        Failure::new(Exit::Usage, crate::tr!("bad-config", error = e.to_string()))
    }
}

impl From<UriError> for Failure {
    fn from(e: UriError) -> Self {
        Failure::new(Exit::Usage, e.to_string())
    }
}
