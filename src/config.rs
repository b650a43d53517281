//! The config file: TOML at the platform config dir (`directories`), or `--config FILE`.

use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}: {reason}")]
    Invalid { file: String, line: usize, reason: String },
    #[error("config: {0}")]
    Read(#[from] crate::files::ReadError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PinSource {
    /// The terminal (rpassword); the default.
    #[default]
    Terminal,
    /// A pinentry program (Assuan), e.g. pinentry-gnome3 or pinentry-curses.
    Pinentry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    #[default]
    Pkcs1,
    Pss,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `pkcs11:` URI of the token (may carry `?module-path=`).
    pub token: Option<String>,
    /// `pkcs11:` URI of the signing key.
    pub key: Option<String>,
    #[serde(default)]
    pub pin_source: PinSource,
    pub pinentry_program: Option<PathBuf>,
    /// Extra trust anchors (PEM or DER files), added to the anchors on the token.
    #[serde(default)]
    pub anchors: Vec<PathBuf>,
    /// The organisation certificate (PEM/DER) when the token does not hold one.
    pub org_certificate: Option<PathBuf>,
    /// Directory of extra PKCS#11 profiles (*.toml).
    pub profiles_dir: Option<PathBuf>,
    /// RSA signature scheme for new signatures.
    #[serde(default)]
    pub rsa_signature: SignatureScheme,
    /// The agent's PIN cache, queue and audit log.
    #[serde(default)]
    pub agent: crate::agent::AgentConfig,
    /// The SMTP submission front door (`ssmax-card smtp serve`).
    #[serde(default)]
    pub smtp: crate::smtp::SmtpConfig,
}

pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("jp", "SSMAX", "ssmax-card").map(|d| d.config_dir().join("config.toml"))
}

/// Load `explicit` (must exist) or the default file (may be absent).
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, must_exist) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok(Config::default()),
        },
    };
    let file = path.display().to_string();
    let text = match crate::files::read_regular_text(&path, crate::files::MAX_TEXT_FILE) {
        Ok(t) => t,
        Err(e) if e.is_not_found() && !must_exist => return Ok(Config::default()),
        Err(e) => return Err(e.into()),
    };
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        line: e.span().map(|s| text.as_bytes().iter().take(s.start).filter(|&&b| b == b'\n').count() + 1).unwrap_or(1),
        file,
        reason: e.message().to_string(),
    })
}
