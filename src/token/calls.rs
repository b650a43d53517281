//! The PKCS#11 calls ssmax-card makes, behind one seam with two sides: made in this process
//! through cryptoki (`InProcess`, the command line and the worker itself), or in the module's
//! worker process (`worker::Remote`, the agent), where a module that crashes or hangs costs the
//! worker, never the agent. Everything above `Module` and `Token` sees only these traits.

use super::raw::{Op, RawModule};
use super::TokenError;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub type CallResult<T> = Result<T, TokenError>;

/// A digest as the RSA mechanisms name it (their hash and MGF1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Digest {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    fn types(self) -> (MechanismType, PkcsMgfType) {
        match self {
            Digest::Sha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
            Digest::Sha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
            Digest::Sha384 => (MechanismType::SHA384, PkcsMgfType::MGF1_SHA384),
            Digest::Sha512 => (MechanismType::SHA512, PkcsMgfType::MGF1_SHA512),
        }
    }
}

/// The mechanisms ssmax-card asks a token for, and nothing else: a worker runs no other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mech {
    RsaPkcs,
    RsaX509,
    Ecdsa,
    /// RSA-PSS on a digest of `digest`, MGF1 with the same hash, salt as long as the digest.
    RsaPss {
        digest: Digest,
        salt: u64,
    },
    RsaOaep {
        digest: Digest,
    },
    /// ECDH with the peer's point, no KDF (the X9.63 KDF runs in software).
    Ecdh1Derive {
        peer: Vec<u8>,
    },
    RsaKeyPairGen,
    EcKeyPairGen,
}

impl Mech {
    /// The mechanism as cryptoki takes it, for `f` (parameters borrow from `self`).
    fn with<R>(&self, f: impl FnOnce(&Mechanism<'_>) -> R) -> R {
        match self {
            Mech::RsaPkcs => f(&Mechanism::RsaPkcs),
            Mech::RsaX509 => f(&Mechanism::RsaX509),
            Mech::Ecdsa => f(&Mechanism::Ecdsa),
            Mech::RsaPss { digest, salt } => {
                let (hash_alg, mgf) = digest.types();
                f(&Mechanism::RsaPkcsPss(PkcsPssParams { hash_alg, mgf, s_len: (*salt).into() }))
            }
            Mech::RsaOaep { digest } => {
                let (hash, mgf) = digest.types();
                f(&Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty())))
            }
            Mech::Ecdh1Derive { peer } => f(&Mechanism::Ecdh1Derive(Ecdh1DeriveParams::new(EcKdf::null(), peer))),
            Mech::RsaKeyPairGen => f(&Mechanism::RsaPkcsKeyPairGen),
            Mech::EcKeyPairGen => f(&Mechanism::EccKeyPairGen),
        }
    }
}

/// CK_SLOT_INFO, as much as ssmax-card reads of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SlotInfo {
    pub present: bool,
    pub description: String,
    pub manufacturer: String,
}

/// CK_TOKEN_INFO, as much as ssmax-card reads of it (the text fields as the token pads them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenInfo {
    pub label: String,
    pub manufacturer: String,
    pub model: String,
    pub serial: String,
    pub initialized: bool,
    pub count_low: bool,
    pub final_try: bool,
    pub locked: bool,
}

/// A loaded module: its library-wide calls.
pub trait Library: Send + Sync {
    /// C_Initialize (a module already initialised counts as done).
    fn initialize(&self) -> CallResult<()>;
    fn finalize(&self) -> CallResult<()>;
    fn slots(&self) -> CallResult<Vec<Slot>>;
    fn slot_info(&self, slot: Slot) -> CallResult<SlotInfo>;
    fn token_info(&self, slot: Slot) -> CallResult<TokenInfo>;
    fn open_session(&self, slot: Slot, rw: bool) -> CallResult<Box<dyn SessionCalls>>;
    /// The process that ran this module's calls is gone: every session through it is too.
    fn lost(&self) -> bool {
        false
    }
    /// Stop the process that runs this module's calls, if another does (before an exec).
    fn stop(&self) {}
}

