//! What the agent and a module's worker say to each other: one call, one answer, each a frame
//! (u32 length, big-endian, then JSON). Both are this program, but the worker runs untrusted C:
//! its answers are read like any outside bytes, bounded and checked.

use crate::token::calls::{Mech, SlotInfo, TokenInfo};
use crate::token::raw::Op;
use crate::token::TokenError;
use cryptoki::context::Function;
use cryptoki::error::{Rv, RvError};
use cryptoki::object::{Attribute, AttributeType};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use zeroize::{Zeroize, Zeroizing};

/// The largest frame either side accepts: a token object's value (a certificate) with room.
pub const MAX_FRAME: usize = 8 << 20;

/// An attribute as PKCS#11 lays it out: its type and its value's bytes.
pub type RawAttribute = (u64, Vec<u8>);

#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    Initialize,
    Finalize,
    Slots,
    SlotInfo(u64),
    TokenInfo(u64),
    Open { slot: u64, rw: bool },
    Close(u64),
    Login { session: u64, pin: String },
    Logout(u64),
    LoggedIn(u64),
    Find { session: u64, template: Vec<RawAttribute> },
    GetAttributes { session: u64, object: u64, types: Vec<u64> },
    Sign { session: u64, mech: Mech, key: u64, data: Vec<u8> },
    Encrypt { session: u64, mech: Mech, key: u64, data: Vec<u8> },
    Decrypt { session: u64, mech: Mech, key: u64, data: Vec<u8> },
    Single { session: u64, sign: bool, mech: Mech, key: u64, context_pin: Option<String>, data: Vec<u8> },
    Derive { session: u64, mech: Mech, key: u64, template: Vec<RawAttribute> },
    Destroy { session: u64, object: u64 },
    GenerateKeyPair { session: u64, mech: Mech, public: Vec<RawAttribute>, private: Vec<RawAttribute> },
    Create { session: u64, template: Vec<RawAttribute> },
    Update { session: u64, object: u64, template: Vec<RawAttribute> },
}

impl Call {
    /// Wipe what may be secret (a PIN, ciphertext of a content key) once the call is sent or made.
    pub fn wipe(&mut self) {
        match self {
            Call::Login { pin, .. } | Call::Single { context_pin: Some(pin), .. } => pin.zeroize(),
            _ => {}
        }
        if let Call::Decrypt { data, .. } | Call::Single { data, .. } = self {
            data.zeroize();
        }
    }
}

impl Call {
    /// The PKCS#11 function this call is, as a user reads it in an error.
    pub fn function(&self) -> Function {
        match self {
            Call::Initialize => Function::Initialize,
            Call::Finalize => Function::Finalize,
            Call::Slots => Function::GetSlotList,
            Call::SlotInfo(_) => Function::GetSlotInfo,
            Call::TokenInfo(_) => Function::GetTokenInfo,
            Call::Open { .. } => Function::OpenSession,
            Call::Close(_) => Function::CloseSession,
            Call::Login { .. } => Function::Login,
            Call::Logout(_) => Function::Logout,
            Call::LoggedIn(_) => Function::GetSessionInfo,
            Call::Find { .. } => Function::FindObjects,
            Call::GetAttributes { .. } => Function::GetAttributeValue,
            Call::Sign { .. } | Call::Single { sign: true, .. } => Function::Sign,
            Call::Encrypt { .. } => Function::Encrypt,
            Call::Decrypt { .. } | Call::Single { sign: false, .. } => Function::Decrypt,
            Call::Derive { .. } => Function::DeriveKey,
            Call::Destroy { .. } => Function::DestroyObject,
            Call::GenerateKeyPair { .. } => Function::GenerateKeyPair,
            Call::Create { .. } => Function::CreateObject,
            Call::Update { .. } => Function::SetAttributeValue,
        }
    }

