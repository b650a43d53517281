//! What the agent and a module's worker say to each other: one call, one answer, each a frame
//! (u32 length, big-endian, then JSON; bytes as base64). Both are this program, but the worker
//! runs untrusted C: its answers are read like any outside bytes, bounded (by what the call can
//! bring back) and checked. Buffers that may hold a PIN or a decrypted key are made at their
//! final size and wiped: base64 is decoded into a buffer of its length, never grown.

use crate::token::calls::{Mech, SlotInfo, TokenInfo};
use crate::token::raw::Op;
use crate::token::TokenError;
use cryptoki::context::Function;
use cryptoki::error::{Rv, RvError};
use cryptoki::object::{Attribute, AttributeType};
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use zeroize::{Zeroize, Zeroizing};

/// The largest call the worker reads: a template with a certificate, with room.
pub const MAX_CALL: usize = 8 << 20;
/// The largest answer the agent reads to a call for attributes (a certificate's value, base64).
pub const MAX_ATTRIBUTES: usize = 1 << 20;
/// The largest answer to any other call (a signature, a list of handles or slots).
pub const MAX_ANSWER: usize = 64 << 10;
/// What the agent keeps of a text the module wrote (a fault, a reason), and how it is shown.
const MAX_TEXT: usize = 200;

/// An attribute as PKCS#11 lays it out: its type and its value's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RawAttribute {
    pub t: u64,
    #[serde(with = "b64")]
    pub v: Vec<u8>,
}

