//! `ssmax-card bench-token`: the raw token floor (token/floor.rs) and the per-byte stages of sign
//! and decrypt, timed in-process. JSON out, for the benchmark harness in benches/bench.rs. Not a
//! test: nothing here asserts a time.

use crate::error::{Exit, Failure};
use crate::ops::ctx::Ctx;
use crate::token::floor::median;
use crate::token::objects::KeyKind;
use std::time::Instant;

/// `token::floor::time` for stages that fail as commands do.
fn time<F: FnMut() -> Result<(), Failure>>(n: usize, f: F) -> Result<f64, Failure> {
    crate::token::floor::time(n, f)
}

pub fn run(ctx: &mut dyn Ctx, iterations: usize) -> Result<(), Failure> {
    let n = iterations.max(5);
    // First: the C_Initialize timing below finalises the module under the token's session.
    let mut stages = serde_json::Map::new();
    stage_rates(ctx, &mut stages)?;
    let report = {
        let p = ctx.token()?;
        let out = crate::token::floor::measure(p.token, p.prompt, p.allow_final_pin_try, n)?;
        serde_json::Value::Object(out)
    };
    let mut report = report;
    if let Some(map) = report.as_object_mut() {
        map.extend(stages);
    }
    ctx.report(serde_json::to_string_pretty(&report).map_err(|e| Failure::new(Exit::Io, e.to_string()))? + "\n");
    Ok(())
}

/// The per-byte stages of sign and decrypt on a 25 MiB mail, in-process and without file I/O or
/// process start (MB/s): what the "hashed or decrypted at close to openssl speed" target names.
fn stage_rates(ctx: &mut dyn Ctx, out: &mut serde_json::Map<String, serde_json::Value>) -> Result<(), Failure> {
    use crate::cms::digest::Hash;
    const SIZE: usize = 25 << 20;
    let rate = |ms: f64| SIZE as f64 / (ms / 1000.0);
    // A canonical body, as a large base64 attachment is: 76-character lines, CRLF.
    let mut body = Vec::with_capacity(SIZE + 80);
    while body.len() < SIZE {
        body.extend_from_slice(&[b'Q'; 76]);
        body.extend_from_slice(b"\r\n");
    }
    body.truncate(SIZE);
    let sign_stage = time(7, || {
        // As `sign` does it: the check, and the hash beside it.
        match crate::mail::canonical_digest(b"", &body, |pieces| Hash::Sha256.digest_pieces(pieces)) {
            Some(d) => std::hint::black_box(d),
            None => return Err(Failure::new(Exit::Io, "bench body is not canonical")),
        };
        Ok(())
    })?;
    out.insert("stage: sign 25 MiB (canonical check + SHA-256), bytes/s".into(), rate(sign_stage).into());
    let sha_only = time(7, || {
        std::hint::black_box(Hash::Sha256.digest_pieces(&[&body]));
        Ok(())
    })?;
    out.insert("stage: SHA-256 alone (sha2 crate), bytes/s".into(), rate(sha_only).into());
    let b64 = time(7, || {
        std::hint::black_box(crate::mail::decode_base64(&body).map_err(|e| Failure::new(Exit::Io, e.to_string()))?);
        Ok(())
    })?;
    out.insert("stage: base64 decode of 25 MiB, bytes/s".into(), rate(b64).into());
    // AES-256-GCM content of 25 MiB for the token's own certificate; the content key comes off
    // the token once, then only the in-place decryption is timed.
    let p = ctx.token()?;
    let certs = p.token.certificates()?;
    p.token.login(p.prompt, "benchmark decryption", p.allow_final_pin_try)?;
    let keys = p.token.private_keys()?;
    let rsa_key = |id: &[u8]| keys.iter().any(|k| k.id == id && matches!(k.kind, KeyKind::Rsa { .. }));
    let Some(mine) = certs.iter().filter(|c| !c.anchor && rsa_key(&c.id)).find_map(|c| c.parsed.clone()) else {
        return Ok(());
    };
    let der = crate::cms::encrypt::encrypt(body.clone(), &[(*mine).clone()])?;
    let env = crate::cms::decrypt::Envelope::parse(&der)?;
    let mut dec =
        crate::token::decrypt::TokenDecryptor::new(p.token, p.prompt, p.allow_final_pin_try, "benchmark decryption")?;
    let (cek, _, _) = env.cek_for_reading(&mut dec)?;
    let mut runs = Vec::new();
    for _ in 0..7 {
        let e = env.clone();
        let t = Instant::now();
        std::hint::black_box(e.into_plaintext(&cek)?);
        runs.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    out.insert("stage: decrypt 25 MiB (AES-256-GCM in place), bytes/s".into(), rate(median(runs)).into());
    let parse = time(7, || {
        std::hint::black_box(crate::cms::decrypt::Envelope::parse(&der)?);
        Ok(())
    })?;
    out.insert("stage: parse a 25 MiB envelope, bytes/s".into(), rate(parse).into());
    Ok(())
}
