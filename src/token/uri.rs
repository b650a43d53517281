//! RFC 7512 `pkcs11:` URIs: the one way a user names a module, token or object.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}", crate::tr!("uri-invalid", reason = .0))]
pub struct UriError(pub String);

/// The object class named by the `type` path attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    Cert,
    Data,
    Private,
    Public,
    SecretKey,
}

/// A parsed `pkcs11:` URI. Every attribute is optional; an absent one matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pkcs11Uri {
    pub token: Option<String>,
    pub manufacturer: Option<String>,
    pub model: Option<String>,
    pub serial: Option<String>,
    pub slot_description: Option<String>,
    pub slot_manufacturer: Option<String>,
    pub slot_id: Option<u64>,
    pub library_manufacturer: Option<String>,
    pub library_description: Option<String>,
    pub id: Option<Vec<u8>>,
    pub object: Option<String>,
    pub object_type: Option<ObjectType>,
    pub module_path: Option<PathBuf>,
    pub module_name: Option<String>,
}

impl Pkcs11Uri {
    pub fn parse(text: &str) -> Result<Self, UriError> {
        let rest = text.strip_prefix("pkcs11:").ok_or_else(|| UriError(crate::tr!("uri-no-scheme", text = text)))?;
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut uri = Pkcs11Uri::default();
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            let (name, raw) =
                attr.split_once('=').ok_or_else(|| UriError(crate::tr!("uri-path-no-equals", attribute = attr)))?;
            let bytes = percent_decode(raw)?;
            match name {
                "id" => set_once(&mut uri.id, bytes, name)?,
                "slot-id" => {
                    let s = utf8(bytes, name)?;
                    let n = s.parse::<u64>().map_err(|_| UriError(crate::tr!("uri-slot-not-number", value = s)))?;
                    set_once(&mut uri.slot_id, n, name)?
                }
                "type" => {
                    let t = match utf8(bytes, name)?.as_str() {
                        "cert" => ObjectType::Cert,
                        "data" => ObjectType::Data,
                        "private" => ObjectType::Private,
                        "public" => ObjectType::Public,
                        "secret-key" => ObjectType::SecretKey,
                        other => return Err(UriError(crate::tr!("uri-unknown-type", value = other))),
                    };
                    set_once(&mut uri.object_type, t, name)?
                }
                _ => {
                    let value = utf8(bytes, name)?;
                    let slot = match name {
                        "token" => &mut uri.token,
                        "manufacturer" => &mut uri.manufacturer,
                        "model" => &mut uri.model,
                        "serial" => &mut uri.serial,
                        "slot-description" => &mut uri.slot_description,
                        "slot-manufacturer" => &mut uri.slot_manufacturer,
                        "library-manufacturer" => &mut uri.library_manufacturer,
                        "library-description" => &mut uri.library_description,
                        "object" => &mut uri.object,
                        // RFC 7512 §2.3: library-version is informative only; we accept and ignore it.
                        "library-version" => continue,
                        n if n.starts_with("x-") => continue,
                        other => return Err(UriError(crate::tr!("uri-unknown-path-attribute", attribute = other))),
                    };
                    set_once(slot, value, name)?
                }
            }
        }
        for attr in query.into_iter().flat_map(|q| q.split('&')).filter(|a| !a.is_empty()) {
            let (name, raw) =
                attr.split_once('=').ok_or_else(|| UriError(crate::tr!("uri-query-no-equals", attribute = attr)))?;
            match name {
                "module-path" => {
                    let v = utf8(percent_decode(raw)?, name)?;
                    set_once(&mut uri.module_path, PathBuf::from(v), name)?
                }
                "module-name" => set_once(&mut uri.module_name, utf8(percent_decode(raw)?, name)?, name)?,
                // A PIN in a URI ends up in shell history, process listings and config files.
                "pin-value" | "pin-source" => return Err(UriError(crate::tr!("uri-pin-refused", attribute = name))),
                n if n.starts_with("x-") => {}
                other => return Err(UriError(crate::tr!("uri-unknown-query-attribute", attribute = other))),
            }
        }
        Ok(uri)
    }

    /// Fill every attribute this URI leaves open from `defaults`.
    pub fn or(mut self, defaults: &Pkcs11Uri) -> Self {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = defaults.$f.clone(); } )* };
        }
        fill!(
            token,
            manufacturer,
            model,
            serial,
            slot_description,
            slot_manufacturer,
            slot_id,
            library_manufacturer,
            library_description,
            id,
            object,
            object_type,
            module_path,
            module_name
        );
        self
    }

    /// Whether the token-identifying attributes match a token's reported values.
    pub fn matches_token(&self, label: &str, manufacturer: &str, model: &str, serial: &str) -> bool {
        fn ok(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w.trim_end() == have.trim_end())
        }
        ok(&self.token, label)
            && ok(&self.manufacturer, manufacturer)
            && ok(&self.model, model)
            && ok(&self.serial, serial)
    }

    /// The slot's own attributes (slot-description, slot-manufacturer) fit.
    pub fn matches_slot(&self, description: &str, manufacturer: &str) -> bool {
        fn ok(want: &Option<String>, have: &str) -> bool {
            want.as_deref().is_none_or(|w| w.trim_end() == have.trim_end())
        }
        ok(&self.slot_description, description) && ok(&self.slot_manufacturer, manufacturer)
    }

    /// The module's file fits `module-name` (RFC 7512 §2.3: the library's name without directory,
    /// "lib" prefix or suffix: `softhsm2` for /usr/lib/softhsm/libsofthsm2.so).
    pub fn matches_module(&self, path: &std::path::Path) -> bool {
        let Some(want) = &self.module_name else { return true };
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        let stem = file.split('.').next().unwrap_or("");
        stem == want || stem.strip_prefix("lib") == Some(want.as_str()) || file == *want
    }

    pub fn names_token(&self) -> bool {
        self.token.is_some()
            || self.serial.is_some()
            || self.model.is_some()
            || self.manufacturer.is_some()
            || self.slot_id.is_some()
            || self.slot_description.is_some()
    }

    /// `self` with the token-selecting attributes of `other` (a key URI that names its token):
    /// an attribute both name differently is an error that names it.
    pub fn with_token_of(mut self, other: &Pkcs11Uri) -> Result<Self, UriError> {
        macro_rules! take {
            ($($f:ident: $name:literal),*) => { $(
                match (&self.$f, &other.$f) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(UriError(crate::tr!(
                            "uri-contradiction",
                            attribute = $name,
                            token = format!("{a:?}"),
                            key = format!("{b:?}")
                        )))
                    }
                    (None, Some(b)) => self.$f = Some(b.clone()),
                    _ => {}
                }
            )* };
        }
        take!(
            token: "token",
            manufacturer: "manufacturer",
            model: "model",
            serial: "serial",
            slot_description: "slot-description",
            slot_manufacturer: "slot-manufacturer",
            slot_id: "slot-id",
            library_manufacturer: "library-manufacturer",
            library_description: "library-description",
            module_path: "module-path",
            module_name: "module-name"
        );
        Ok(self)
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), UriError> {
    if slot.is_some() {
        return Err(UriError(crate::tr!("uri-twice", attribute = name)));
    }
    *slot = Some(value);
    Ok(())
}

