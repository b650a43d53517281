//! The JPKI application of a My Number card as OpenSC's jpki driver (card-jpki.c,
//! pkcs15-jpki.c) drives it: SELECT by AID, SELECT of elementary files by identifier, READ BINARY
//! of the certificates, VERIFY of the two PINs with their own retry counters, and COMPUTE DIGITAL
//! SIGNATURE (CLA 80, INS 2A) that pads a DigestInfo with PKCS#1 v1.5 on the card. No command
//! decrypts: the card cannot.

use super::{sw, Apdu, Applet, Reply};

/// The JPKI application identifier (jpki.h: AID_JPKI).
const AID: [u8; 10] = [0xD3, 0x92, 0xF0, 0x00, 0x26, 0x01, 0x00, 0x00, 0x00, 0x01];

/// Elementary files of the JPKI AP (jpki.h, pkcs15-jpki.c).
const AUTH_CERT: u16 = 0x000A;
const SIGN_CERT: u16 = 0x0001;
const AUTH_CA: u16 = 0x000B;
const SIGN_CA: u16 = 0x0002;
const AUTH_KEY: u16 = 0x0017;
const AUTH_PIN: u16 = 0x0018;
const SIGN_KEY: u16 = 0x001A;
const SIGN_PIN: u16 = 0x001B;

struct Pin {
    value: Vec<u8>,
    tries: u8,
    max: u8,
    verified: bool,
}

impl Pin {
    fn verify(&mut self, given: &[u8]) -> Reply {
        if self.tries == 0 {
            return Reply::sw(sw::AUTH_BLOCKED);
        }
        if given.is_empty() {
            // The driver reads the counter this way and expects 63Cx whatever the state.
            return Reply::sw(sw::tries_left(self.tries));
        }
        if given == self.value {
            self.tries = self.max;
            self.verified = true;
            Reply::sw(sw::OK)
        } else {
            self.tries -= 1;
            self.verified = false;
            Reply::sw(if self.tries == 0 { sw::AUTH_BLOCKED } else { sw::tries_left(self.tries) })
        }
    }
}

pub struct Jpki {
    ap_selected: bool,
    current: Option<u16>,
    auth_pin: Pin,
    sign_pin: Pin,
    auth_key: rsa::RsaPrivateKey,
    sign_key: rsa::RsaPrivateKey,
    files: Vec<(u16, Vec<u8>)>,
    /// Signatures made with the signature key.
    pub signatures: usize,
}

/// The certificates of one card (DER): the holder's two, and the two JPKI CA certificates.
pub struct Certificates<'a> {
    pub auth: &'a [u8],
    pub sign: &'a [u8],
    pub auth_ca: &'a [u8],
    pub sign_ca: &'a [u8],
}

impl Jpki {
    /// `auth_pin`: 4 digits, 3 tries. `sign_password`: 6–16 of A–Z0–9, 5 tries (J-LIS).
    pub fn new(
        auth_pin: &str,
        sign_password: &str,
        auth_key: rsa::RsaPrivateKey,
        sign_key: rsa::RsaPrivateKey,
        certs: Certificates,
    ) -> Jpki {
        let files = vec![
            (AUTH_CERT, certs.auth.to_vec()),
            (SIGN_CERT, certs.sign.to_vec()),
            (AUTH_CA, certs.auth_ca.to_vec()),
            (SIGN_CA, certs.sign_ca.to_vec()),
        ];
        Jpki {
            ap_selected: false,
            current: None,
            auth_pin: Pin { value: auth_pin.as_bytes().to_vec(), tries: 3, max: 3, verified: false },
            sign_pin: Pin { value: sign_password.as_bytes().to_vec(), tries: 5, max: 5, verified: false },
            auth_key,
            sign_key,
            files,
            signatures: 0,
        }
    }

    pub fn sign_tries(&self) -> u8 {
        self.sign_pin.tries
    }

    fn select(&mut self, a: &Apdu) -> Reply {
        match a.p1 {
            0x04 if a.data == AID => {
                self.ap_selected = true;
                self.current = None;
                Reply::sw(sw::OK)
            }
            0x02 if self.ap_selected && a.data.len() == 2 => {
                let id = u16::from_be_bytes([a.data[0], a.data[1]]);
                let known =
                    self.files.iter().any(|(f, _)| *f == id) || [AUTH_KEY, AUTH_PIN, SIGN_KEY, SIGN_PIN].contains(&id);
                if known {
                    self.current = Some(id);
                    Reply::sw(sw::OK)
                } else {
                    Reply::sw(sw::NOT_FOUND)
                }
            }
            _ => Reply::sw(sw::NOT_FOUND),
        }
    }

    fn read_binary(&self, a: &Apdu) -> Reply {
        let Some(id) = self.current else { return Reply::sw(sw::NO_EF_SELECTED) };
        let Some((_, data)) = self.files.iter().find(|(f, _)| *f == id) else {
            return Reply::sw(sw::CONDITIONS_NOT_SATISFIED);
        };
        // The signature certificate carries the holder's name, address, birth date and sex.
        if id == SIGN_CERT && !self.sign_pin.verified {
            return Reply::sw(sw::SECURITY_NOT_SATISFIED);
        }
        let offset = usize::from(u16::from_be_bytes([a.p1 & 0x7F, a.p2]));
        if offset > data.len() {
            return Reply::sw(sw::OFFSET_BEYOND);
        }
        let end = (offset + a.le.max(1)).min(data.len());
        Reply::ok(data[offset..end].to_vec())
    }

    fn verify(&mut self, a: &Apdu) -> Reply {
        match self.current {
            Some(AUTH_PIN) => self.auth_pin.verify(&a.data),
            Some(SIGN_PIN) => self.sign_pin.verify(&a.data),
            _ => Reply::sw(sw::CONDITIONS_NOT_SATISFIED),
        }
    }

    fn sign(&mut self, a: &Apdu) -> Reply {
        let (key, verified) = match self.current {
            Some(AUTH_KEY) => (&self.auth_key, self.auth_pin.verified),
            Some(SIGN_KEY) => (&self.sign_key, self.sign_pin.verified),
            _ => return Reply::sw(sw::CONDITIONS_NOT_SATISFIED),
        };
        if !verified {
            return Reply::sw(sw::SECURITY_NOT_SATISFIED);
        }
        let Ok(sig) = key.sign(rsa::Pkcs1v15Sign::new_unprefixed(), &a.data) else {
            return Reply::sw(sw::WRONG_DATA);
        };
        if self.current == Some(SIGN_KEY) {
            self.signatures += 1;
        }
        Reply::ok(sig)
    }
}

impl Applet for Jpki {
    fn atr(&self) -> Vec<u8> {
        // The ATR OpenSC's jpki driver knows the card by (card-jpki.c jpki_atrs).
        vec![0x3B, 0xE0, 0x00, 0xFF, 0x81, 0x31, 0xFE, 0x45, 0x14]
    }

    fn reset(&mut self) {
        self.ap_selected = false;
        self.current = None;
        self.auth_pin.verified = false;
        self.sign_pin.verified = false;
    }

    fn command(&mut self, a: &Apdu) -> Reply {
        match (a.cla, a.ins) {
            (0x00, 0xA4) => self.select(a),
            (0x00, 0xB0) => self.read_binary(a),
            (0x00, 0x20) => self.verify(a),
            (0x80, 0x2A) if (a.p1, a.p2) == (0x00, 0x80) => self.sign(a),
            (0x00 | 0x80, _) => Reply::sw(sw::INS_NOT_SUPPORTED),
            _ => Reply::sw(sw::CLA_NOT_SUPPORTED),
        }
    }
}
