//! PKCS#11 profiles: one TOML file per token kind, so that supporting a new token is a data change.
//!
//! The profiles shipped in `pkcs11-profiles/` are compiled in; a directory of extra profiles
//! (config `profiles_dir`) adds to or replaces them by name.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{file}:{line}: {reason}")]
    Invalid { file: String, line: usize, reason: String },
    #[error("{}", crate::tr!("profile-unreadable", file = .file, error = .source.to_string()))]
    Io { file: String, source: std::io::Error },
    #[error(transparent)]
    Read(#[from] crate::files::ReadError),
}

const BUILTIN: &[(&str, &str)] = &[
    ("softhsm2.toml", include_str!("../pkcs11-profiles/softhsm2.toml")),
    ("opensc-piv.toml", include_str!("../pkcs11-profiles/opensc-piv.toml")),
    ("yubikey.toml", include_str!("../pkcs11-profiles/yubikey.toml")),
    ("jpki.toml", include_str!("../pkcs11-profiles/jpki.toml")),
    ("opensc-generic.toml", include_str!("../pkcs11-profiles/opensc-generic.toml")),
];

/// Mechanism names a profile may list; anything else is a typo and is rejected.
const MECHANISMS: &[&str] = &["RSA_PKCS", "RSA_PKCS_PSS", "RSA_X_509", "RSA_PKCS_OAEP", "ECDSA", "ECDH1_DERIVE"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub description: String,
    pub module: ModulePaths,
    #[serde(rename = "match")]
    pub matcher: Matcher,
    pub keys: KeyRoles,
    pub mechanisms: Mechanisms,
    pub pin: PinRules,
    pub presence: Presence,
    #[serde(skip)]
    pub source: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulePaths {
    #[serde(default)]
    pub linux: Vec<PathBuf>,
    #[serde(default)]
    pub macos: Vec<PathBuf>,
    #[serde(default)]
    pub windows: Vec<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    /// Token labels this profile accepts; empty accepts any label.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Tokens of this kind with these labels are not for mail: no profile claims them.
    #[serde(default)]
    pub ignore_labels: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRoles {
    /// CKA_IDs (hex) of keys used for signing; empty means any key allowed to sign.
    #[serde(default)]
    pub signing_key_ids: Vec<Spanned<String>>,
    /// CKA_IDs (hex) of keys tried for decryption; empty means any key allowed to decrypt.
    #[serde(default)]
    pub decryption_key_ids: Vec<Spanned<String>>,
    pub can_decrypt: bool,
    /// Shown to the user when `can_decrypt` is false.
    #[serde(default)]
    pub no_decrypt_reason: Option<String>,
    /// The signing certificate identifies a person, not a mailbox (My Number card): what it
    /// discloses. A plain `sign` with it needs the user's confirmation; SSMAX `send` does not,
    /// since the organisation replaces the signature and binds the From address itself.
    #[serde(default)]
    pub personal_certificate: Option<String>,
    /// Whether `ssmax-card keygen` may create key pairs on this token with the user PIN.
    #[serde(default = "yes")]
    pub can_generate: bool,
    /// Shown to the user when `can_generate` is false.
    #[serde(default)]
    pub no_generate_reason: Option<String>,
    /// Certificates that are only readable after login (JPKI signature certificate).
    #[serde(default)]
    pub certificates_need_login: bool,
    /// Certificate objects whose label starts with this are trust anchors (SSMAX root, org certificates).
    #[serde(default)]
    pub anchor_label_prefix: Option<String>,
    /// Certificate objects whose label starts with this are the user's organisation certificate
    /// (SSMAX: attachments are encrypted to it; its signature is the one a recipient trusts).
    #[serde(default)]
    pub org_label_prefix: Option<String>,
    /// Certificate objects with these CKA_IDs (hex) are trust anchors.
    #[serde(default)]
    pub anchor_ids: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mechanisms {
    pub sign: Vec<Spanned<String>>,
    pub decrypt: Vec<Spanned<String>>,
    /// Hashes the token accepts inside CKM_RSA_PKCS_OAEP; other OAEP hashes go through raw RSA.
    #[serde(default)]
    pub oaep_hashes: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Charset {
    Any,
    Digits,
    UpperAlnum,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Normalise {
    None,
    Uppercase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlwaysAuthenticate {
    /// Read CKA_ALWAYS_AUTHENTICATE from each key.
    PerKey,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PinRules {
    pub min_length: Spanned<usize>,
    pub max_length: usize,
    pub charset: Charset,
    #[serde(default)]
    pub mix_letters_and_digits: bool,
    pub normalise: Normalise,
    /// Tries before the PIN locks; 0 when the token never locks.
    pub max_tries: u32,
    /// Whether the token reports COUNT_LOW / FINAL_TRY / LOCKED.
    pub reports_retry_flags: bool,
    pub always_authenticate: AlwaysAuthenticate,
    /// How long the agent keeps this token's PIN (the config's `[agent] pin_cache` overrides it).
    #[serde(default)]
    pub cache: Option<PinCache>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PresenceMethod {
    /// Poll C_GetSlotList / C_GetSlotInfo; re-initialise the module to see re-created tokens.
    Pkcs11Poll,
    /// Watch the reader with SCardGetStatusChange.
    Pcsc,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Presence {
    pub method: PresenceMethod,
    /// The module only sees tokens created after C_Initialize if it is re-initialised.
    #[serde(default)]
    pub reinitialise_to_rescan: bool,
}

impl Profile {
    pub fn module_paths(&self) -> &[PathBuf] {
        if cfg!(target_os = "macos") {
            &self.module.macos
        } else if cfg!(windows) {
            &self.module.windows
        } else {
            &self.module.linux
        }
    }

    pub fn matches(&self, label: &str, manufacturer: &str, model: &str) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have.trim_end());
        eq(&self.matcher.manufacturer, manufacturer)
            && eq(&self.matcher.model, model)
            && (self.matcher.labels.is_empty() || self.matcher.labels.iter().any(|l| l == label.trim_end()))
    }

    /// This profile knows the token and says it is not for mail (JPKI's authentication slot).
    pub fn ignores(&self, label: &str, manufacturer: &str, model: &str) -> bool {
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have.trim_end());
        eq(&self.matcher.manufacturer, manufacturer)
            && eq(&self.matcher.model, model)
            && self.matcher.ignore_labels.iter().any(|l| l == label.trim_end())
    }

    pub fn allows_sign(&self, mech: &str) -> bool {
        self.mechanisms.sign.iter().any(|m| m.get_ref() == mech)
    }

    pub fn allows_decrypt(&self, mech: &str) -> bool {
        self.mechanisms.decrypt.iter().any(|m| m.get_ref() == mech)
    }

    pub fn oaep_hash_on_token(&self, hash: &str) -> bool {
        self.mechanisms.oaep_hashes.iter().any(|h| h.get_ref() == hash)
    }

    pub fn signing_ids(&self) -> Vec<Vec<u8>> {
        hex_ids(&self.keys.signing_key_ids)
    }

    pub fn decryption_ids(&self) -> Vec<Vec<u8>> {
        hex_ids(&self.keys.decryption_key_ids)
    }

    pub fn is_org(&self, label: &str) -> bool {
        self.keys.org_label_prefix.as_deref().is_some_and(|p| !p.is_empty() && label.starts_with(p))
    }

    pub fn is_anchor(&self, label: &str, id: &[u8]) -> bool {
        self.keys.anchor_label_prefix.as_deref().is_some_and(|p| !p.is_empty() && label.starts_with(p))
            || hex_ids(&self.keys.anchor_ids).iter().any(|a| a == id)
    }

    /// Parse and validate one profile; errors name the file and line.
    pub fn parse(file: &str, text: &str) -> Result<Profile, ProfileError> {
        let invalid = |span: Option<std::ops::Range<usize>>, reason: String| ProfileError::Invalid {
            file: file.to_string(),
            line: span.map(|s| line_of(text, s.start)).unwrap_or(1),
            reason,
        };
        let mut p: Profile = toml::from_str(text).map_err(|e| invalid(e.span(), e.message().to_string()))?;
        p.source = file.to_string();
        for m in p.mechanisms.sign.iter().chain(&p.mechanisms.decrypt) {
            if !MECHANISMS.contains(&m.get_ref().as_str()) {
                return Err(invalid(
                    Some(m.span()),
                    format!("unknown mechanism '{}' (known: {})", m.get_ref(), MECHANISMS.join(", ")),
                ));
            }
        }
        for h in &p.mechanisms.oaep_hashes {
            if !["SHA1", "SHA256", "SHA384", "SHA512"].contains(&h.get_ref().as_str()) {
                return Err(invalid(Some(h.span()), format!("unknown OAEP hash '{}'", h.get_ref())));
            }
        }
        for id in p.keys.signing_key_ids.iter().chain(&p.keys.decryption_key_ids).chain(&p.keys.anchor_ids) {
            if parse_hex(id.get_ref()).is_none() {
                return Err(invalid(Some(id.span()), format!("'{}' is not a hex CKA_ID", id.get_ref())));
            }
        }
        if *p.pin.min_length.get_ref() == 0 || *p.pin.min_length.get_ref() > p.pin.max_length {
            return Err(invalid(
                Some(p.pin.min_length.span()),
                "pin.min_length must be between 1 and pin.max_length".into(),
            ));
        }
        if !p.keys.can_generate && p.keys.no_generate_reason.is_none() {
            return Err(invalid(
                None,
                "keys.can_generate = false needs keys.no_generate_reason to tell the user why".into(),
            ));
        }
        if !p.keys.can_decrypt && p.keys.no_decrypt_reason.is_none() {
            return Err(invalid(
                None,
                "keys.can_decrypt = false needs keys.no_decrypt_reason to tell the user why".into(),
            ));
        }
        if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid(
                None,
                format!("name '{}' must be non-empty letters, digits and '-'", crate::l10n::escaped(&p.name)),
            ));
        }
        Ok(p)
    }
}

/// The compiled-in profiles plus any in `extra_dir` (same name replaces a built-in one).
pub fn load_all(extra_dir: Option<&Path>) -> Result<Vec<Profile>, ProfileError> {
    let mut profiles = Vec::new();
    for (file, text) in BUILTIN {
        profiles.push(Profile::parse(&format!("pkcs11-profiles/{file}"), text)?);
    }
    if let Some(dir) = extra_dir {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(profiles),
            Err(source) => return Err(ProfileError::Io { file: dir.display().to_string(), source }),
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let file = path.display().to_string();
            let text = crate::files::read_regular_text(&path, crate::files::MAX_TEXT_FILE)?;
            let p = Profile::parse(&file, &text)?;
            profiles.retain(|q| q.name != p.name);
            profiles.push(p);
        }
    }
    Ok(profiles)
}

fn yes() -> bool {
    true
}

fn hex_ids(ids: &[Spanned<String>]) -> Vec<Vec<u8>> {
    ids.iter().filter_map(|s| parse_hex(s.get_ref())).collect()
}

pub fn parse_hex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok())).collect()
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

/// The profile for a token: one that lists this module and matches, else one that matches by
/// manufacturer/model alone (for a module given by path).
pub fn match_profile<'p>(
    profiles: &'p [Profile],
    module: &Path,
    label: &str,
    manufacturer: &str,
    model: &str,
) -> Option<&'p Profile> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let module = canon(module);
    if profiles.iter().any(|p| p.ignores(label, manufacturer, model)) {
        return None;
    }
    let fits = |p: &&Profile| p.matches(label, manufacturer, model);
    profiles.iter().filter(fits).find(|p| p.module_paths().iter().any(|m| canon(m) == module)).or_else(|| {
        profiles.iter().filter(fits).find(|p| p.matcher.manufacturer.is_some() || p.matcher.model.is_some())
    })
}

