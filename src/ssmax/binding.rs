//! Each protected attachment bound to who encrypted it, under which label and file name
//! (docs/ssmax-mail-profile.md, "Binding"). The binding is an authenticated attribute of the
//! AuthEnvelopedData: its DER is the AES-GCM additional data, so it cannot be changed, and an
//! envelope cannot be passed off under another sender, label or name, without the content
//! failing to open. Re-keying keeps it as it is.
//!
//! A forwarder keeps the first sender's binding and adds, unauthenticated but inside its own
//! signed mail, a proof that it could open the envelope itself: a MAC under a key derived from
//! the content key. Only someone who held the content key can make it, so an organisation
//! never re-keys for a user an envelope that user could not open (one encrypted to the
//! organisation by someone else).

use super::SSMAX_UUID;
use crate::cms::asn1::BerSetOf;
use crate::cms::decrypt::Envelope;
use crate::cms::signed::{Oid, RawAttribute};
use crate::cms::CmsError;
use cms::cert::IssuerAndSerialNumber;
use der::asn1::{OctetString, Utf8StringRef};
use der::{Decode, Encode, Sequence};
use x509_cert::Certificate;

/// id-ssmax.4: the attachment's sender, label and file name (an authenticated attribute).
pub fn oid_attachment() -> Oid {
    Oid::uuid(SSMAX_UUID, &[4])
}

/// id-ssmax.5: a forwarder's proof that it held the content key (an unauthenticated attribute).
pub fn oid_forwarded() -> Oid {
    Oid::uuid(SSMAX_UUID, &[5])
}

/// Forwards an envelope may record; each costs a MAC to check.
pub const MAX_FORWARDS: usize = 16;

const PROOF_INFO: &[u8] = b"SSMAX forward proof v1";

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct AttachmentDer<'a> {
    originator: IssuerAndSerialNumber,
    label: Utf8StringRef<'a>,
    filename: Utf8StringRef<'a>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ForwardedDer {
    forwarder: IssuerAndSerialNumber,
    proof: OctetString,
}

/// What an envelope was bound to when it was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub originator: IssuerAndSerialNumber,
    pub label: String,
    pub filename: String,
}

/// Who an attachment came from, as the binding and the proofs show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Encrypted by the sender.
    Sender,
    /// Forwarded by the sender, who held its key. Who first encrypted it is only what the
    /// binding says: whoever makes an envelope writes its binding and can prove they hold its key,
    /// so that name is shown nowhere as a fact.
    Forwarded,
}

fn malformed(what: &str) -> impl Fn(der::Error) -> CmsError + '_ {
    move |e| CmsError::Malformed(format!("{what}: {e}"))
}

pub fn ias(cert: &Certificate) -> IssuerAndSerialNumber {
    IssuerAndSerialNumber {
        issuer: cert.tbs_certificate.issuer.clone(),
        serial_number: cert.tbs_certificate.serial_number.clone(),
    }
}

/// A certificate named by issuer and serial, for messages.
pub fn describe(who: &IssuerAndSerialNumber) -> String {
    // As `openssl x509 -serial` shows it: without the sign byte DER puts before a high bit.
    let bytes = who.serial_number.as_bytes();
    let bytes = match bytes {
        [0, next, ..] if *next >= 0x80 => &bytes[1..],
        _ => bytes,
    };
    let serial: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    crate::tr!("ssmax-binding-certificate", serial = serial, issuer = crate::cms::cert::name(&who.issuer))
}

/// The authenticated attributes of an attachment `sender` encrypts: content-type (id-data) and
/// the binding.
pub fn auth_attrs(sender: &Certificate, label: &str, filename: &str) -> Result<BerSetOf<RawAttribute>, CmsError> {
    let bad = malformed("attachment binding");
    let binding = AttachmentDer {
        originator: ias(sender),
        label: Utf8StringRef::new(label).map_err(&bad)?,
        filename: Utf8StringRef::new(filename).map_err(&bad)?,
    };
    let content_type =
        RawAttribute::new(&Oid::from_const(const_oid::db::rfc5911::ID_CONTENT_TYPE), const_oid::db::rfc5911::ID_DATA)?;
    BerSetOf::from_vec(vec![content_type, RawAttribute::new(&oid_attachment(), binding)?]).map_err(bad)
}

