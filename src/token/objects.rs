//! What a token holds: certificates and private keys, read as attributes (never key values).

use super::{Token, TokenError};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};

#[derive(Debug, Clone)]
pub struct CertObject {
    pub id: Vec<u8>,
    pub label: String,
    pub der: Vec<u8>,
    /// The profile marks this certificate as a trust anchor (SSMAX root / org certificate).
    pub anchor: bool,
    /// Parsed once when the object list is read (the agent reuses the list for many requests);
    /// None when the value does not parse as a certificate.
    pub parsed: Option<std::sync::Arc<x509_cert::Certificate>>,
    /// The parsed certificate's subject as text (formatting a name looks every attribute type up
    /// in const-oid's table: too slow to do per signature). Empty when it does not parse.
    pub subject: std::sync::Arc<str>,
}

/// What a token shows without a PIN (its profile and certificates): enough to judge whether it
/// is the token an operation needs, also while another request has the token itself.
#[derive(Clone)]
pub struct Shown {
    pub label: String,
    pub profile: crate::profile::Profile,
    pub certificates: Vec<CertObject>,
}

impl Shown {
    /// The parsed certificates that are not trust anchors (the holder's, and CAs kept beside
    /// them): what a message's recipients are matched against.
    pub fn holder_certificates(&self) -> Vec<x509_cert::Certificate> {
        self.certificates.iter().filter(|c| !c.anchor).filter_map(|c| c.parsed.as_deref().cloned()).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    Rsa { bits: usize },
    Ec(Option<Curve>),
    Other(String),
}

#[derive(Debug, Clone)]
pub struct KeyObject {
    pub handle: ObjectHandle,
    pub id: Vec<u8>,
    pub label: String,
    pub kind: KeyKind,
    pub can_sign: bool,
    pub can_decrypt: bool,
    pub can_derive: bool,
    pub always_authenticate: bool,
    pub sensitive: bool,
    pub extractable: bool,
}

/// DER of the namedCurve OIDs as CKA_EC_PARAMS carries them.
const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// How long object lists are reused: reading them costs ~0.4 ms each on SoftHSM2 (it revalidates
/// every object file), and a signature needs them several times. Another process may change the
/// token meanwhile, so the reuse is bounded; our own writes and logins clear it at once.
const CACHE_FOR: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct ObjectCache {
    certs: Option<(std::time::Instant, Vec<CertObject>)>,
    keys: Option<(std::time::Instant, Vec<KeyObject>)>,
    /// Keys looked up by CKA_ID alone (a signature needs one key, not the list).
    single_keys: Vec<(std::time::Instant, KeyObject)>,
}

impl Token {
    /// Objects this token shows before login may still refuse to be read until then.
    fn hidden_until_login(&self) -> bool {
        self.profile.keys.certificates_need_login && !self.is_logged_in()
    }

    /// Forget cached object lists (after a login, a logout or a write).
    pub fn invalidate_objects(&self) {
        if let Ok(mut c) = self.objects.try_borrow_mut() {
            *c = ObjectCache::default();
        }
    }

    /// Forget what a login or logout changes: private keys, and certificates only where the
    /// profile says they are private objects.
    pub fn invalidate_private_objects(&self) {
        if self.profile.keys.certificates_need_login {
            return self.invalidate_objects();
        }
        if let Ok(mut c) = self.objects.try_borrow_mut() {
            c.keys = None;
            c.single_keys.clear();
        }
    }

    pub fn certificates(&self) -> Result<Vec<CertObject>, TokenError> {
        if let Some((at, v)) = &self.objects.borrow().certs {
            if at.elapsed() < CACHE_FOR {
                return Ok(v.clone());
            }
        }
        let v = self.read_certificates()?;
        self.objects.borrow_mut().certs = Some((std::time::Instant::now(), v.clone()));
        Ok(v)
    }

