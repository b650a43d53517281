//! The only place that talks to PKCS#11 modules. Everything above sees `Token`, `TokenError`
//! and the RustCrypto `Signer` in `signer.rs`.

pub mod attestation;
pub mod calls;
pub mod decrypt;
pub mod floor;
pub mod keys;
pub mod objects;
pub mod pin;
pub mod presence;
pub mod raw;
pub mod signer;
pub mod uri;
pub mod worker;

use crate::profile::Profile;
use calls::{InProcess, Library, SessionCalls};
use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::slot::Slot;
use pin::{PinPrompt, PinRequest};
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use uri::Pkcs11Uri;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{}", crate::tr!("token-module-load", path = .path, reason = .reason))]
    ModuleLoad { path: PathBuf, reason: String },
    /// A PKCS#11 call the token refused, as cryptoki names it: decisions match on `rv`.
    #[error("{}", pkcs11_failure(*.function, *.rv))]
    Pkcs11 { function: Function, rv: RvError },
    /// The PKCS#11 library failed outside a return value (cryptoki's own checks, a bad pointer).
    #[error("PKCS#11: {0}")]
    Library(String),
    /// The token answered, but not with what PKCS#11 promises (an ECDSA signature of the wrong size).
    #[error("{}", crate::tr!("token-bad-answer", function = .function, what = .what))]
    BadAnswer { function: &'static str, what: String },
    #[error("{0}")]
    NotPresent(String),
    #[error("{}", crate::tr!("token-wrong-pin", token = .token, tries = .tries))]
    WrongPin { token: String, tries: String },
    #[error("{}", crate::tr!("token-pin-locked", token = .0))]
    PinLocked(String),
    #[error("{}", crate::tr!("token-final-try-refused", token = .0))]
    FinalTryRefused(String),
    #[error("{}", crate::tr!("token-pin-rules", token = .token, reason = .reason))]
    PinRules { token: String, reason: String },
    #[error("{}", crate::tr!("token-no-pin-source", reason = .0))]
    NoPinSource(String),
    #[error("{0}")]
    NoKey(String),
    #[error("{0}")]
    Ambiguous(String),
    /// The module's worker process crashed, hung or broke off (the agent runs each module in one).
    #[error("{}", crate::tr!("token-module-failed", module = .module, what = .fault.describe()))]
    ModuleFailed { module: PathBuf, fault: worker::ModuleFault },
}

impl TokenError {
    /// Map a cryptoki error to one that names the PKCS#11 function and CKR code.
    pub fn ck(e: CkError) -> Self {
        match e {
            CkError::Pkcs11(rv, function) => TokenError::Pkcs11 { function, rv },
            other => TokenError::Library(other.to_string()),
        }
    }

    pub fn is_not_present(&self) -> bool {
        match self {
            TokenError::NotPresent(_) => true,
            TokenError::Pkcs11 { rv, .. } => {
                matches!(rv, RvError::TokenNotPresent | RvError::DeviceRemoved | RvError::SessionHandleInvalid)
            }
            _ => false,
        }
    }
}

impl From<TokenError> for crate::cms::CmsError {
    fn from(e: TokenError) -> Self {
        crate::cms::CmsError::Key(Box::new(e))
    }
}

/// `C_Sign failed: CKR_…`, and what a user can do about it when there is something.
fn pkcs11_failure(function: Function, rv: RvError) -> String {
    let (function, code) = (function_name(function), ckr_name(rv));
    match rv {
        RvError::TokenNotPresent | RvError::DeviceRemoved => {
            crate::tr!("token-removed", function = function, code = code)
        }
        RvError::SessionHandleInvalid | RvError::SessionClosed => {
            crate::tr!("token-session-closed", function = function, code = code)
        }
        RvError::UserNotLoggedIn => crate::tr!("token-logged-out", function = function, code = code),
        RvError::MechanismInvalid | RvError::MechanismParamInvalid => {
            crate::tr!("token-mechanism-unsupported", function = function, code = code)
        }
        _ => crate::tr!("token-call-failed", function = function, code = code),
    }
}

