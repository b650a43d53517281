//! The token as a CMS `Decryptor`: RSA key transport and ECDH key agreement on the card.
//! Certificates are read without a PIN; the first private-key operation logs in.

use super::calls::{Digest, Mech};
use super::objects::{CertObject, KeyObject};
use super::pin::PinPrompt;
use super::raw::Op;
use super::{Token, TokenError};
use crate::cms::decrypt::{Decryptor, RsaOp};
use crate::cms::oaep::OaepHash;
use crate::cms::CmsError;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass};
use der::Decode;
use x509_cert::Certificate;
use zeroize::Zeroizing;

pub struct TokenDecryptor<'t, 'p> {
    token: &'t mut Token,
    prompt: &'p dyn PinPrompt,
    allow_final_try: bool,
    operation: String,
    certs: Vec<Certificate>,
    objects: Vec<CertObject>,
    keys: Option<Vec<KeyObject>>,
}

impl<'t, 'p> TokenDecryptor<'t, 'p> {
    pub fn new(
        token: &'t mut Token,
        prompt: &'p dyn PinPrompt,
        allow_final_try: bool,
        operation: &str,
    ) -> Result<Self, TokenError> {
        let wanted = token.profile.decryption_ids();
        let mut certs = Vec::new();
        let mut objects = Vec::new();
        for c in token.certificates()? {
            if c.anchor || c.id.is_empty() || (!wanted.is_empty() && !wanted.contains(&c.id)) {
                continue;
            }
            // A certificate that does not parse cannot name a recipient; a CA has no mail key.
            if let Ok(parsed) = Certificate::from_der(&c.der).map_err(|_| ()).and_then(|p| {
                if crate::cms::cert::is_ca(&p) {
                    Err(())
                } else {
                    Ok(p)
                }
            }) {
                certs.push(parsed);
                objects.push(c);
            }
        }
        Ok(TokenDecryptor {
            token,
            prompt,
            allow_final_try,
            operation: operation.to_string(),
            certs,
            objects,
            keys: None,
        })
    }

    fn key(&mut self, index: usize) -> Result<KeyObject, CmsError> {
        if self.keys.is_none() {
            self.token.login(self.prompt, &self.operation, self.allow_final_try)?;
            self.keys = Some(self.token.private_keys()?);
        }
        let id = &self.objects[index].id;
        self.keys.as_ref().and_then(|ks| ks.iter().find(|k| &k.id == id)).cloned().ok_or_else(|| {
            CmsError::NoKey(crate::tr!("key-certificate-without-key", label = self.objects[index].label))
        })
    }

    fn run(&mut self, key: &KeyObject, mech: &Mech, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        if key.always_authenticate {
            self.token.fresh_pin_for_context(self.prompt, &self.operation, self.allow_final_try)?;
        }
        let context_pin = if key.always_authenticate { Some(self.token.context_pin()?) } else { None };
        let out = self
            .token
            .session()
            .single_call(Op::Decrypt, mech, key.handle, context_pin, data)
            .map_err(|e| self.token.explain_failure(e))
            .map_err(|t| match t {
                // The data did not decrypt under this key: said no more precisely than any other
                // failure of the content (cms::decrypt answers them all alike).
                TokenError::Pkcs11 { .. } if !t.is_not_present() => {
                    CmsError::Decrypt(crate::tr!("decrypt-failed-uniform"))
                }
                t => CmsError::from(t),
            })?;
        Ok(Zeroizing::new(out))
    }
}

fn oaep_digest(h: OaepHash) -> Digest {
    match h {
        OaepHash::Sha1 => Digest::Sha1,
        OaepHash::Sha256 => Digest::Sha256,
        OaepHash::Sha384 => Digest::Sha384,
        OaepHash::Sha512 => Digest::Sha512,
    }
}

impl Decryptor for TokenDecryptor<'_, '_> {
    fn certificates(&self) -> &[Certificate] {
        &self.certs
    }

    fn supports(&self, _index: usize, op: RsaOp) -> bool {
        let p = &self.token.profile;
        match op {
            RsaOp::Pkcs1v15 => p.allows_decrypt("RSA_PKCS"),
            RsaOp::Oaep(h) => p.allows_decrypt("RSA_PKCS_OAEP") && p.oaep_hash_on_token(h.name()),
            RsaOp::Raw => p.allows_decrypt("RSA_X_509"),
        }
    }

    fn cannot_decrypt(&self) -> Option<String> {
        let p = &self.token.profile;
        (!p.keys.can_decrypt)
            .then(|| p.keys.no_decrypt_reason.clone().unwrap_or_else(|| crate::tr!("key-token-cannot-decrypt")))
    }

    fn rsa_decrypt(&mut self, index: usize, op: RsaOp, data: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        let key = self.key(index)?;
        let mech = match op {
            RsaOp::Pkcs1v15 => Mech::RsaPkcs,
            RsaOp::Oaep(h) => Mech::RsaOaep { digest: oaep_digest(h) },
            RsaOp::Raw => Mech::RsaX509,
        };
        self.run(&key, &mech, data)
    }

    fn ecdh(&mut self, index: usize, peer_point: &[u8]) -> Result<Zeroizing<Vec<u8>>, CmsError> {
        if !self.token.profile.allows_decrypt("ECDH1_DERIVE") {
            return Err(CmsError::CannotDecrypt(crate::tr!("key-no-ecdh", token = self.token.label)));
        }
        let key = self.key(index)?;
        let field_len =
            match &self.certs[index].tbs_certificate.subject_public_key_info.subject_public_key.raw_bytes().len() {
                65 => 32,
                97 => 48,
                n => return Err(CmsError::CannotDecrypt(format!("EC key with a {n}-byte point"))),
            };
        // The peer point must be on our curve before the token sees it.
        let ok = match field_len {
            32 => p256::PublicKey::from_sec1_bytes(peer_point).is_ok(),
            _ => p384::PublicKey::from_sec1_bytes(peer_point).is_ok(),
        };
        if !ok {
            return Err(CmsError::Malformed(
                "the sender's ephemeral key is not a point on the recipient's curve".into(),
            ));
        }
        let z = self.token.ecdh_secret(&key, peer_point, field_len).map_err(|e| match e {
            TokenError::NoKey(m) => CmsError::Decrypt(m),
            e => CmsError::from(e),
        })?;
        Ok(z)
    }
}

impl Token {
    /// ECDH with the key on the token: the raw shared secret Z (`len` bytes). Z leaves the token
    /// as a session object, as it must for the X9.63 KDF; the private key never does.
    pub fn ecdh_secret(
        &self,
        key: &KeyObject,
        peer_point: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, TokenError> {
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
            Attribute::ValueLen((len as u64).into()),
        ];
        let session = self.session();
        let derived = session.derive_key(&Mech::Ecdh1Derive { peer: peer_point.to_vec() }, key.handle, &template)?;
        let value = session.get_attributes(derived, &[AttributeType::Value]);
        let _ = session.destroy_object(derived);
        let z = value?
            .into_iter()
            .find_map(|a| if let Attribute::Value(v) = a { Some(v) } else { None })
            .ok_or_else(|| TokenError::NoKey(crate::tr!("key-no-ecdh-secret")))?;
        Ok(Zeroizing::new(z))
    }
}