/// One session's calls. Dropping it closes the session.
pub trait SessionCalls: Send {
    fn login(&self, pin: &SecretString) -> CallResult<()>;
    fn logout(&self) -> CallResult<()>;
    fn logged_in(&self) -> CallResult<bool>;
    fn find_objects(&self, template: &[Attribute]) -> CallResult<Vec<ObjectHandle>>;
    fn get_attributes(&self, object: ObjectHandle, types: &[AttributeType]) -> CallResult<Vec<Attribute>>;
    fn sign(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>>;
    fn encrypt(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>>;
    fn decrypt(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>>;
    /// C_xxxInit → C_Login(CONTEXT_SPECIFIC) when a PIN is given → one C_xxx (raw.rs).
    fn single_call(
        &self,
        op: Op,
        mech: &Mech,
        key: ObjectHandle,
        context_pin: Option<&SecretString>,
        data: &[u8],
    ) -> CallResult<Vec<u8>>;
    fn derive_key(&self, mech: &Mech, key: ObjectHandle, template: &[Attribute]) -> CallResult<ObjectHandle>;
    fn destroy_object(&self, object: ObjectHandle) -> CallResult<()>;
    fn generate_key_pair(&self, mech: &Mech, public: &[Attribute], private: &[Attribute]) -> CallResult<()>;
    fn create_object(&self, template: &[Attribute]) -> CallResult<ObjectHandle>;
    fn update_attributes(&self, object: ObjectHandle, template: &[Attribute]) -> CallResult<()>;
}

/// The module loaded into this process by cryptoki.
pub struct InProcess {
    path: PathBuf,
    ctx: Pkcs11,
}

impl InProcess {
    pub fn load(path: &Path) -> CallResult<InProcess> {
        let ctx = Pkcs11::new(path).map_err(|e| TokenError::ModuleLoad { path: path.into(), reason: e.to_string() })?;
        Ok(InProcess { path: path.into(), ctx })
    }

    /// A session of this process, for the worker's table (`Box<dyn>` hides what it needs).
    pub fn open(&self, slot: Slot, rw: bool) -> CallResult<LocalSession> {
        let session =
            if rw { self.ctx.open_rw_session(slot) } else { self.ctx.open_ro_session(slot) }.map_err(TokenError::ck)?;
        Ok(LocalSession { session, path: self.path.clone() })
    }
}

impl Library for InProcess {
    fn initialize(&self) -> CallResult<()> {
        match self.ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(()),
            Err(e) => Err(TokenError::ck(e)),
        }
    }

    fn finalize(&self) -> CallResult<()> {
        // cryptoki's finalize takes the context by value; the library stays loaded (a clone).
        self.ctx.clone().finalize().map_err(TokenError::ck)
    }

    fn slots(&self) -> CallResult<Vec<Slot>> {
        self.ctx.get_all_slots().map_err(TokenError::ck)
    }

    fn slot_info(&self, slot: Slot) -> CallResult<SlotInfo> {
        let i = self.ctx.get_slot_info(slot).map_err(TokenError::ck)?;
        Ok(SlotInfo {
            present: i.token_present(),
            description: i.slot_description().to_string(),
            manufacturer: i.manufacturer_id().to_string(),
        })
    }

    fn token_info(&self, slot: Slot) -> CallResult<TokenInfo> {
        let t = self.ctx.get_token_info(slot).map_err(TokenError::ck)?;
        Ok(TokenInfo {
            label: t.label().to_string(),
            manufacturer: t.manufacturer_id().to_string(),
            model: t.model().to_string(),
            serial: t.serial_number().to_string(),
            initialized: t.token_initialized(),
            count_low: t.user_pin_count_low(),
            final_try: t.user_pin_final_try(),
            locked: t.user_pin_locked(),
        })
    }

    fn open_session(&self, slot: Slot, rw: bool) -> CallResult<Box<dyn SessionCalls>> {
        Ok(Box::new(self.open(slot, rw)?))
    }
}

/// A cryptoki session in this process.
pub struct LocalSession {
    session: Session,
    path: PathBuf,
}

impl SessionCalls for LocalSession {
    fn login(&self, pin: &SecretString) -> CallResult<()> {
        match self.session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
            Err(e) => Err(TokenError::ck(e)),
        }
    }

    fn logout(&self) -> CallResult<()> {
        self.session.logout().map_err(TokenError::ck)
    }

    fn logged_in(&self) -> CallResult<bool> {
        let state = self.session.get_session_info().map_err(TokenError::ck)?.session_state();
        Ok(matches!(state, SessionState::RoUser | SessionState::RwUser))
    }

    fn find_objects(&self, template: &[Attribute]) -> CallResult<Vec<ObjectHandle>> {
        self.session.find_objects(template).map_err(TokenError::ck)
    }

    fn get_attributes(&self, object: ObjectHandle, types: &[AttributeType]) -> CallResult<Vec<Attribute>> {
        self.session.get_attributes(object, types).map_err(TokenError::ck)
    }

    fn sign(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        mech.with(|m| self.session.sign(m, key, data)).map_err(TokenError::ck)
    }

    fn encrypt(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        mech.with(|m| self.session.encrypt(m, key, data)).map_err(TokenError::ck)
    }

    fn decrypt(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        mech.with(|m| self.session.decrypt(m, key, data)).map_err(TokenError::ck)
    }

    fn single_call(
        &self,
        op: Op,
        mech: &Mech,
        key: ObjectHandle,
        context_pin: Option<&SecretString>,
        data: &[u8],
    ) -> CallResult<Vec<u8>> {
        let raw = RawModule::load(&self.path)?;
        mech.with(|m| raw.single_call(op, self.session.handle(), m, key, context_pin, data))
    }

    fn derive_key(&self, mech: &Mech, key: ObjectHandle, template: &[Attribute]) -> CallResult<ObjectHandle> {
        mech.with(|m| self.session.derive_key(m, key, template)).map_err(TokenError::ck)
    }

    fn destroy_object(&self, object: ObjectHandle) -> CallResult<()> {
        self.session.destroy_object(object).map_err(TokenError::ck)
    }

    fn generate_key_pair(&self, mech: &Mech, public: &[Attribute], private: &[Attribute]) -> CallResult<()> {
        mech.with(|m| self.session.generate_key_pair(m, public, private)).map(|_| ()).map_err(TokenError::ck)
    }

    fn create_object(&self, template: &[Attribute]) -> CallResult<ObjectHandle> {
        self.session.create_object(template).map_err(TokenError::ck)
    }

    fn update_attributes(&self, object: ObjectHandle, template: &[Attribute]) -> CallResult<()> {
        self.session.update_attributes(object, template).map_err(TokenError::ck)
    }
}