pub(crate) fn function_name(f: Function) -> String {
    format!("C_{f:?}")
}

/// `PinIncorrect` → `CKR_PIN_INCORRECT`, the name every PKCS#11 document uses.
pub(crate) fn ckr_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

type Result<T> = std::result::Result<T, TokenError>;

/// How long the PIN flags read while finding a token stand for a fresh read.
const FOUND_FLAGS_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// The token's PIN state as CK_TOKEN_INFO flags report it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PinFlags {
    pub count_low: bool,
    pub final_try: bool,
    pub locked: bool,
}

impl PinFlags {
    pub fn describe(&self, profile: Option<&Profile>) -> String {
        if self.locked {
            crate::tr!("pin-state-locked")
        } else if self.final_try {
            crate::tr!("pin-state-final-try")
        } else if self.count_low {
            match profile.filter(|p| p.pin.reports_retry_flags) {
                Some(_) => crate::tr!("pin-state-low"),
                None => crate::tr!("pin-state-earlier-wrong"),
            }
        } else {
            crate::tr!("pin-state-ok")
        }
    }
}

/// What one slot holds, for `status` and for error messages that name the slot.
#[derive(Debug, Clone)]
pub struct SlotReport {
    pub slot: Slot,
    pub description: String,
    pub manufacturer: String,
    pub token: Option<TokenReport>,
    /// Something is in the slot that is not a usable token (e.g. a card the module does not know).
    pub problem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct TokenReport {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub initialized: bool,
    pub pin: PinFlags,
    pub profile: Option<String>,
}

#[derive(Clone)]
pub struct Module {
    pub path: PathBuf,
    pub(crate) lib: std::sync::Arc<dyn Library>,
    started: Started,
}

/// The modules this process loaded, by the path they were loaded from: kept until the process
/// ends, never unloaded (in the agent, each in its worker: a lost worker is replaced). Unloading a module runs its static destructors (dlclose), and loading
/// it again crashed the agent inside SoftHSM2's; a module is started afresh by C_Finalize and
/// C_Initialize on the same handle instead. As many as the paths the user configured.
///
/// Each module's C_Initialize and C_Finalize run under its own lock (`Started`), and
/// C_Initialize only on a module not initialised: requests opening tokens at once called
/// C_Initialize at once, which SoftHSM2 does not survive (a segfault in its configuration map,
/// at the first token removal under a burst of signing). One module slow to start holds up no
/// other.
static LOADED: std::sync::Mutex<Vec<Loaded>> = std::sync::Mutex::new(Vec::new());

/// A module's path, its calls (in this process or its worker) and whether it is initialised.
type Loaded = (PathBuf, std::sync::Arc<dyn Library>, Started);

/// Set by the agent: every module runs in a worker process of its own (worker/), each call
/// allowed this long before the worker is stopped. Unset: modules load into this process.
static WORKERS: std::sync::OnceLock<std::time::Duration> = std::sync::OnceLock::new();

/// From now on, load every module into a worker process of its own (the agent, at its start).
pub fn run_modules_in_workers(call_limit: std::time::Duration) {
    let _ = WORKERS.set(call_limit);
}

/// Keep `lib` as the module at `key` (in place of a lost one), not initialised yet.
fn remember(
    all: &mut Vec<Loaded>,
    key: PathBuf,
    lib: std::sync::Arc<dyn Library>,
) -> (std::sync::Arc<dyn Library>, Started) {
    let started = Started::default();
    all.retain(|(p, _, _)| *p != key);
    all.push((key, lib.clone(), started.clone()));
    (lib, started)
}

/// Stop every module worker now: the agent is about to replace its own image, and workers it
/// no longer knows would be left for nobody to collect.
pub fn stop_workers() {
    let all = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    for (_, lib, _) in all.iter() {
        lib.stop();
    }
}

/// One start at a time per module path: requests that find a module's worker lost at once wait
/// for the one that starts the next, instead of each starting its own.
static STARTING: std::sync::Mutex<Vec<(PathBuf, std::sync::Arc<std::sync::Mutex<()>>)>> =
    std::sync::Mutex::new(Vec::new());

fn start_lock(key: &Path) -> std::sync::Arc<std::sync::Mutex<()>> {
    let mut all = STARTING.lock().unwrap_or_else(|p| p.into_inner());
    match all.iter().find(|(p, _)| p == key) {
        Some((_, l)) => l.clone(),
        None => {
            let l = std::sync::Arc::new(std::sync::Mutex::new(()));
            all.push((key.to_path_buf(), l.clone()));
            l
        }
    }
}

/// Whether a loaded module is initialised, and the lock its C_Initialize and C_Finalize take.
type Started = std::sync::Arc<std::sync::Mutex<bool>>;

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Module {
    pub fn load(path: &Path) -> Result<Module> {
        if !path.exists() {
            return Err(TokenError::ModuleLoad { path: path.into(), reason: crate::tr!("token-module-missing") });
        }
        let key = canonical(path);
        let live = |all: &[Loaded]| {
            all.iter().find(|(p, lib, _)| *p == key && !lib.lost()).map(|(_, lib, s)| (lib.clone(), s.clone()))
        };
        let found = live(&LOADED.lock().unwrap_or_else(|p| p.into_inner()));
        let (lib, started) = match found {
            Some(found) => found,
            // A worker lost (crashed, hung) is replaced by a new one, not initialised yet.
            None => match WORKERS.get() {
                None => {
                    let mut all = LOADED.lock().unwrap_or_else(|p| p.into_inner());
                    match live(&all) {
                        Some(found) => found,
                        None => {
                            let lib: std::sync::Arc<dyn Library> = std::sync::Arc::new(InProcess::load(path)?);
                            remember(&mut all, key, lib)
                        }
                    }
                }
                // Started without the modules lock (a module slow to load holds up no other),
                // one start per path at a time.
                Some(limit) => {
                    let starting = start_lock(&key);
                    let _one = starting.lock().unwrap_or_else(|p| p.into_inner());
                    // A statement of its own: the guard must be gone before the arm below locks.
                    let found = live(&LOADED.lock().unwrap_or_else(|p| p.into_inner()));
                    match found {
                        Some(found) => found,
                        None => {
                            let lib = std::sync::Arc::new(worker::remote::Remote::start(path, *limit)?);
                            remember(&mut LOADED.lock().unwrap_or_else(|p| p.into_inner()), key, lib)
                        }
                    }
                }
            },
        };
        let mut initialized = started.lock().unwrap_or_else(|p| p.into_inner());
        if !*initialized {
            lib.initialize()?;
            *initialized = true;
        }
        drop(initialized);
        Ok(Module { path: path.into(), lib, started })
    }

    /// The module at `path` as this process has it loaded and running, if it does: nothing is
    /// loaded or started for the asking (re-initialising a module not loaded is nothing to do).
    pub fn loaded(path: &Path) -> Option<Module> {
        let key = canonical(path);
        let all = LOADED.lock().unwrap_or_else(|p| p.into_inner());
        all.iter().find(|(p, lib, _)| *p == key && !lib.lost()).map(|(_, lib, started)| Module {
            path: path.into(),
            lib: lib.clone(),
            started: started.clone(),
        })
    }

    /// C_Finalize: the next `load` starts the module afresh (C_Initialize on the same handle)
    /// and sees tokens created or removed since (SoftHSM2 reads its token directory only at
    /// C_Initialize). Every token opened through this module must be dropped first: their
    /// sessions end here. The module stays loaded (`LOADED`).
    pub fn finalize(self) -> Result<()> {
        let mut initialized = self.started.lock().unwrap_or_else(|p| p.into_inner());
        if !*initialized {
            return Ok(());
        }
        *initialized = false;
        if self.lib.lost() {
            return Ok(());
        }
        self.lib.finalize()
    }

    /// The worker this module ran in was lost: every session through it is gone with it.
    pub fn lost(&self) -> bool {
        self.lib.lost()
    }

    pub fn slots(&self, profiles: &[Profile]) -> Result<Vec<SlotReport>> {
        let mut out = Vec::new();
        for slot in self.lib.slots()? {
            let info = self.lib.slot_info(slot)?;
            let mut problem = None;
            let token = if info.present {
                match self.lib.token_info(slot) {
                    Ok(t) => Some(TokenReport {
                        label: t.label.trim_end().to_string(),
                        manufacturer: t.manufacturer.trim_end().to_string(),
                        model: t.model.trim_end().to_string(),
                        serial: t.serial.trim_end().to_string(),
                        initialized: t.initialized,
                        pin: PinFlags { count_low: t.count_low, final_try: t.final_try, locked: t.locked },
                        profile: crate::profile::match_profile(
                            profiles,
                            &self.path,
                            &t.label,
                            &t.manufacturer,
                            &t.model,
                        )
                        .map(|p| p.name.clone()),
                    }),
                    // Removed between the two calls: report it as absent.
                    Err(TokenError::Pkcs11 { rv: RvError::TokenNotPresent, .. }) => None,
                    Err(e @ TokenError::ModuleFailed { .. }) => return Err(e),
                    // A card this module cannot use (a bank card, a plain ISO 7816 card): say so
                    // for this slot, and go on looking in the others.
                    Err(e) => {
                        problem = Some(crate::tr!("token-unusable-card", error = e.to_string()));
                        None
                    }
                }
            } else {
                None
            };
            out.push(SlotReport {
                slot,
                description: info.description.trim_end().to_string(),
                manufacturer: info.manufacturer.trim_end().to_string(),
                token,
                problem,
            });
        }
        Ok(out)
    }
}

/// Module paths to search when the user named none: every profile's path that exists here.
pub fn candidate_modules(profiles: &[Profile]) -> Vec<PathBuf> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for p in profiles {
        for m in p.module_paths() {
            if let Ok(c) = std::fs::canonicalize(m) {
                if !seen.contains(&c) {
                    seen.push(c);
                    out.push(m.clone());
                }
            }
        }
    }
    out
}

