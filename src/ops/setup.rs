//! The settings an operation runs with: the config file, the PKCS#11 profiles, and which token
//! and key were named.

use crate::config::{self, Config};
use crate::error::Failure;
use crate::profile::{self, Profile};
use crate::token::uri::Pkcs11Uri;
use std::path::Path;

#[derive(Clone)]
pub struct Setup {
    pub config: Config,
    /// Shared, not copied: the agent builds a Setup per request.
    pub profiles: std::sync::Arc<Vec<Profile>>,
    pub token_uri: Pkcs11Uri,
    pub key_uri: Option<Pkcs11Uri>,
}

impl Setup {
    /// Load `config_path` (or the default config), the profiles it points to, and the token and
    /// key URIs: what is named here wins; the config fills in the rest (e.g. module-path).
    pub fn load(config_path: Option<&Path>, token: Option<&str>, key: Option<&str>) -> Result<Setup, Failure> {
        let config = config::load(config_path)?;
        let profiles = std::sync::Arc::new(profile::load_all(config.profiles_dir.as_deref())?);
        let from_config = config.token.as_deref().map(Pkcs11Uri::parse).transpose()?.unwrap_or_default();
        let named = token.map(Pkcs11Uri::parse).transpose()?.unwrap_or_default();
        let key_named = key.map(Pkcs11Uri::parse).transpose()?;
        let key_configured = config.key.as_deref().map(Pkcs11Uri::parse).transpose()?;
        // A key URI that names its token selects that token; one that contradicts --token is an
        // error. The config's key counts only when --token names nothing itself.
        let named = match (&key_named, &key_configured, token) {
            (Some(k), _, _) => named.with_token_of(k)?,
            (None, Some(k), None) => named.with_token_of(k)?,
            _ => named,
        };
        let token_uri = named.or(&from_config);
        Ok(Setup { config, profiles, token_uri, key_uri: key_named.or(key_configured) })
    }
}