/// The binding of an envelope; an envelope without exactly one is not an SSMAX attachment.
pub fn read(env: &Envelope, label: &str) -> Result<Binding, CmsError> {
    let unbound = || CmsError::Verify(crate::tr!("ssmax-unbound", label = crate::l10n::escaped(label)));
    let attrs = env.auth_attrs.as_ref().ok_or_else(unbound)?;
    let mut found = attrs.iter().filter(|a| a.is(&oid_attachment()));
    let (Some(a), None) = (found.next(), found.next()) else { return Err(unbound()) };
    let der = a.value()?.to_der().map_err(malformed("attachment binding"))?;
    let b = AttachmentDer::from_der(&der).map_err(malformed("attachment binding"))?;
    Ok(Binding {
        originator: b.originator,
        label: b.label.as_str().to_string(),
        filename: b.filename.as_str().to_string(),
    })
}

/// The MAC that shows `forwarder` held the content key of the envelope whose GCM tag is `mac`.
fn proof_key(cek: &[u8]) -> ring::hmac::Key {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(cek);
    match prk.expand(&[PROOF_INFO], ring::hmac::HMAC_SHA256) {
        Ok(okm) => ring::hmac::Key::from(okm),
        // 32 bytes is always within HKDF-SHA256's limit.
        Err(ring::error::Unspecified) => unreachable!("HKDF output of one hash length"),
    }
}

fn proof_message(forwarder: &IssuerAndSerialNumber, env: &Envelope) -> Result<Vec<u8>, CmsError> {
    let mut m = forwarder.to_der().map_err(malformed("forwarder"))?;
    let mac = env.mac.as_ref().ok_or_else(|| CmsError::Malformed("auth-enveloped data without a MAC".into()))?;
    m.extend_from_slice(mac.as_bytes());
    Ok(m)
}

/// Record that `forwarder` (who holds `cek`) forwards `env`: the proof goes into the
/// unauthenticated attributes, next to the valid proofs of earlier forwards. Anything else
/// there (unauthenticated, so anyone's to add) is dropped, so planted junk cannot use up the
/// forwards an envelope may record.
pub fn add_forward_proof(env: &mut Envelope, cek: &[u8], forwarder: &Certificate) -> Result<(), CmsError> {
    let who = ias(forwarder);
    let mut kept = Vec::new();
    for a in env.other_attrs.as_ref().map(|a| a.as_slice()).unwrap_or_default() {
        if proof_in(a).is_some_and(|f| proof_holds(env, &f, cek)) {
            kept.push(a.clone());
        }
    }
    if kept.len() >= MAX_FORWARDS {
        return Err(CmsError::Verify(crate::tr!("ssmax-too-many-forwards", most = MAX_FORWARDS)));
    }
    let tag = ring::hmac::sign(&proof_key(cek), &proof_message(&who, env)?);
    let value = ForwardedDer { forwarder: who, proof: OctetString::new(tag.as_ref()).map_err(malformed("proof"))? };
    kept.push(RawAttribute::new(&oid_forwarded(), value)?);
    env.other_attrs = Some(BerSetOf::from_vec(kept).map_err(malformed("forward proofs"))?);
    Ok(())
}

/// The forward proof an attribute carries, if it is one.
fn proof_in(a: &RawAttribute) -> Option<ForwardedDer> {
    if !a.is(&oid_forwarded()) {
        return None;
    }
    ForwardedDer::from_der(&a.value().ok()?.to_der().ok()?).ok()
}

fn proof_holds(env: &Envelope, f: &ForwardedDer, cek: &[u8]) -> bool {
    proof_message(&f.forwarder, env).is_ok_and(|m| ring::hmac::verify(&proof_key(cek), &m, f.proof.as_bytes()).is_ok())
}

/// Whether `env` carries a valid proof that `who` held `cek`. Every proof naming `who` is
/// tried (the attribute set itself is bounded when parsed), whatever else is there.
fn forwarded_by(env: &Envelope, who: &IssuerAndSerialNumber, cek: &[u8]) -> bool {
    let Some(attrs) = &env.other_attrs else { return false };
    attrs.iter().filter_map(proof_in).any(|f| f.forwarder == *who && proof_holds(env, &f, cek))
}