/// An open session on the chosen token.
pub struct Token {
    pub module: Module,
    pub slot: Slot,
    pub slot_description: String,
    pub label: String,
    /// Label, manufacturer, model and serial, for messages and the identity-method attribute.
    pub description: String,
    pub serial: String,
    pub profile: Profile,
    /// When the token last accepted the PIN in this process.
    pub login_time: Option<std::time::SystemTime>,
    session: Box<dyn SessionCalls>,
    /// Held only while this process needs it for context-specific logins; zeroized on drop.
    pin: Option<SecretString>,
    /// `pin` was entered for the operation at hand and has served no context-specific login
    /// yet: a CKA_ALWAYS_AUTHENTICATE key takes only such a PIN, never a cached one.
    pin_fresh: std::cell::Cell<bool>,
    /// The PIN flags read when the token was found, for the first login of a command that
    /// follows at once: on a card each C_GetTokenInfo costs a lock and a VERIFY.
    found_flags: Option<(std::time::Instant, PinFlags)>,
    objects: std::cell::RefCell<objects::ObjectCache>,
}

/// What looking for tokens found, and where it looked (for the message when nothing fits).
struct Search {
    found: Vec<(Module, SlotReport, Profile)>,
    searched: Vec<String>,
    load_errors: Vec<String>,
    /// A module whose worker failed while looking: what to say when nothing was found.
    module_failure: Option<TokenError>,
}