/// Bytes as base64 text: a third larger than raw, a quarter of JSON's numbers, and read into a
/// buffer of its final size (a content key or PIN leaves no copy behind in a grown vector).
mod b64 {
    use base64::Engine;
    use serde::{de, Deserializer, Serializer};
    use zeroize::{Zeroize, Zeroizing};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(bytes));
        s.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(Bytes)
    }

    pub(super) fn decode<E: de::Error>(text: &str) -> Result<Vec<u8>, E> {
        let mut out = vec![0u8; base64::decoded_len_estimate(text.len())];
        match base64::engine::general_purpose::STANDARD.decode_slice(text, &mut out) {
            Ok(n) => {
                out[n..].zeroize();
                out.truncate(n);
                Ok(out)
            }
            Err(_) => {
                out.zeroize();
                Err(E::custom("bytes that are not base64"))
            }
        }
    }

    struct Bytes;

    impl de::Visitor<'_> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("base64")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            decode(v)
        }
    }

    pub mod opt {
        use serde::{de, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(b) => super::serialize(b, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            d.deserialize_option(Maybe)
        }

        struct Maybe;

        impl<'de> de::Visitor<'de> for Maybe {
            type Value = Option<Vec<u8>>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("base64 or null")
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Call {
    Initialize,
    Finalize,
    Slots,
    SlotInfo(u64),
    TokenInfo(u64),
    Open {
        slot: u64,
        rw: bool,
    },
    Close(u64),
    Login {
        session: u64,
        #[serde(with = "b64")]
        pin: Vec<u8>,
    },
    Logout(u64),
    LoggedIn(u64),
    Find {
        session: u64,
        template: Vec<RawAttribute>,
    },
    GetAttributes {
        session: u64,
        object: u64,
        types: Vec<u64>,
    },
    Sign {
        session: u64,
        mech: Mech,
        key: u64,
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    Encrypt {
        session: u64,
        mech: Mech,
        key: u64,
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    Decrypt {
        session: u64,
        mech: Mech,
        key: u64,
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    Single {
        session: u64,
        sign: bool,
        mech: Mech,
        key: u64,
        #[serde(with = "b64::opt")]
        context_pin: Option<Vec<u8>>,
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    Derive {
        session: u64,
        mech: Mech,
        key: u64,
        template: Vec<RawAttribute>,
    },
    Destroy {
        session: u64,
        object: u64,
    },
    GenerateKeyPair {
        session: u64,
        mech: Mech,
        public: Vec<RawAttribute>,
        private: Vec<RawAttribute>,
    },
    Create {
        session: u64,
        template: Vec<RawAttribute>,
    },
    Update {
        session: u64,
        object: u64,
        template: Vec<RawAttribute>,
    },
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

    /// The most a worker may answer to this call.
    pub fn answer_limit(&self) -> usize {
        match self {
            Call::GetAttributes { .. } | Call::Find { .. } => MAX_ATTRIBUTES,
            _ => MAX_ANSWER,
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
    Bytes(#[serde(with = "b64")] Vec<u8>),
    Failed(Fault),
}

impl Answer {
    /// Wipe what may be secret (a decrypted content key, an ECDH secret read as an attribute).
    pub fn wipe(&mut self) {
        match self {
            Answer::Bytes(b) => b.zeroize(),
            Answer::Attributes(a) => a.iter_mut().for_each(|a| a.v.zeroize()),
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
                    None => {
                        TokenError::Library(format!("C_{}: {}", outside_text(&function), crate::token::ckr_name(rv)))
                    }
                }
            }
            Fault::WrongPin { tries } => TokenError::WrongPin { token: String::new(), tries: outside_text(&tries) },
            Fault::PinLocked => TokenError::PinLocked(String::new()),
            Fault::NoKey(m) => TokenError::NoKey(outside_text(&m)),
            Fault::ModuleLoad(reason) => TokenError::ModuleLoad { path: module.into(), reason: outside_text(&reason) },
            Fault::Other(m) => TokenError::Library(outside_text(&m)),
        }
    }
}

/// Text the worker wrote, as one line may show it: at most `MAX_TEXT` characters, controls and
/// characters that reorder text escaped (a module could write "\nssmax-card: verified OK").
pub fn outside_text(text: &str) -> String {
    let cut: String = text.chars().take(MAX_TEXT).collect();
    crate::l10n::escaped(&cut)
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
    RawAttribute { t: ck.type_, v: bytes }
}

pub fn raw_attributes(a: &[Attribute]) -> Vec<RawAttribute> {
    a.iter().map(raw_attribute).collect()
}

/// An attribute from its type and bytes. A value of the wrong length for its type is refused
/// here: cryptoki reads a date or a version from the value's pointer without looking at its
/// length (it would read past the bytes, or panic).
pub fn attribute(raw: &RawAttribute) -> Result<Attribute, TokenError> {
    let RawAttribute { t: kind, v: value } = raw;
    let bad = |what: String| TokenError::Library(format!("attribute {kind:#x}: {what}"));
    let typed = AttributeType::try_from(*kind).map_err(|e| bad(e.to_string()))?;
    let dates = matches!(typed, AttributeType::StartDate | AttributeType::EndDate);
    if let Some(n) = typed.fixed_size() {
        if value.len() != n && !(dates && value.is_empty()) {
            return Err(bad(format!("{} bytes where its type has {n}", value.len())));
        }
    }
    let ck = cryptoki_sys::CK_ATTRIBUTE {
        type_: *kind,
        pValue: value.as_ptr() as *mut std::ffi::c_void,
        ulValueLen: value.len() as cryptoki_sys::CK_ULONG,
    };
    Attribute::try_from(ck).map_err(|e| bad(e.to_string()))
}

/// The attributes a worker answered to a request for `asked`: only types asked for, each once,
/// in the order asked (a module has no say in what else the agent reads).
pub fn answered_attributes(raw: &[RawAttribute], asked: &[u64]) -> Result<Vec<Attribute>, TokenError> {
    let mut next = 0;
    for a in raw {
        match asked[next..].iter().position(|&t| t == a.t) {
            Some(i) => next += i + 1,
            None => return Err(TokenError::Library(format!("attribute {:#x} was not asked for", a.t))),
        }
    }
    attributes(raw)
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

/// `value` as one frame, in a buffer made at its final size (counted first): it may hold a PIN,
/// and a grown buffer would leave copies behind. Wiped when dropped.
pub fn frame<T: Serialize>(value: &T) -> std::io::Result<Zeroizing<Vec<u8>>> {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, value).map_err(std::io::Error::other)?;
    if count.0 > MAX_CALL {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "frame too large"));
    }
    let mut frame = Zeroizing::new(Vec::with_capacity(4 + count.0));
    frame.extend_from_slice(&(count.0 as u32).to_be_bytes());
    serde_json::to_writer(&mut *frame, value).map_err(std::io::Error::other)?;
    Ok(frame)
}

/// Write `value` as one frame.
pub fn write_frame<T: Serialize>(to: &mut impl Write, value: &T) -> std::io::Result<()> {
    to.write_all(&frame(value)?)
}

/// Why a frame could not be read.
#[derive(Debug)]
pub enum ReadFailure {
    /// The other side closed its end.
    Closed,
    /// The wait for it ran out (the socket's read timeout).
    TimedOut,
    /// Not a frame: not the JSON of one.
    Garbled(String),
    /// A frame longer than the call can bring back, read past (the channel stays in step).
    TooLong(usize),
    Io(std::io::Error),
}

/// Read one frame of at most `max` bytes as `T`. The bytes read are wiped once decoded.
pub fn read_frame<T: for<'de> Deserialize<'de>>(from: &mut impl Read, max: usize) -> Result<T, ReadFailure> {
    let mut len = [0u8; 4];
    read_exact(from, &mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        // Read past it in pieces, never held: a token with more objects than expected costs
        // this call, not the worker and every login in it.
        let mut left = len;
        let mut piece = [0u8; 16 << 10];
        while left > 0 {
            let n = left.min(piece.len());
            read_exact(from, &mut piece[..n])?;
            left -= n;
        }
        piece.zeroize();
        return Err(ReadFailure::TooLong(len));
    }
    let mut body = Zeroizing::new(vec![0u8; len]);
    read_exact(from, &mut body)?;
    decode(&body)
}

/// A frame's body as `T`. What went wrong is told by its kind and place only: serde's message
/// would quote the module's bytes.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ReadFailure> {
    serde_json::from_slice(body)
        .map_err(|e| ReadFailure::Garbled(format!("{:?} error at byte {}", e.classify(), e.column())))
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
        let raw = raw_attributes(&a);
        let body = frame(&Answer::Attributes(raw.clone())).unwrap();
        let Answer::Attributes(read) = read_frame::<Answer>(&mut &body[..], MAX_ANSWER).unwrap() else { panic!() };
        let back = answered_attributes(&read, &raw.iter().map(|r| r.t).collect::<Vec<_>>()).unwrap();
        assert_eq!(format!("{a:?}"), format!("{back:?}"));
    }

    #[test]
    fn an_attribute_of_the_wrong_length_is_an_error_not_a_read_past_its_bytes() {
        let raw = |t, v: &[u8]| RawAttribute { t, v: v.to_vec() };
        assert!(attribute(&raw(cryptoki_sys::CKA_SIGN, &[1, 0, 0])).is_err());
        assert!(attribute(&raw(cryptoki_sys::CKA_VALUE_LEN, &[1])).is_err());
        // cryptoki would read 8 bytes from the one given, or index past two.
        assert!(attribute(&raw(cryptoki_sys::CKA_START_DATE, b"2")).is_err());
        assert!(attribute(&raw(cryptoki_sys::CKA_END_DATE, b"20261207")).is_ok());
        assert!(attribute(&raw(cryptoki_sys::CKA_END_DATE, b"")).is_ok());
    }

    #[test]
    fn a_worker_answers_only_the_attributes_asked_for_in_their_order() {
        let raw = |t| RawAttribute { t, v: vec![1] };
        let asked = [cryptoki_sys::CKA_ID, cryptoki_sys::CKA_LABEL];
        assert!(answered_attributes(&[raw(cryptoki_sys::CKA_ID)], &asked).is_ok());
        assert!(answered_attributes(&[raw(cryptoki_sys::CKA_LABEL), raw(cryptoki_sys::CKA_ID)], &asked).is_err());
        assert!(answered_attributes(&[raw(cryptoki_sys::CKA_ID), raw(cryptoki_sys::CKA_ID)], &asked).is_err());
        assert!(answered_attributes(&[raw(cryptoki_sys::CKA_START_DATE)], &asked).is_err());
    }

    #[test]
    fn a_fault_the_module_wrote_is_one_escaped_line_of_bounded_length() {
        let f = Fault::Other(format!("bad\nssmax-card: verified OK{}", "x".repeat(10_000)));
        let text = f.into_error(std::path::Path::new("/m.so")).to_string();
        assert!(!text.contains('\n') && text.len() < 400, "{text}");
    }

    #[test]
    fn a_frame_is_made_at_its_final_size_and_read_back() {
        let call = Call::Login { session: 3, pin: b"12\"34\\56".to_vec() };
        let f = frame(&call).unwrap();
        assert_eq!(f.len(), f.capacity(), "never grown");
        let Call::Login { pin, .. } = read_frame::<Call>(&mut &f[..], MAX_CALL).unwrap() else { panic!() };
        assert_eq!(pin, b"12\"34\\56");
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

    /// The fuzz target's seeds stay frames the agent and the worker read whole.
    #[test]
    fn the_fuzz_seeds_are_frames_as_the_worker_and_agent_write_them() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/worker_answer");
        let (mut answers, mut calls) = (0, 0);
        for seed in ["answers.bin", "certificate.bin", "calls.bin"] {
            let bytes = std::fs::read(dir.join(seed)).unwrap();
            let (first, mut r) = (bytes[0], &bytes[1..]);
            while !r.is_empty() {
                if first == 1 {
                    read_frame::<Call>(&mut r, MAX_CALL).unwrap();
                    calls += 1;
                } else {
                    if let Answer::Attributes(a) = read_frame::<Answer>(&mut r, MAX_ATTRIBUTES).unwrap() {
                        attributes(&a).unwrap();
                    }
                    answers += 1;
                }
            }
        }
        assert_eq!((answers, calls), (17, 10));
    }

    #[test]
    fn a_frame_longer_than_the_limit_is_refused_before_it_is_read() {
        let mut bytes: &[u8] = &[0xff, 0xff, 0xff, 0xff, b'{'];
        assert!(matches!(read_frame::<Answer>(&mut bytes, MAX_ANSWER), Err(ReadFailure::Closed)));
        let mut long = (70_000u32).to_be_bytes().to_vec();
        long.extend(vec![b' '; 70_000]);
        long.extend(frame(&Answer::Done).unwrap().iter());
        let mut r = &long[..];
        assert!(matches!(read_frame::<Answer>(&mut r, MAX_ANSWER), Err(ReadFailure::TooLong(70_000))));
        assert!(matches!(read_frame::<Answer>(&mut r, MAX_ANSWER), Ok(Answer::Done)), "the next frame is read in step");
    }
}