/// Check that `env`, sent by `sender` as `label` / `filename` with content key `cek` (recovered,
/// so the content opens with it), was bound to these when it was made, and was encrypted by the
/// sender or forwarded by a sender who could open it.
pub fn check(
    env: &Envelope,
    label: &str,
    filename: &str,
    sender: &Certificate,
    cek: &[u8],
) -> Result<Origin, CmsError> {
    let b = read(env, label)?;
    let e = crate::l10n::escaped;
    if b.label != label {
        return Err(CmsError::Verify(crate::tr!("ssmax-label-not-bound", label = e(label), bound = e(&b.label))));
    }
    if b.filename != filename {
        return Err(CmsError::Verify(crate::tr!(
            "ssmax-filename-not-bound",
            label = e(label),
            filename = e(filename),
            bound = e(&b.filename)
        )));
    }
    let me = ias(sender);
    if b.originator == me {
        return Ok(Origin::Sender);
    }
    if forwarded_by(env, &me, cek) {
        return Ok(Origin::Forwarded);
    }
    Err(CmsError::Verify(crate::tr!(
        "ssmax-not-senders",
        label = e(label),
        originator = describe(&b.originator),
        sender = crate::cms::cert::subject(sender)
    )))
}

/// The decrypted entity must name the file its binding names, or name none: every name it gives
/// — Content-Disposition filename and Content-Type name, in every form (plain, RFC 2231) — since
/// mail clients differ in which one they show; and one field of each, as clients differ in which
/// of two they read.
pub fn check_entity_name(entity: &[u8], label: &str, filename: &str) -> Result<(), CmsError> {
    let e = crate::mail::Entity::parse(entity).map_err(|e| CmsError::Malformed(e.to_string()))?;
    let esc = crate::l10n::escaped;
    let charset = e.content_type().param("charset").map(str::to_string);
    for (field, param) in [("Content-Disposition", "filename"), ("Content-Type", "name")] {
        let mut fields = e.fields.iter().filter(|f| f.is(field));
        let (Some(f), None) = (fields.next(), fields.next()) else { continue };
        let value = f.raw.iter().position(|&b| b == b':').map(|c| &f.raw[c + 1..]).unwrap_or_default();
        for form in crate::mail::fields::param_forms(value, param, charset.as_deref()) {
            let named = form.ok_or_else(|| {
                CmsError::Verify(crate::tr!("ssmax-entity-name-unreadable", label = esc(label), field = field))
            })?;
            if named.trim() != filename.trim() {
                return Err(CmsError::Verify(crate::tr!(
                    "ssmax-entity-name",
                    label = esc(label),
                    named = esc(&named),
                    filename = esc(filename)
                )));
            }
        }
    }
    for field in ["Content-Disposition", "Content-Type"] {
        if e.fields.iter().filter(|f| f.is(field)).count() > 1 {
            return Err(CmsError::Verify(crate::tr!("ssmax-entity-two-fields", label = esc(label), field = field)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cms::encrypt::soft::{bob, Soft};
    use crate::cms::encrypt::{encrypt_with, recipient_info};

    fn lamps(name: &str) -> Certificate {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("softhsm-tests/interop-vectors/examples-cms/certs-and-keys");
        crate::cms::cert::parse(&crate::cms::cert::load_file(&dir.join(name)).unwrap()[0]).unwrap()
    }

    /// alice's attachment to bob, and its content key as bob recovers it.
    fn alices_attachment() -> (Envelope, Vec<u8>) {
        let (bob_cert, bob_key) = bob();
        let alice = lamps("lamps-alice.crt");
        let der = encrypt_with(
            b"payroll".to_vec(),
            std::slice::from_ref(&bob_cert),
            Some(auth_attrs(&alice, "Q3", "q3.csv").unwrap()),
        )
        .unwrap();
        let env = Envelope::parse(&der).unwrap();
        let (cek, _, _) = env.recover_cek(&mut Soft(vec![bob_cert], bob_key)).unwrap();
        (env, cek.to_vec())
    }

    #[test]
    fn an_attachment_is_accepted_only_from_its_sender_under_its_label_and_name() {
        let (env, cek) = alices_attachment();
        let (alice, carlos) = (lamps("lamps-alice.crt"), lamps("lamps-carlos.crt"));
        assert_eq!(check(&env, "Q3", "q3.csv", &alice, &cek).unwrap(), Origin::Sender);
        let e = check(&env, "Meeting notes", "q3.csv", &alice, &cek).unwrap_err().to_string();
        assert!(e.contains("was encrypted under the label 'Q3'"), "{e}");
        let e = check(&env, "Q3", "notes.txt", &alice, &cek).unwrap_err().to_string();
        assert!(e.contains("'q3.csv'"), "{e}");
        let e = check(&env, "Q3", "q3.csv", &carlos, &cek).unwrap_err().to_string();
        assert!(e.contains("was encrypted by") && e.contains("Carlos"), "{e}");
    }

    #[test]
    fn a_forward_is_accepted_only_from_someone_who_held_the_content_key() {
        let (mut env, cek) = alices_attachment();
        let carlos = lamps("lamps-carlos.crt");
        // Proof made with another key: worthless.
        let mut forged = env.clone();
        add_forward_proof(&mut forged, &[7u8; 32], &carlos).unwrap();
        assert!(check(&forged, "Q3", "q3.csv", &carlos, &cek).is_err());
        add_forward_proof(&mut env, &cek, &carlos).unwrap();
        assert_eq!(check(&env, "Q3", "q3.csv", &carlos, &cek).unwrap(), Origin::Forwarded);
        // The proof names carlos: nobody else can present it as theirs.
        let (bob_cert, _) = bob();
        assert!(check(&env, "Q3", "q3.csv", &bob_cert, &cek).is_err());
        // It survives re-keying, as the binding does.
        let rekeyed = env.with_recipients(vec![recipient_info(&bob_cert, &cek).unwrap()]).unwrap();
        let again = Envelope::parse(&rekeyed).unwrap();
        assert_eq!(check(&again, "Q3", "q3.csv", &carlos, &cek).unwrap(), Origin::Forwarded);
    }

    #[test]
    fn planted_proofs_neither_hide_a_valid_one_nor_use_up_the_forwards() {
        let (mut env, cek) = alices_attachment();
        let carlos = lamps("lamps-carlos.crt");
        let junk = |n: u8| -> Vec<RawAttribute> {
            (0..n)
                .map(|i| {
                    let bogus = ForwardedDer { forwarder: ias(&carlos), proof: OctetString::new(vec![i; 32]).unwrap() };
                    RawAttribute::new(&oid_forwarded(), bogus).unwrap()
                })
                .collect()
        };
        // More junk than forwards allowed: the next forward still goes through, and drops it.
        env.other_attrs = Some(BerSetOf::from_vec(junk(40)).unwrap());
        add_forward_proof(&mut env, &cek, &carlos).unwrap();
        assert_eq!(env.other_attrs.as_ref().unwrap().len(), 1, "only the valid proof is kept");
        // A valid proof among junk that sorts before it is found.
        let mut mixed = junk(40);
        mixed.extend(env.other_attrs.as_ref().unwrap().iter().cloned());
        env.other_attrs = Some(BerSetOf::from_vec(mixed).unwrap());
        assert_eq!(check(&env, "Q3", "q3.csv", &carlos, &cek).unwrap(), Origin::Forwarded);
        let (bob_cert, _) = bob();
        add_forward_proof(&mut env, &cek, &bob_cert).unwrap();
        assert_eq!(env.other_attrs.as_ref().unwrap().len(), 2, "the two valid proofs, no junk");
    }

    #[test]
    fn every_name_the_decrypted_file_gives_must_be_the_bound_one() {
        let ok = |head: &str| check_entity_name(format!("{head}\r\n\r\nx").as_bytes(), "L", "a.csv");
        assert!(ok("Content-Type: text/csv").is_ok(), "no name at all");
        assert!(ok("Content-Type: text/csv; name=\"a.csv\"\r\nContent-Disposition: attachment; filename=\" a.csv\"")
            .is_ok());
        for (head, said) in [
            ("Content-Disposition: attachment; filename=\"a.csv\"\r\nContent-Disposition: attachment; filename=\"evil.exe\"", "two Content-Disposition"),
            ("Content-Type: text/csv; name=\"evil.exe\"\r\nContent-Disposition: attachment; filename=\"a.csv\"", "'evil.exe'"),
            ("Content-Type: text/csv; name=\"a.csv\"\r\nContent-Disposition: attachment; filename*1=\"evil.exe\"", "cannot be read"),
            ("Content-Disposition: attachment; filename=\"evil.exe\"; filename*=utf-8''a.csv", "'evil.exe'"),
            ("Content-Disposition: attachment; filename=\"a.csv\"; filename=\"evil.exe\"", "'evil.exe'"),
        ] {
            let e = ok(head).unwrap_err().to_string();
            assert!(e.contains(said), "{head}: {e}");
        }
    }

    #[test]
    fn an_envelope_without_a_binding_is_not_an_ssmax_attachment() {
        let (bob_cert, _) = bob();
        let der = crate::cms::encrypt::encrypt(b"x".to_vec(), &[bob_cert]).unwrap();
        let e = read(&Envelope::parse(&der).unwrap(), "Q3").unwrap_err().to_string();
        assert!(e.contains("not bound"), "{e}");
    }
}