fn utf8(bytes: Vec<u8>, name: &str) -> Result<String, UriError> {
    String::from_utf8(bytes).map_err(|_| UriError(crate::tr!("uri-not-utf8", attribute = name)))
}

fn percent_decode(s: &str) -> Result<Vec<u8>, UriError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| UriError(crate::tr!("uri-bad-escape", text = s)))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn percent_encode(bytes: &[u8], all: bool) -> String {
    let mut s = String::new();
    for &c in bytes {
        let unreserved = c.is_ascii_alphanumeric() || b"-._~".contains(&c);
        if unreserved && !all {
            s.push(c as char);
        } else {
            s.push_str(&format!("%{c:02X}"));
        }
    }
    s
}

impl fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut path = Vec::new();
        let mut push = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                path.push(format!("{k}={}", percent_encode(v.as_bytes(), false)));
            }
        };
        push("token", &self.token);
        push("manufacturer", &self.manufacturer);
        push("model", &self.model);
        push("serial", &self.serial);
        push("object", &self.object);
        if let Some(id) = &self.id {
            path.push(format!("id={}", percent_encode(id, true)));
        }
        if let Some(t) = self.object_type {
            let t = match t {
                ObjectType::Cert => "cert",
                ObjectType::Data => "data",
                ObjectType::Private => "private",
                ObjectType::Public => "public",
                ObjectType::SecretKey => "secret-key",
            };
            path.push(format!("type={t}"));
        }
        write!(f, "pkcs11:{}", path.join(";"))?;
        if let Some(p) = &self.module_path {
            write!(f, "?module-path={}", percent_encode(p.to_string_lossy().as_bytes(), false).replace("%2F", "/"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_names_its_token_and_may_not_contradict_the_token_named() {
        let key = Pkcs11Uri::parse("pkcs11:token=Card;serial=42;id=%01?module-path=/m.so").unwrap();
        let t = Pkcs11Uri::default().with_token_of(&key).unwrap();
        assert_eq!((t.token.as_deref(), t.serial.as_deref(), t.id), (Some("Card"), Some("42"), None));
        assert_eq!(t.module_path.as_deref(), Some(std::path::Path::new("/m.so")));
        let same = Pkcs11Uri::parse("pkcs11:token=Card").unwrap().with_token_of(&key).unwrap();
        assert_eq!(same.serial.as_deref(), Some("42"));
        let e = Pkcs11Uri::parse("pkcs11:serial=7").unwrap().with_token_of(&key).unwrap_err();
        assert!(e.to_string().contains("serial \"7\" and the key names \"42\""), "{e}");
    }

    #[test]
    fn module_name_is_the_library_without_directory_prefix_or_suffix() {
        let u = Pkcs11Uri::parse("pkcs11:?module-name=softhsm2").unwrap();
        assert!(u.matches_module(std::path::Path::new("/usr/lib/softhsm/libsofthsm2.so")));
        assert!(!u.matches_module(std::path::Path::new("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")));
        let o = Pkcs11Uri::parse("pkcs11:?module-name=opensc-pkcs11").unwrap();
        assert!(o.matches_module(std::path::Path::new("/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so")));
    }

    #[test]
    fn parses_token_object_and_module_path() {
        let u = Pkcs11Uri::parse(
            "pkcs11:token=My%20Card;id=%01%a0;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so",
        )
        .unwrap();
        assert_eq!(u.token.as_deref(), Some("My Card"));
        assert_eq!(u.id.as_deref(), Some(&[0x01, 0xa0][..]));
        assert_eq!(u.object_type, Some(ObjectType::Private));
        assert_eq!(u.module_path, Some(PathBuf::from("/usr/lib/softhsm/libsofthsm2.so")));
    }

    #[test]
    fn refuses_pin_value_in_uri() {
        let e = Pkcs11Uri::parse("pkcs11:token=a?pin-value=1234").unwrap_err();
        assert!(e.0.contains("pin-value"));
        assert!(!e.0.contains("1234"));
    }

    #[test]
    fn refuses_unknown_attribute_duplicate_and_bad_escape() {
        assert!(Pkcs11Uri::parse("pkcs11:tokn=a").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:token=a;token=b").is_err());
        assert!(Pkcs11Uri::parse("pkcs11:id=%zz").is_err());
        assert!(Pkcs11Uri::parse("pkcs12:token=a").is_err());
    }

    #[test]
    fn display_round_trips() {
        let text = "pkcs11:token=demo%20token;id=%01;type=cert?module-path=/usr/lib/x.so";
        let u = Pkcs11Uri::parse(text).unwrap();
        assert_eq!(Pkcs11Uri::parse(&u.to_string()).unwrap(), u);
    }

    #[test]
    fn defaults_fill_only_missing_attributes() {
        let u = Pkcs11Uri::parse("pkcs11:token=a").unwrap();
        let d = Pkcs11Uri::parse("pkcs11:token=b;id=%02?module-path=/m.so").unwrap();
        let m = u.or(&d);
        assert_eq!(m.token.as_deref(), Some("a"));
        assert_eq!(m.id.as_deref(), Some(&[2u8][..]));
        assert_eq!(m.module_path, Some(PathBuf::from("/m.so")));
    }
}