    pub fn op(sign: bool) -> Op {
        if sign {
            Op::Sign
        } else {
            Op::Decrypt
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Answer {
    Done,
    Slots(Vec<u64>),
    SlotInfo(SlotInfo),
    TokenInfo(TokenInfo),
    Session(u64),
    Bool(bool),
    Handles(Vec<u64>),
    Handle(u64),
    Attributes(Vec<RawAttribute>),
    Bytes(Vec<u8>),
    Failed(Fault),
}

impl Answer {
    /// Wipe what may be secret (a decrypted content key, an ECDH secret read as an attribute).
    pub fn wipe(&mut self) {
        match self {
            Answer::Bytes(b) => b.zeroize(),
            Answer::Attributes(a) => a.iter_mut().for_each(|(_, v)| v.zeroize()),
            _ => {}
        }
    }
}

/// A token error as it crosses from the worker: the ones decisions depend on keep their type.
#[derive(Debug, Serialize, Deserialize)]
pub enum Fault {
    Pkcs11 { function: String, rv: u64 },
    WrongPin { tries: String },
    PinLocked,
    NoKey(String),
    ModuleLoad(String),
    Other(String),
}

/// The functions ssmax-card calls, by the name `Debug` gives them (how a Fault names one).
const FUNCTIONS: &[Function] = &[
    Function::Initialize,
    Function::Finalize,
    Function::GetFunctionList,
    Function::GetSlotList,
    Function::GetSlotInfo,
    Function::GetTokenInfo,
    Function::OpenSession,
    Function::CloseSession,
    Function::GetSessionInfo,
    Function::Login,
    Function::Logout,
    Function::FindObjectsInit,
    Function::FindObjects,
    Function::FindObjectsFinal,
    Function::GetAttributeValue,
    Function::SetAttributeValue,
    Function::CreateObject,
    Function::DestroyObject,
    Function::SignInit,
    Function::Sign,
    Function::EncryptInit,
    Function::Encrypt,
    Function::DecryptInit,
    Function::Decrypt,
    Function::DeriveKey,
    Function::GenerateKeyPair,
];

/// CK_RV for a return value cryptoki named (it offers only the other direction).
fn ck_rv(rv: RvError) -> u64 {
    match rv {
        RvError::VendorDefined(c) | RvError::UnknownErrorCode(c) => c,
        _ => (0..0x400u64).find(|&c| Rv::from(c) == Rv::Error(rv)).unwrap_or(cryptoki_sys::CKR_GENERAL_ERROR),
    }
}

impl Fault {
    pub fn from_error(e: TokenError) -> Fault {
        match e {
            TokenError::Pkcs11 { function, rv } => Fault::Pkcs11 { function: format!("{function:?}"), rv: ck_rv(rv) },
            TokenError::WrongPin { tries, .. } => Fault::WrongPin { tries },
            TokenError::PinLocked(_) => Fault::PinLocked,
            TokenError::NoKey(m) => Fault::NoKey(m),
            TokenError::ModuleLoad { reason, .. } => Fault::ModuleLoad(reason),
            other => Fault::Other(other.to_string()),
        }
    }

    pub fn into_error(self, module: &std::path::Path) -> TokenError {
        match self {
            Fault::Pkcs11 { function, rv } => {
                let rv = match Rv::from(rv) {
                    Rv::Error(e) => e,
                    Rv::Ok => RvError::GeneralError,
                };
                match FUNCTIONS.iter().find(|f| format!("{f:?}") == function) {
                    Some(&function) => TokenError::Pkcs11 { function, rv },
                    None => TokenError::Library(format!("C_{function}: {}", crate::token::ckr_name(rv))),
                }
            }
            Fault::WrongPin { tries } => TokenError::WrongPin { token: String::new(), tries },
            Fault::PinLocked => TokenError::PinLocked(String::new()),
            Fault::NoKey(m) => TokenError::NoKey(m),
            Fault::ModuleLoad(reason) => TokenError::ModuleLoad { path: module.into(), reason },
            Fault::Other(m) => TokenError::Library(m),
        }
    }
}

/// An attribute's type and bytes, as PKCS#11 lays them out.
pub fn raw_attribute(a: &Attribute) -> RawAttribute {
    let ck = cryptoki_sys::CK_ATTRIBUTE::from(a);
    let bytes = if ck.pValue.is_null() || ck.ulValueLen == 0 {
        Vec::new()
    } else {
        // SAFETY: cryptoki points the CK_ATTRIBUTE at `a`'s own value, `ulValueLen` bytes, which
        // lives as long as `a` (borrowed for this call).
        unsafe { std::slice::from_raw_parts(ck.pValue as *const u8, ck.ulValueLen as usize) }.to_vec()
    };
    (ck.type_, bytes)
}

pub fn raw_attributes(a: &[Attribute]) -> Vec<RawAttribute> {
    a.iter().map(raw_attribute).collect()
}

/// An attribute from its type and bytes; cryptoki checks each value's length for its type.
pub fn attribute(raw: &RawAttribute) -> Result<Attribute, TokenError> {
    let (kind, value) = raw;
    let ck = cryptoki_sys::CK_ATTRIBUTE {
        type_: *kind,
        pValue: value.as_ptr() as *mut std::ffi::c_void,
        ulValueLen: value.len() as cryptoki_sys::CK_ULONG,
    };
    Attribute::try_from(ck).map_err(|e| TokenError::Library(format!("attribute {kind:#x}: {e}")))
}

pub fn attributes(raw: &[RawAttribute]) -> Result<Vec<Attribute>, TokenError> {
    raw.iter().map(attribute).collect()
}

pub fn attribute_types(types: &[AttributeType]) -> Vec<u64> {
    types.iter().map(|&t| cryptoki_sys::CK_ATTRIBUTE_TYPE::from(t)).collect()
}

pub fn attribute_types_back(raw: &[u64]) -> Result<Vec<AttributeType>, TokenError> {
    raw.iter()
        .map(|&t| AttributeType::try_from(t).map_err(|e| TokenError::Library(format!("attribute {t:#x}: {e}"))))
        .collect()
}

/// Write `value` as one frame. The encoding buffer is wiped: it may hold a PIN.
pub fn write_frame<T: Serialize>(to: &mut impl Write, value: &T) -> std::io::Result<()> {
    let body = Zeroizing::new(serde_json::to_vec(value).map_err(std::io::Error::other)?);
    if body.len() > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "frame too large"));
    }
    let mut frame = Zeroizing::new(Vec::with_capacity(4 + body.len()));
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    to.write_all(&frame)
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum ReadFailure {
    /// The other side closed its end.
    Closed,
    /// The wait for it ran out (the socket's read timeout).
    TimedOut,
    /// Not a frame: too long, or not the JSON of one.
    Garbled(String),
    Io(std::io::Error),
}

/// Read one frame as `T`. The bytes read are wiped once decoded.
pub fn read_frame<T: for<'de> Deserialize<'de>>(from: &mut impl Read) -> Result<T, ReadFailure> {
    let mut len = [0u8; 4];
    read_exact(from, &mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(ReadFailure::Garbled(format!("a frame of {len} bytes")));
    }
    let mut body = Zeroizing::new(vec![0u8; len]);
    read_exact(from, &mut body)?;
    decode(&body)
}

/// A frame's body as `T` (the `worker_answer` fuzz target's entry).
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ReadFailure> {
    serde_json::from_slice(body).map_err(|e| ReadFailure::Garbled(e.to_string()))
}

fn read_exact(from: &mut impl Read, buf: &mut [u8]) -> Result<(), ReadFailure> {
    let mut at = 0;
    while at < buf.len() {
        match from.read(&mut buf[at..]) {
            Ok(0) => return Err(ReadFailure::Closed),
            Ok(n) => at += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(ReadFailure::TimedOut)
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Err(ReadFailure::Closed),
            Err(e) => return Err(ReadFailure::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::object::ObjectClass;

    #[test]
    fn attributes_cross_the_wire_unchanged() {
        let a = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Id(vec![1, 2]),
            Attribute::Sign(true),
            Attribute::ValueLen(32u64.into()),
            Attribute::Label(Vec::new()),
        ];
        let back = attributes(&raw_attributes(&a)).unwrap();
        assert_eq!(format!("{a:?}"), format!("{back:?}"));
    }

    #[test]
    fn an_attribute_of_the_wrong_length_is_an_error_not_a_read_past_its_bytes() {
        let bool_type = cryptoki_sys::CKA_SIGN;
        assert!(attribute(&(bool_type, vec![1, 0, 0])).is_err());
        assert!(attribute(&(cryptoki_sys::CKA_VALUE_LEN, vec![1])).is_err());
    }

    #[test]
    fn return_values_and_functions_keep_their_names() {
        let e = TokenError::Pkcs11 { function: Function::Sign, rv: RvError::PinIncorrect };
        let back = Fault::from_error(e).into_error(std::path::Path::new("/m.so"));
        assert!(matches!(back, TokenError::Pkcs11 { function: Function::Sign, rv: RvError::PinIncorrect }), "{back:?}");
        let e = TokenError::Pkcs11 { function: Function::Login, rv: RvError::VendorDefined(0x8000_0001) };
        let back = Fault::from_error(e).into_error(std::path::Path::new("/m.so"));
        assert!(matches!(back, TokenError::Pkcs11 { rv: RvError::VendorDefined(0x8000_0001), .. }), "{back:?}");
    }

    #[test]
    fn a_frame_longer_than_the_limit_is_refused_before_it_is_read() {
        let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0xff, b'{'];
        assert!(matches!(read_frame::<Answer>(&mut bytes), Err(ReadFailure::Garbled(_))));
    }
}