/// How long a PIN (and the login it opened) is kept after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PinCache {
    /// Ask every time (default: a signature is a deliberate act).
    #[default]
    None,
    /// Keep for `pin_cache_seconds` after the PIN was entered.
    Ttl,
    /// Keep until the token is removed or the agent stops.
    UntilRemoved,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_profiles_all_parse() {
        let all = load_all(None).unwrap();
        let names: Vec<_> = all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["softhsm2", "opensc-piv", "yubikey", "jpki", "opensc-generic"]);
    }

    #[test]
    fn jpki_profile_says_its_key_cannot_decrypt() {
        let all = load_all(None).unwrap();
        let jpki = all.iter().find(|p| p.name == "jpki").unwrap();
        assert!(!jpki.keys.can_decrypt);
        assert!(jpki.keys.no_decrypt_reason.as_deref().unwrap().contains("decrypt"));
        assert_eq!(jpki.pin.normalise, Normalise::Uppercase);
    }

    #[test]
    fn jpki_authentication_slot_is_claimed_by_no_profile() {
        let all = load_all(None).unwrap();
        let m = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so".as_ref();
        let sig = match_profile(&all, m, "JPKI (Digital Signature PIN)", "JPKI", "PKCS#15 emulated");
        assert_eq!(sig.map(|p| p.name.as_str()), Some("jpki"));
        assert!(match_profile(&all, m, "JPKI (User Authentication PIN)", "JPKI", "PKCS#15 emulated").is_none());
        let piv = match_profile(&all, m, "Taro Yamada", "piv_II", "PKCS#15 emulated");
        assert_eq!(piv.map(|p| p.name.as_str()), Some("opensc-piv"));
        let other = match_profile(&all, m, "CardOS", "Atos", "CardOS M5");
        assert_eq!(other.map(|p| p.name.as_str()), Some("opensc-generic"));
    }

    #[test]
    fn malformed_profile_is_rejected_with_file_line_and_reason() {
        let good = BUILTIN[0].1;
        let bad = good.replacen("sign = [", "sign = [\"RSA_PKCS_TYPO\", ", 1);
        let line = bad.lines().position(|l| l.contains("RSA_PKCS_TYPO")).unwrap() + 1;
        let err = Profile::parse("x.toml", &bad).unwrap_err().to_string();
        assert_eq!(err, format!("x.toml:{line}: unknown mechanism 'RSA_PKCS_TYPO' (known: {})", MECHANISMS.join(", ")));

        let bad = good.replacen("[pin]", "[pin]\ncolour = \"red\"", 1);
        let err = Profile::parse("y.toml", &bad).unwrap_err().to_string();
        assert!(err.starts_with("y.toml:"), "{err}");
        assert!(err.contains("colour"), "{err}");
    }
}