impl Token {
    /// Find the one token `uri` names (module from the URI, else every profile's module) and open
    /// a session. No token ⇒ `NotPresent` naming the slots searched, before any PIN is asked.
    pub fn open(uri: &Pkcs11Uri, profiles: &[Profile]) -> Result<Token> {
        let Search { found, searched, load_errors, module_failure } = Self::find(uri, profiles)?;
        if found.len() > 1 && !uri.names_token() {
            let names: Vec<String> = found
                .iter()
                .map(|(_, s, _)| format!("'{}'", s.token.as_ref().map(|t| t.label.as_str()).unwrap_or("")))
                .collect();
            return Err(TokenError::Ambiguous(crate::tr!("token-ambiguous", tokens = names.join(", "))));
        }
        let Some(first) = found.into_iter().next() else {
            return Err(module_failure.unwrap_or_else(|| Self::not_present(uri, &searched, &load_errors)));
        };
        Self::from_found(first)
    }

    /// Every present token `uri` selects (every one a profile matches when it names none), for
    /// what needs no choice: the trust anchors of all of them.
    pub fn open_all(uri: &Pkcs11Uri, profiles: &[Profile]) -> Result<Vec<Token>> {
        Self::find(uri, profiles)?.found.into_iter().map(Self::from_found).collect()
    }

