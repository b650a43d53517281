//! A PIV card application (NIST SP 800-73-4 part 2) as OpenSC's PIV driver (card-piv.c) drives
//! it: SELECT of the PIV AID, GET DATA of the data objects, VERIFY with the card's own retry
//! counter, RESET RETRY COUNTER with the PUK, and GENERAL AUTHENTICATE for RSA-2048 (raw RSA on
//! the card: the host pads) and P-256 (ECDSA over a hash, ECDH).

use super::{find_tag, sw, tlv, Apdu, Applet, Reply};
use std::collections::BTreeMap;

/// The PIV application identifier (SP 800-73-4 part 1, 2.2), short form.
const AID: [u8; 9] = [0xA0, 0x00, 0x00, 0x03, 0x08, 0x00, 0x00, 0x10, 0x00];

/// Key slots (SP 800-73-4 part 1, table 4b).
pub const AUTH: u8 = 0x9A;
pub const SIGN: u8 = 0x9C;
pub const KEY_MGMT: u8 = 0x9D;
pub const CARD_AUTH: u8 = 0x9E;

/// Algorithm identifiers (SP 800-78-4, table 6-2).
const ALG_RSA_2048: u8 = 0x07;
const ALG_P256: u8 = 0x11;

pub enum Key {
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::SecretKey),
}

pub struct Piv {
    pin: [u8; 8],
    puk: [u8; 8],
    pin_tries: u8,
    puk_tries: u8,
    max_tries: u8,
    verified: bool,
    /// "PIN Always" for the signature key: one VERIFY buys one 9C operation.
    sign_allowed: bool,
    keys: BTreeMap<u8, Key>,
    objects: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Cryptographic operations done, per slot (what the test can check happened on the card).
    pub operations: BTreeMap<u8, usize>,
}

/// PINs are padded to 8 bytes with 0xFF (SP 800-73-4 part 2, 3.2.1).
fn padded(pin: &str) -> [u8; 8] {
    let mut p = [0xFF; 8];
    p[..pin.len()].copy_from_slice(pin.as_bytes());
    p
}

/// The data object tag of the certificate for a key slot (SP 800-73-4 part 1, table 3).
fn cert_tag(slot: u8) -> Vec<u8> {
    match slot {
        AUTH => vec![0x5F, 0xC1, 0x05],
        SIGN => vec![0x5F, 0xC1, 0x0A],
        KEY_MGMT => vec![0x5F, 0xC1, 0x0B],
        _ => vec![0x5F, 0xC1, 0x01],
    }
}

/// The Printed Information object: readable only after the PIN (OpenSC reads it to learn
/// whether the card is still verified).
const PRINTED_INFO: [u8; 3] = [0x5F, 0xC1, 0x09];

impl Piv {
    /// A card with PIN `pin`, PUK `puk` and the card's retry limit (3 unless an issuer sets more).
    pub fn new(pin: &str, puk: &str, max_tries: u8) -> Piv {
        let mut objects = BTreeMap::new();
        // Discovery object: the PIV AID and the PIN usage policy "application PIN only".
        let discovery = [tlv(&[0x4F], &[AID.as_slice(), &[0x01, 0x00]].concat()), tlv(&[0x5F, 0x2F], &[0x40, 0x00])];
        objects.insert(vec![0x7E], tlv(&[0x7E], &discovery.concat()));
        // CHUID: FASC-N of a PIV-I card (agency 9999), a GUID, an expiry date, an empty signature.
        let fascn = [
            0xD4, 0xE7, 0x39, 0xDA, 0x73, 0x9C, 0xED, 0x39, 0xCE, 0x73, 0x9D, 0x83, 0x68, 0x58, 0x21, 0x08, 0x42, 0x10,
            0x84, 0x21, 0xC8, 0x42, 0x10, 0xC3, 0xEB,
        ];
        let guid = *b"ssmax-virt-piv-1";
        let chuid = [
            tlv(&[0x30], &fascn),
            tlv(&[0x34], &guid),
            tlv(&[0x35], b"20301231"),
            tlv(&[0x3E], &[]),
            tlv(&[0xFE], &[]),
        ];
        objects.insert(vec![0x5F, 0xC1, 0x02], tlv(&[0x53], &chuid.concat()));
        let printed = [tlv(&[0x01], b"Virtual Card Holder"), tlv(&[0xFE], &[])];
        objects.insert(PRINTED_INFO.to_vec(), tlv(&[0x53], &printed.concat()));
        Piv {
            pin: padded(pin),
            puk: padded(puk),
            pin_tries: max_tries,
            puk_tries: max_tries,
            max_tries,
            verified: false,
            sign_allowed: false,
            keys: BTreeMap::new(),
            objects,
            operations: BTreeMap::new(),
        }
    }

    /// Put a key and its certificate (DER) into a slot, as the issuer's card management does.
    pub fn with_key(mut self, slot: u8, key: Key, cert_der: &[u8]) -> Piv {
        let object = [tlv(&[0x70], cert_der), tlv(&[0x71], &[0x00]), tlv(&[0xFE], &[])];
        self.objects.insert(cert_tag(slot), tlv(&[0x53], &object.concat()));
        self.keys.insert(slot, key);
        self
    }

    pub fn pin_tries(&self) -> u8 {
        self.pin_tries
    }

    fn get_data(&self, a: &Apdu) -> Reply {
        if (a.p1, a.p2) != (0x3F, 0xFF) {
            return Reply::sw(sw::WRONG_P1P2);
        }
        let Some(tag) = find_tag(&a.data, 0x5C) else { return Reply::sw(sw::WRONG_DATA) };
        if tag == PRINTED_INFO && !self.verified {
            return Reply::sw(sw::SECURITY_NOT_SATISFIED);
        }
        match self.objects.get(tag) {
            Some(o) => Reply::ok(o.clone()),
            None => Reply::sw(sw::NOT_FOUND),
        }
    }

