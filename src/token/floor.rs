//! The raw token floor: the PKCS#11 calls an operation is made of, timed one by one through
//! cryptoki on the token the operation would use (C_Initialize, C_Login, C_Sign RSA / ECDSA,
//! C_Decrypt RSA, C_DeriveKey ECDH), medians in milliseconds. For `bench-token`; nothing here
//! asserts a time.

use super::calls::Mech;
use super::objects::KeyKind;
use super::pin::PinPrompt;
use super::{Token, TokenError};
use cryptoki::object::{Attribute, ObjectClass};
use std::time::Instant;

/// The middle of `v` (NaN when empty).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The median time of `n` runs of `f`, in milliseconds; the first error stops it.
pub fn time<E, F: FnMut() -> Result<(), E>>(n: usize, mut f: F) -> Result<f64, E> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(v))
}

/// Each call `n` times (C_Initialize at most 20): name → median milliseconds. Logs in first.
pub fn measure(
    token: &mut Token,
    prompt: &dyn PinPrompt,
    allow_final_pin_try: bool,
    n: usize,
) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    let path = token.module.path.clone();
    token.login(prompt, "benchmark the token", allow_final_pin_try)?;
    let pin = token.context_pin()?.clone();
    let keys = token.private_keys()?;
    let rsa = keys.iter().find(|k| matches!(k.kind, KeyKind::Rsa { bits: 2048 }) && k.can_sign).cloned();
    let ec = keys.iter().find(|k| matches!(k.kind, KeyKind::Ec(_)) && k.can_derive).cloned();
    let session = token.session();
    let mut out = serde_json::Map::new();
    let digest_info = [
        &[
            0x30u8, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00,
            0x04, 0x20,
        ][..],
        &[7u8; 32],
    ]
    .concat();
    if let Some(k) = &rsa {
        out.insert(
            "C_Sign RSA-2048 (PKCS#1)".into(),
            time(n, || session.sign(&Mech::RsaPkcs, k.handle, &digest_info).map(|_| ()))?.into(),
        );
        let ct = session.find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Id(k.id.clone())])?;
        if let Some(pubk) = ct.first() {
            let c = session.encrypt(&Mech::RsaPkcs, *pubk, &[9u8; 32])?;
            out.insert(
                "C_Decrypt RSA-2048 (PKCS#1)".into(),
                time(n, || session.decrypt(&Mech::RsaPkcs, k.handle, &c).map(|_| ()))?.into(),
            );
        }
    }
    if let Some(k) = &ec {
        out.insert(
            "C_Sign ECDSA P-256".into(),
            time(n, || session.sign(&Mech::Ecdsa, k.handle, &[5u8; 32]).map(|_| ()))?.into(),
        );
        let peer = p256::SecretKey::random(&mut rand_core::OsRng).public_key();
        let point = p256::EncodedPoint::from(peer).as_bytes().to_vec();
        out.insert("C_DeriveKey ECDH P-256".into(), time(n, || token.ecdh_secret(k, &point, 32).map(|_| ()))?.into());
    }
    out.insert(
        "C_Login".into(),
        time(n, || {
            session.logout()?;
            session.login(&pin)
        })?
        .into(),
    );
    // C_Initialize of a fresh module instance in this process: finalize, then load again.
    let mut inits = Vec::new();
    drop(keys);

    for _ in 0..n.min(20) {
        if let Ok(m) = super::Module::load(&path) {
            let _ = m.finalize();
        }
        let t = Instant::now();
        let m = super::Module::load(&path)?;
        inits.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(m);
    }
    out.insert("C_Initialize".into(), median(inits).into());
    Ok(out)
}