    fn not_present(uri: &Pkcs11Uri, searched: &[String], load_errors: &[String]) -> TokenError {
        let mut msg = if uri.names_token() {
            crate::tr!("token-named-absent", uri = uri.to_string())
        } else {
            crate::tr!("token-none-present")
        };
        if !searched.is_empty() {
            msg.push(' ');
            msg.push_str(&crate::tr!("token-searched", slots = searched.join("; ")));
        }
        if !load_errors.is_empty() {
            msg.push(' ');
            msg.push_str(&load_errors.join("; "));
        }
        TokenError::NotPresent(msg)
    }

    fn modules_for(uri: &Pkcs11Uri, profiles: &[Profile]) -> Vec<PathBuf> {
        let modules = match &uri.module_path {
            Some(p) => vec![p.clone()],
            None => candidate_modules(profiles),
        };
        modules.into_iter().filter(|m| uri.matches_module(m)).collect()
    }

    /// The present tokens `uri` selects, with their module, slot and profile.
    fn find(uri: &Pkcs11Uri, profiles: &[Profile]) -> Result<Search> {
        let modules = Self::modules_for(uri, profiles);
        if modules.is_empty() {
            return Err(TokenError::NotPresent(crate::tr!("token-no-module")));
        }
        let mut searched = Vec::new();
        let mut found: Vec<(Module, SlotReport, Profile)> = Vec::new();
        let mut load_errors = Vec::new();
        let mut module_failure = None;
        for path in modules {
            let module = match Module::load(&path) {
                Ok(m) => m,
                Err(e) => {
                    load_errors.push(e.to_string());
                    if matches!(e, TokenError::ModuleFailed { .. }) {
                        module_failure = Some(e);
                    }
                    continue;
                }
            };
            // One module that cannot list its slots (ykcs11 without pcscd: CKR_DEVICE_ERROR) must
            // not hide the tokens of the others; it is named if nothing is found.
            let slots = match module.slots(profiles) {
                Ok(s) => s,
                Err(e) => {
                    load_errors.push(format!("{}: {e}", path.display()));
                    if matches!(e, TokenError::ModuleFailed { .. }) {
                        module_failure = Some(e);
                    }
                    continue;
                }
            };
            let mut hits = Vec::new();
            for s in slots {
                searched.push(crate::tr!(
                    "token-slot",
                    module = path,
                    slot = s.slot.id(),
                    description = s.description,
                    state = describe_slot(&s)
                ));
                let Some(t) = &s.token else { continue };
                if !t.initialized
                    || uri.slot_id.is_some_and(|id| id != s.slot.id())
                    || !uri.matches_slot(&s.description, &s.manufacturer)
                    || !uri.matches_token(&t.label, &t.manufacturer, &t.model, &t.serial)
                {
                    continue;
                }
                let Some(profile) = crate::profile::match_profile(profiles, &path, &t.label, &t.manufacturer, &t.model)
                else {
                    if uri.names_token() {
                        return Err(TokenError::NoKey(crate::tr!(
                            "token-no-profile",
                            token = t.label,
                            manufacturer = t.manufacturer,
                            model = t.model
                        )));
                    }
                    continue;
                };
                hits.push((s.clone(), profile.clone()));
            }
            for (s, p) in hits {
                found.push((module.clone(), s, p));
            }
            // A URI that names the token is satisfied by the first module that has it: loading
            // every other module (OpenSC, ykcs11) would only cost time.
            if uri.names_token() && !found.is_empty() {
                break;
            }
        }
        Ok(Search { found, searched, load_errors, module_failure })
    }