    pub fn private_keys(&self) -> Result<Vec<KeyObject>, TokenError> {
        if let Some((at, v)) = &self.objects.borrow().keys {
            if at.elapsed() < CACHE_FOR {
                return Ok(v.clone());
            }
        }
        let v = self.read_private_keys()?;
        self.objects.borrow_mut().keys = Some((std::time::Instant::now(), v.clone()));
        Ok(v)
    }

    fn read_certificates(&self) -> Result<Vec<CertObject>, TokenError> {
        let handles = self.session().find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])?;
        let mut out = Vec::new();
        for h in handles {
            let attrs = match self
                .session()
                .get_attributes(h, &[AttributeType::Id, AttributeType::Label, AttributeType::Value])
            {
                Ok(a) => a,
                // OpenSC lists the JPKI signature certificate before login, but reading it then
                // fails (the card answers 6982, OpenSC says CKR_GENERAL_ERROR): it is read after
                // the login the profile asks for.
                Err(_) if self.hidden_until_login() => continue,
                Err(e) => return Err(e),
            };
            let (mut id, mut label, mut der) = (Vec::new(), String::new(), Vec::new());
            for a in attrs {
                match a {
                    Attribute::Id(v) => id = v,
                    Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::Value(v) => der = v,
                    _ => {}
                }
            }
            if der.is_empty() {
                continue;
            }
            let anchor = self.profile.is_anchor(&label, &id);
            let parsed = crate::cms::cert::parse(&der).ok().map(std::sync::Arc::new);
            let subject = parsed.as_deref().map(crate::cms::cert::subject).unwrap_or_default().into();
            out.push(CertObject { id, label, der, anchor, parsed, subject });
        }
        Ok(out)
    }

    /// What the token shows without a PIN, kept apart from the token (see `Shown`).
    pub fn shown(&self) -> Result<Shown, TokenError> {
        Ok(Shown { label: self.label.clone(), profile: self.profile.clone(), certificates: self.certificates()? })
    }

    /// Public-key objects: readable without a PIN, they show which key pairs a token holds.
    pub fn public_keys(&self) -> Result<Vec<(Vec<u8>, String, String)>, TokenError> {
        let handles = self.session().find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])?;
        let mut out = Vec::new();
        for h in handles {
            let attrs = match self.session().get_attributes(
                h,
                &[
                    AttributeType::Id,
                    AttributeType::Label,
                    AttributeType::KeyType,
                    AttributeType::Modulus,
                    AttributeType::EcParams,
                ],
            ) {
                Ok(a) => a,
                // A public key OpenSC takes from a certificate hidden until login (JPKI).
                Err(_) if self.hidden_until_login() => continue,
                Err(e) => return Err(e),
            };
            let (mut id, mut label, mut kind) = (Vec::new(), String::new(), String::from("unknown"));
            for a in attrs {
                match a {
                    Attribute::Id(v) => id = v,
                    Attribute::Label(v) => label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::Modulus(m) => {
                        kind = format!("RSA-{}", (m.len() - m.iter().take_while(|&&b| b == 0).count()) * 8)
                    }
                    Attribute::EcParams(p) => {
                        kind = match p.as_slice() {
                            P256_PARAMS => "EC P-256".into(),
                            P384_PARAMS => "EC P-384".into(),
                            _ => "EC".into(),
                        }
                    }
                    _ => {}
                }
            }
            out.push((id, label, kind));
        }
        Ok(out)
    }

    /// The private key with CKA_ID `id` (from the cached list, which a long-lived agent reuses).
    /// The private key with this CKA_ID. Only that key is read when no list is cached: every
    /// attribute read of a private object costs SoftHSM2 a decryption and a file check, and a
    /// one-shot signature needs one key.
    pub fn private_key(&self, id: &[u8]) -> Result<Option<KeyObject>, TokenError> {
        {
            let cache = self.objects.borrow();
            if let Some((at, v)) = &cache.keys {
                if at.elapsed() < CACHE_FOR {
                    return Ok(v.iter().find(|k| k.id == id).cloned());
                }
            }
            if let Some((_, k)) = cache.single_keys.iter().find(|(at, k)| k.id == id && at.elapsed() < CACHE_FOR) {
                return Ok(Some(k.clone()));
            }
        }
        let found = self.read_private_keys_matching(Some(id))?.into_iter().find(|k| k.id == id);
        if let (Some(k), Ok(mut cache)) = (&found, self.objects.try_borrow_mut()) {
            cache.single_keys.retain(|(at, old)| old.id != id && at.elapsed() < CACHE_FOR);
            cache.single_keys.push((std::time::Instant::now(), k.clone()));
        }
        Ok(found)
    }

    fn read_private_keys(&self) -> Result<Vec<KeyObject>, TokenError> {
        self.read_private_keys_matching(None)
    }

    fn read_private_keys_matching(&self, id: Option<&[u8]>) -> Result<Vec<KeyObject>, TokenError> {
        let mut template = vec![Attribute::Class(ObjectClass::PRIVATE_KEY)];
        if let Some(id) = id {
            template.push(Attribute::Id(id.to_vec()));
        }
        let handles = self.session().find_objects(&template)?;
        let mut out = Vec::new();
        for h in handles {
            let attrs = self.session().get_attributes(
                h,
                &[
                    AttributeType::Id,
                    AttributeType::Label,
                    AttributeType::KeyType,
                    AttributeType::Sign,
                    AttributeType::Decrypt,
                    AttributeType::Unwrap,
                    AttributeType::Derive,
                    AttributeType::AlwaysAuthenticate,
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Modulus,
                    AttributeType::EcParams,
                ],
            )?;
            let mut k = KeyObject {
                handle: h,
                id: Vec::new(),
                label: String::new(),
                kind: KeyKind::Other("unknown".into()),
                can_sign: false,
                can_decrypt: false,
                can_derive: false,
                always_authenticate: false,
                sensitive: true,
                extractable: false,
            };
            let mut key_type = None;
            let (mut modulus, mut ec_params) = (None, None);
            for a in attrs {
                match a {
                    Attribute::Id(v) => k.id = v,
                    Attribute::Label(v) => k.label = String::from_utf8_lossy(&v).into_owned(),
                    Attribute::KeyType(t) => key_type = Some(t),
                    Attribute::Sign(b) => k.can_sign = b,
                    Attribute::Decrypt(b) | Attribute::Unwrap(b) => k.can_decrypt |= b,
                    Attribute::Derive(b) => k.can_derive = b,
                    Attribute::AlwaysAuthenticate(b) => k.always_authenticate = b,
                    Attribute::Sensitive(b) => k.sensitive = b,
                    Attribute::Extractable(b) => k.extractable = b,
                    Attribute::Modulus(m) => modulus = Some(m),
                    Attribute::EcParams(p) => ec_params = Some(p),
                    _ => {}
                }
            }
            k.kind = match key_type {
                Some(KeyType::RSA) => {
                    let m = modulus.unwrap_or_default();
                    let lead = m.iter().take_while(|&&b| b == 0).count();
                    KeyKind::Rsa { bits: (m.len() - lead) * 8 }
                }
                Some(KeyType::EC) => KeyKind::Ec(match ec_params.as_deref() {
                    Some(P256_PARAMS) => Some(Curve::P256),
                    Some(P384_PARAMS) => Some(Curve::P384),
                    _ => None,
                }),
                Some(t) => KeyKind::Other(format!("{t}")),
                None => KeyKind::Other("unknown".into()),
            };
            out.push(k);
        }
        Ok(out)
    }
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA-{bits}"),
            KeyKind::Ec(Some(Curve::P256)) => write!(f, "EC P-256"),
            KeyKind::Ec(Some(Curve::P384)) => write!(f, "EC P-384"),
            KeyKind::Ec(None) => write!(f, "EC (other curve)"),
            KeyKind::Other(s) => write!(f, "{s}"),
        }
    }
}

pub fn hex(id: &[u8]) -> String {
    base16ct::lower::encode_string(id)
}
