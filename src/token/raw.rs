//! Two sequences cryptoki cannot express, called through the module's own function list on the
//! session cryptoki opened: a context-specific login between C_xxxInit and the single-part call
//! (PKCS#11 v2.40 §5.1, CKA_ALWAYS_AUTHENTICATE), and a single-part call made once with a buffer
//! large enough for any answer. cryptoki asks for the length first (a call with no buffer) and
//! OpenSC answers that call for C_Decrypt by running the key operation on the card: every
//! decryption cost two card operations (measured on the virtual PIV card, softhsm-tests/cards.rs).

use super::TokenError;
use cryptoki::context::Function;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::ObjectHandle;
use cryptoki_sys::{CKR_OK, CKU_CONTEXT_SPECIFIC, CK_FUNCTION_LIST, CK_MECHANISM, CK_RV, CK_SESSION_HANDLE, CK_ULONG};
use secrecy::{ExposeSecret, SecretString};
use std::path::Path;

pub(crate) struct RawModule {
    // Keeps the library mapped while `list` is used; the module is the one cryptoki loaded.
    _lib: libloading::Library,
    list: *const CK_FUNCTION_LIST,
}

#[derive(Clone, Copy)]
pub enum Op {
    Sign,
    Decrypt,
}

fn check(rv: CK_RV, function: Function) -> Result<(), TokenError> {
    if rv == CKR_OK {
        return Ok(());
    }
    let name = cryptoki::error::Rv::from(rv);
    match name {
        cryptoki::error::Rv::Error(e) => Err(match e {
            cryptoki::error::RvError::PinIncorrect => TokenError::WrongPin {
                token: String::new(),
                tries: "context-specific login for a key that asks the PIN on every use".into(),
            },
            cryptoki::error::RvError::PinLocked => TokenError::PinLocked(String::new()),
            e => TokenError::Pkcs11 { function, rv: e },
        }),
        cryptoki::error::Rv::Ok => Ok(()),
    }
}

impl RawModule {
    pub(crate) fn load(path: &Path) -> Result<Self, TokenError> {
        let load_err = |reason: String| TokenError::ModuleLoad { path: path.into(), reason };
        // SAFETY: loading a PKCS#11 module the user configured; cryptoki has loaded the same file.
        let lib = unsafe { libloading::Library::new(path) }.map_err(|e| load_err(e.to_string()))?;
        let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
        // SAFETY: C_GetFunctionList is the one mandatory entry point of every PKCS#11 module.
        unsafe {
            let get: libloading::Symbol<unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV> =
                lib.get(b"C_GetFunctionList\0").map_err(|e| load_err(e.to_string()))?;
            check(get(&mut list), Function::GetFunctionList)?;
        }
        if list.is_null() {
            return Err(load_err("C_GetFunctionList returned no list".into()));
        }
        Ok(RawModule { _lib: lib, list })
    }

    /// C_SignInit / C_DecryptInit → C_Login(CKU_CONTEXT_SPECIFIC) when `context_pin` is given →
    /// one C_Sign / C_Decrypt.
    pub(crate) fn single_call(
        &self,
        op: Op,
        session: CK_SESSION_HANDLE,
        mechanism: &Mechanism,
        key: ObjectHandle,
        context_pin: Option<&SecretString>,
        data: &[u8],
    ) -> Result<Vec<u8>, TokenError> {
        let mut mech: CK_MECHANISM = mechanism.into();
        // SAFETY: `list` came from the module; every pointer passed lives for the call; lengths match.
        unsafe {
            let f = &*self.list;
            let (init, init_name) = match op {
                Op::Sign => (f.C_SignInit, Function::SignInit),
                Op::Decrypt => (f.C_DecryptInit, Function::DecryptInit),
            };
            let init = init.ok_or_else(|| {
                TokenError::NoKey(crate::tr!("module-lacks", function = super::function_name(init_name)))
            })?;
            check(init(session, &mut mech, key.handle()), init_name)?;
            if let Some(pin) = context_pin {
                let login =
                    f.C_Login.ok_or_else(|| TokenError::NoKey(crate::tr!("module-lacks", function = "C_Login")))?;
                let p = pin.expose_secret().as_bytes();
                check(
                    login(session, CKU_CONTEXT_SPECIFIC, p.as_ptr() as *mut u8, p.len() as CK_ULONG),
                    Function::Login,
                )?;
            }
            let (call, call_name) = match op {
                Op::Sign => (f.C_Sign, Function::Sign),
                Op::Decrypt => (f.C_Decrypt, Function::Decrypt),
            };
            let call = call.ok_or_else(|| {
                TokenError::NoKey(crate::tr!("module-lacks", function = super::function_name(call_name)))
            })?;
            // Large enough for any RSA-16384 result or EC signature; avoids a second call that
            // some modules would treat as a new operation needing another login.
            let mut out = vec![0u8; 4096];
            let mut len = out.len() as CK_ULONG;
            check(
                call(session, data.as_ptr() as *mut u8, data.len() as CK_ULONG, out.as_mut_ptr(), &mut len),
                call_name,
            )?;
            out.truncate(len as usize);
            Ok(out)
        }
    }
}