    fn from_found((module, slot, profile): (Module, SlotReport, Profile)) -> Result<Token> {
        let session = module.lib.open_session(slot.slot, false)?;
        let label = slot.token.as_ref().map(|t| t.label.clone()).unwrap_or_default();
        let description = slot
            .token
            .as_ref()
            .map(|t| format!("'{}' ({} {}, serial {})", t.label, t.manufacturer, t.model, t.serial))
            .unwrap_or_default();
        let serial = slot.token.as_ref().map(|t| t.serial.clone()).unwrap_or_default();
        Ok(Token {
            module,
            slot: slot.slot,
            slot_description: slot.description,
            label,
            description,
            serial,
            profile,
            login_time: None,
            session,
            pin: None,
            pin_fresh: std::cell::Cell::new(false),
            found_flags: slot.token.as_ref().map(|t| (std::time::Instant::now(), t.pin)),
            objects: Default::default(),
        })
    }

    /// A failed operation may be a card pulled mid-command: OpenSC reports that as
    /// CKR_GENERAL_ERROR (measured with a card leaving a vpcd reader during GENERAL AUTHENTICATE),
    /// not CKR_DEVICE_REMOVED. Ask the slot for up to a second (pcscd may learn of it a moment
    /// after the command failed); a token that is gone is reported as not present.
    pub fn explain_failure(&self, e: TokenError) -> TokenError {
        if !matches!(
            e,
            TokenError::Pkcs11 { rv: RvError::GeneralError | RvError::DeviceError | RvError::FunctionFailed, .. }
        ) {
            return e;
        }
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        loop {
            match self.module.lib.slot_info(self.slot) {
                Ok(info) if !info.present => {
                    return TokenError::NotPresent(crate::tr!("token-removed-during", token = self.label))
                }
                Err(_) => return e,
                Ok(_) if std::time::Instant::now() >= until => return e,
                Ok(_) => std::thread::sleep(std::time::Duration::from_millis(100)),
            }
        }
    }

    pub fn session(&self) -> &dyn SessionCalls {
        self.session.as_ref()
    }

    /// PIN flags read from the token now.
    pub fn pin_flags(&self) -> Result<PinFlags> {
        let t = self.module.lib.token_info(self.slot).map_err(|e| match e {
            TokenError::Pkcs11 { rv: RvError::TokenNotPresent, .. } => TokenError::NotPresent(crate::tr!(
                "token-removed-from",
                token = self.label,
                slot = self.slot_description
            )),
            e => e,
        })?;
        Ok(PinFlags { count_low: t.count_low, final_try: t.final_try, locked: t.locked })
    }

    pub fn is_logged_in(&self) -> bool {
        self.session.logged_in().unwrap_or(false)
    }

    /// Possession is proven by the open session; this adds knowledge: ask for the PIN once,
    /// check the token's retry flags first, never retry.
    pub fn login(&mut self, prompt: &dyn PinPrompt, operation: &str, allow_final_try: bool) -> Result<()> {
        // The PIN first: asking the module whether the session is logged in costs a card lock
        // (OpenSC checks the card's state), and a token never logged in here cannot be.
        if self.pin.is_some() && self.is_logged_in() {
            return Ok(());
        }
        // Read before every login: the flags from finding the token serve only the login that
        // follows within seconds, before any other PIN was tried by this process.
        let flags = match self.found_flags.take() {
            Some((at, f)) if at.elapsed() < FOUND_FLAGS_FOR => f,
            _ => self.pin_flags()?,
        };
        let pin = self.ask_pin(flags, prompt, operation, allow_final_try)?;
        match self.session.login(&pin) {
            Ok(()) => {}
            Err(TokenError::Pkcs11 { rv: RvError::PinIncorrect, .. }) => {
                drop(pin);
                let after = self.pin_flags().ok();
                return Err(TokenError::WrongPin {
                    token: self.label.clone(),
                    tries: pin::tries_left(after, &self.profile),
                });
            }
            Err(TokenError::Pkcs11 { rv: RvError::PinLocked, .. }) => {
                return Err(TokenError::PinLocked(self.label.clone()))
            }
            Err(TokenError::Pkcs11 { rv: RvError::PinLenRange, .. }) => {
                return Err(TokenError::PinRules {
                    token: self.label.clone(),
                    reason: crate::tr!("pin-length-rejected"),
                })
            }
            Err(e) => return Err(e),
        }
        self.pin = Some(pin);
        self.pin_fresh.set(true);
        self.login_time = Some(std::time::SystemTime::now());
        // Private objects are visible now: lists read before the login are incomplete. The
        // certificate list stays unless the profile says certificates hide behind the PIN
        // (re-reading it cost every one-shot signature a second pass over the token).
        self.invalidate_private_objects();
        Ok(())
    }