    fn verify(&mut self, a: &Apdu) -> Reply {
        if a.p2 != 0x80 {
            return Reply::sw(sw::REF_NOT_FOUND);
        }
        if a.p1 == 0xFF {
            self.verified = false;
            self.sign_allowed = false;
            return Reply::sw(sw::OK);
        }
        if self.pin_tries == 0 {
            return Reply::sw(sw::AUTH_BLOCKED);
        }
        if a.data.is_empty() {
            return Reply::sw(if self.verified { sw::OK } else { sw::tries_left(self.pin_tries) });
        }
        if a.data.len() != 8 {
            return Reply::sw(sw::WRONG_DATA);
        }
        if a.data == self.pin {
            self.pin_tries = self.max_tries;
            self.verified = true;
            self.sign_allowed = true;
            Reply::sw(sw::OK)
        } else {
            self.pin_tries -= 1;
            self.verified = false;
            self.sign_allowed = false;
            Reply::sw(if self.pin_tries == 0 { sw::AUTH_BLOCKED } else { sw::tries_left(self.pin_tries) })
        }
    }

    fn reset_retry_counter(&mut self, a: &Apdu) -> Reply {
        if a.p2 != 0x80 || a.data.len() != 16 {
            return Reply::sw(sw::WRONG_DATA);
        }
        if self.puk_tries == 0 {
            return Reply::sw(sw::AUTH_BLOCKED);
        }
        if a.data[..8] != self.puk {
            self.puk_tries -= 1;
            return Reply::sw(sw::tries_left(self.puk_tries));
        }
        self.puk_tries = self.max_tries;
        self.pin.copy_from_slice(&a.data[8..]);
        self.pin_tries = self.max_tries;
        Reply::sw(sw::OK)
    }

    fn general_authenticate(&mut self, a: &Apdu) -> Reply {
        let Some(template) = find_tag(&a.data, 0x7C) else { return Reply::sw(sw::WRONG_DATA) };
        let Some(key) = self.keys.get(&a.p2) else { return Reply::sw(sw::NOT_FOUND) };
        let allowed = match a.p2 {
            CARD_AUTH => true,
            SIGN => self.verified && self.sign_allowed,
            _ => self.verified,
        };
        if !allowed {
            return Reply::sw(sw::SECURITY_NOT_SATISFIED);
        }
        let result = match (key, a.p1) {
            (Key::Rsa(k), ALG_RSA_2048) => {
                let Some(c) = find_tag(template, 0x81) else { return Reply::sw(sw::WRONG_DATA) };
                let c = rsa::BigUint::from_bytes_be(c);
                let Ok(m) = rsa::hazmat::rsa_decrypt_and_check(k.as_ref(), Some(&mut rand_core::OsRng), &c) else {
                    return Reply::sw(sw::WRONG_DATA);
                };
                let mut out = m.to_bytes_be();
                while out.len() < 256 {
                    out.insert(0, 0);
                }
                out
            }
            (Key::P256(k), ALG_P256) => {
                if let Some(point) = find_tag(template, 0x85) {
                    let Ok(peer) = p256::PublicKey::from_sec1_bytes(point) else { return Reply::sw(sw::WRONG_DATA) };
                    let shared = p256::ecdh::diffie_hellman(k.to_nonzero_scalar(), peer.as_affine());
                    shared.raw_secret_bytes().to_vec()
                } else if let Some(hash) = find_tag(template, 0x81) {
                    use p256::ecdsa::signature::hazmat::PrehashSigner;
                    let signer = p256::ecdsa::SigningKey::from(k);
                    let Ok(sig): Result<p256::ecdsa::Signature, _> = signer.sign_prehash(hash) else {
                        return Reply::sw(sw::WRONG_DATA);
                    };
                    sig.to_der().as_bytes().to_vec()
                } else {
                    return Reply::sw(sw::WRONG_DATA);
                }
            }
            _ => return Reply::sw(sw::WRONG_P1P2),
        };
        if a.p2 == SIGN {
            self.sign_allowed = false;
        }
        *self.operations.entry(a.p2).or_default() += 1;
        Reply::ok(tlv(&[0x7C], &tlv(&[0x82], &result)))
    }
}

impl Applet for Piv {
    fn atr(&self) -> Vec<u8> {
        // A T=1 card whose historical bytes name no vendor, so OpenSC must find PIV by its AID.
        super::with_tck(&[0x3B, 0x88, 0x80, 0x01, b'V', b'P', b'I', b'V', b'C', b'A', b'R', b'D'])
    }

    fn reset(&mut self) {
        self.verified = false;
        self.sign_allowed = false;
    }

    fn command(&mut self, a: &Apdu) -> Reply {
        if a.cla & !0x10 != 0 {
            return Reply::sw(sw::CLA_NOT_SUPPORTED);
        }
        match a.ins {
            0xA4 if a.p1 == 0x04 => {
                if a.data.len() >= 5 && a.data[..5] == AID[..5] {
                    // Application property template: the PIX and the coexistent tag allocation authority.
                    let apt = [tlv(&[0x4F], &AID[5..]), tlv(&[0x79], &tlv(&[0x4F], &AID[..5]))];
                    Reply::ok(tlv(&[0x61], &apt.concat()))
                } else {
                    Reply::sw(sw::NOT_FOUND)
                }
            }
            0xCB => self.get_data(a),
            0x20 => self.verify(a),
            0x2C => self.reset_retry_counter(a),
            0x87 => self.general_authenticate(a),
            _ => Reply::sw(sw::INS_NOT_SUPPORTED),
        }
    }
}