    /// A PIN from `prompt`, after the retry `flags` allow a try (a final one only when allowed),
    /// checked against the profile's rules before the token sees it.
    fn ask_pin(
        &self,
        flags: PinFlags,
        prompt: &dyn PinPrompt,
        operation: &str,
        allow_final_try: bool,
    ) -> Result<SecretString> {
        if let Some(warning) = pin::check_flags(&self.label, flags, allow_final_try)? {
            eprintln!("ssmax-card: {}", crate::tr!("warning", text = warning));
        }
        let request = PinRequest { token: &self.label, operation, rules: &self.profile.pin };
        pin::apply_rules(&self.profile.pin, prompt.ask(&request)?)
            .map_err(|reason| TokenError::PinRules { token: self.label.clone(), reason })
    }

    /// The PIN for one context-specific login: one entered for this operation (at its login, or
    /// by `fresh_pin_for_context`), once.
    pub fn context_pin(&self) -> Result<&SecretString> {
        let fresh = self.pin_fresh.replace(false);
        self.pin.as_ref().filter(|_| fresh).ok_or_else(|| TokenError::NoPinSource(crate::tr!("pin-context-missing")))
    }

    /// Before an operation with a CKA_ALWAYS_AUTHENTICATE key (each use needs the PIN, the
    /// card's own rule): ask for the PIN again unless it was entered for this very operation.
    /// The login stays as it is; the card checks this PIN at the context-specific login.
    pub fn fresh_pin_for_context(
        &mut self,
        prompt: &dyn PinPrompt,
        operation: &str,
        allow_final_try: bool,
    ) -> Result<()> {
        if self.pin_fresh.get() && self.pin.is_some() {
            return Ok(());
        }
        let flags = self.pin_flags()?;
        let pin = self.ask_pin(flags, prompt, operation, allow_final_try)?;
        self.pin = Some(pin);
        self.pin_fresh.set(true);
        Ok(())
    }

    /// The operation at hand is over: a PIN kept from it (the agent's cache) is no longer one
    /// entered for the next.
    pub fn pin_is_cached(&mut self) {
        self.pin_fresh.set(false);
    }

    /// Forget the PIN and end the login (the card keeps no state for us).
    pub fn logout(&mut self) {
        self.pin = None;
        self.pin_fresh.set(false);
        let _ = self.session.logout();
        self.invalidate_objects();
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        // The login state belongs to the token, shared by every session this process has on it:
        // a Token opened only to look (choosing among several) must not log out the one in use.
        if self.login_time.is_some() {
            self.logout();
        }
    }
}

fn describe_slot(s: &SlotReport) -> String {
    match &s.token {
        None if s.problem.is_some() => s.problem.clone().unwrap_or_default(),
        None => crate::tr!("slot-empty"),
        Some(t) if !t.initialized => crate::tr!("slot-uninitialised"),
        Some(t) => crate::tr!("slot-token", token = t.label, manufacturer = t.manufacturer, model = t.model),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ckr_names_follow_pkcs11_spelling() {
        assert_eq!(ckr_name(RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(ckr_name(RvError::TokenNotPresent), "CKR_TOKEN_NOT_PRESENT");
        assert_eq!(function_name(Function::SignInit), "C_SignInit");
    }
}
