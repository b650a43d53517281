//! Real card drivers on virtual cards: pcscd, the vpcd reader and OpenSC's PIV and JPKI drivers,
//! with the cards answered by softhsm-tests/support/vcard. Its own test binary, one test at a
//! time: the tests share pcscd and the two vpcd readers.

#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "support/mod.rs"]
mod support;

use rsa::pkcs8::DecodePrivateKey;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use support::agent::*;
use support::vcard::jpki::{self, Jpki};
use support::vcard::piv::{self, Piv};
use support::vcard::{Applet, Inserted, Seen, VirtualCard};
use support::*;

const CARD_PIN: &str = "123456";
const OPENSC: &str = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so";
const CARD_PUK: &str = "12345678";

/// One test at a time owns pcscd and the readers. pcscd is stopped before the next test may
/// start its own (a tuple drops its fields in order: pcscd first, then the lock).
fn readers() -> (Pcscd, MutexGuard<'static, ()>) {
    static ONE: Mutex<()> = Mutex::new(());
    let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
    (Pcscd::start(), guard)
}

fn rsa_key(name: &str) -> rsa::RsaPrivateKey {
    rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(pki().join(name)).unwrap()).unwrap()
}

fn der(name: &str) -> Vec<u8> {
    std::fs::read(pki().join(name)).unwrap()
}

/// Alice's PIV card keys besides her mail encryption key (the demo PKI's alice.key): a PIV
/// Authentication key whose certificate names her for logging in (no mailbox), and a digital
/// signature key whose certificate carries her address. Made once per run; (key PEM, cert DER).
fn alice_piv_keys() -> &'static [(String, Vec<u8>); 2] {
    static KEYS: OnceLock<[(String, Vec<u8>); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("ssmax-piv-").tempdir().unwrap();
        let sh = r#"set -e
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > auth.ext
for k in auth sign; do openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $k.key 2>/dev/null; done
openssl req -new -key auth.key -subj "/O=Example Org/CN=Alice Example (PIV Authentication)" -out auth.csr
openssl x509 -req -in auth.csr -CA "$1/orgca.pem" -CAkey "$1/orgca.key" -set_serial 0x3001 -days 730 -extfile auth.ext -outform DER -out auth.der 2>/dev/null
openssl req -new -key sign.key -subj "/O=Example Org/CN=Alice Example" -out sign.csr
openssl x509 -req -in sign.csr -CA "$1/orgca.pem" -CAkey "$1/orgca.key" -set_serial 0x3002 -days 730 -extfile "$1/alice.ext" -outform DER -out sign.der 2>/dev/null
"#;
        ok(Command::new("bash").arg("-c").arg(sh).arg("piv").arg(pki()).current_dir(dir.path()));
        let read = |n: &str| {
            (std::fs::read_to_string(dir.path().join(format!("{n}.key"))).unwrap(), std::fs::read(dir.path().join(format!("{n}.der"))).unwrap())
        };
        [read("auth"), read("sign")]
    })
}

/// Alice's P-256 PIV card: an ECDSA signature key (9C) and an ECDH key-management key (9D), each
/// with a certificate for her address. Made once per run; (key PEM, cert DER, cert PEM path).
fn alice_p256_keys() -> &'static [(String, Vec<u8>, PathBuf); 2] {
    static KEYS: OnceLock<[(String, Vec<u8>, PathBuf); 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("ssmax-piv-ec-").tempdir().unwrap().keep();
        let sh = r#"set -e
serial=4000
for k in sign kmgmt; do
  serial=$((serial + 1))
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $k.key 2>/dev/null
  openssl req -new -key $k.key -subj "/O=Example Org/CN=Alice Example" -out $k.csr
  openssl x509 -req -in $k.csr -CA "$1/orgca.pem" -CAkey "$1/orgca.key" -set_serial 0x$serial -days 730 -extfile "$1/alice.ext" -out $k.pem 2>/dev/null
  openssl x509 -in $k.pem -outform DER -out $k.der
done
"#;
        ok(Command::new("bash").arg("-c").arg(sh).arg("piv-ec").arg(pki()).current_dir(&dir));
        let read = |n: &str| {
            (
                std::fs::read_to_string(dir.join(format!("{n}.key"))).unwrap(),
                std::fs::read(dir.join(format!("{n}.der"))).unwrap(),
                dir.join(format!("{n}.pem")),
            )
        };
        [read("sign"), read("kmgmt")]
    })
}

fn p256_pem(pem: &str) -> piv::Key {
    use p256::pkcs8::DecodePrivateKey as _;
    piv::Key::P256(p256::SecretKey::from_pkcs8_pem(pem).unwrap())
}

fn rsa_pem(pem: &str) -> piv::Key {
    piv::Key::Rsa(Box::new(rsa::RsaPrivateKey::from_pkcs8_pem(pem).unwrap()))
}

/// Alice's PIV employee card as issued: three keys — 9A PIV Authentication, 9C digital
/// signature (her mail signing certificate), 9D key management (the certificate mail is
/// encrypted to, the demo PKI's alice.pem).
fn alice_piv() -> VirtualCard<Piv> {
    let [(auth_key, auth), (sign_key, sign)] = alice_piv_keys();
    VirtualCard::new(
        Piv::new(CARD_PIN, CARD_PUK, 3)
            .with_key(piv::AUTH, rsa_pem(auth_key), auth)
            .with_key(piv::SIGN, rsa_pem(sign_key), sign)
            .with_key(piv::KEY_MGMT, piv::Key::Rsa(Box::new(rsa_key("alice.key"))), &der("alice.der")),
    )
}

/// A JPKI-like PKI made once per run with openssl: a signature CA and an authentication CA, and
/// one holder's two certificates. As in J-LIS's profile, the signature certificate names the
/// person (and where they live), not a mailbox; the authentication certificate names no one.
fn jpki_pki() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("ssmax-jpki-").tempdir().unwrap().keep();
        let sh = r#"set -e
for k in sign-ca auth-ca sign auth; do openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out $k.key 2>/dev/null; done
printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n' > ca.ext
openssl req -new -x509 -key sign-ca.key -subj "/C=JP/O=JPKI/OU=JPKI for digital signature" -days 3650 -extensions v3_ca -out sign-ca.pem 2>/dev/null
openssl req -new -x509 -key auth-ca.key -subj "/C=JP/O=JPKI/OU=JPKI for user authentication" -days 3650 -extensions v3_ca -out auth-ca.pem 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n' > sign.ext
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' > auth.ext
openssl req -new -key sign.key -subj "/C=JP/L=Chiyoda-ku, Tokyo/CN=Yamada Taro" -out sign.csr
openssl x509 -req -in sign.csr -CA sign-ca.pem -CAkey sign-ca.key -set_serial 0x1001 -days 730 -extfile sign.ext -out sign.pem 2>/dev/null
openssl req -new -key auth.key -subj "/C=JP/CN=J0000000000000" -out auth.csr
openssl x509 -req -in auth.csr -CA auth-ca.pem -CAkey auth-ca.key -set_serial 0x2001 -days 730 -extfile auth.ext -out auth.pem 2>/dev/null
for c in sign-ca auth-ca sign auth; do openssl x509 -in $c.pem -outform DER -out $c.der; done
"#;
        ok(Command::new("bash").arg("-c").arg(sh).current_dir(&dir));
        dir
    })
}

const JPKI_AUTH_PIN: &str = "1234";
const JPKI_PASSWORD: &str = "ABC123";

/// Yamada Taro's My Number card.
fn my_number_card() -> VirtualCard<Jpki> {
    let d = jpki_pki();
    let key = |n: &str| rsa::RsaPrivateKey::from_pkcs8_pem(&std::fs::read_to_string(d.join(n)).unwrap()).unwrap();
    let der = |n: &str| std::fs::read(d.join(n)).unwrap();
    let (auth, sign, auth_ca, sign_ca) = (der("auth.der"), der("sign.der"), der("auth-ca.der"), der("sign-ca.der"));
    VirtualCard::new(Jpki::new(
        JPKI_AUTH_PIN,
        JPKI_PASSWORD,
        key("auth.key"),
        key("sign.key"),
        jpki::Certificates { auth: &auth, sign: &sign, auth_ca: &auth_ca, sign_ca: &sign_ca },
    ))
}

/// The binary for `user`, with `pin` (if any) on descriptor 3 as automation gives it.
fn cmd(user: &Tok, pin: Option<&str>, args: &[&str]) -> Command {
    match pin {
        Some(p) => user.cmd_with_pin(&user.write("pin-given", format!("{p}\n")), args),
        None => {
            let mut c = user.cmd();
            c.args(args);
            c
        }
    }
}

/// Insert and wait until OpenSC sees a token in the reader.
fn insert<A: Applet + 'static>(card: &VirtualCard<A>, reader: u16) -> Inserted {
    let inserted = card.insert(reader);
    let start = Instant::now();
    let name = format!("Virtual PCD 00 0{reader}");
    loop {
        let o = run(Command::new("opensc-tool").arg("-l"));
        if stdout(&o).lines().any(|l| l.contains(&name) && l.contains("Yes")) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the card never showed in {name}: {}", stdout(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    card.take_seen();
    inserted
}

/// Whole commands of one kind (a chained command counts once).
fn count(seen: &[Seen], ins: u8) -> usize {
    seen.iter().filter(|s| s.ins == ins && s.cla & 0x10 == 0).count()
}

fn table(seen: &[Seen]) -> String {
    seen.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
}

/// openssl judges the signature; a PIV card carries the holder's certificates only, so the
/// issuing CA's certificate comes from the PKI.
fn openssl_verifies(signed: &Path) {
    let store = signed.with_file_name("root-and-orgca.pem");
    let both = [std::fs::read(pki().join("root.pem")).unwrap(), std::fs::read(pki().join("orgca.pem")).unwrap()];
    std::fs::write(&store, both.concat()).unwrap();
    let v = run(Command::new("openssl")
        .args(["cms", "-verify", "-purpose", "smimesign", "-in"])
        .arg(signed)
        .arg("-CAfile")
        .arg(&store));
    assert!(v.status.success(), "openssl cms -verify: {}", stderr(&v));
}

fn sign(user: &Tok, pin: Option<&str>, extra: &[&str]) -> (std::process::Output, PathBuf) {
    let mail = user.write("mail.eml", MAIL);
    let out = user.path("signed.eml");
    let mut args = vec!["sign", "--in", mail.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    (run(&mut cmd(user, pin, &args)), out)
}

fn openssl_encrypt(user: &Tok, recip: &Path, opts: &[&str]) -> PathBuf {
    let input = user.write("secret.txt", "Content-Type: text/plain\r\n\r\nThe merger closes on Friday.\r\n");
    let out = user.path("encrypted.eml");
    ok(Command::new("openssl")
        .args(["cms", "-encrypt", "-aes-256-gcm", "-in"])
        .arg(&input)
        .arg("-recip")
        .arg(recip)
        .args(opts)
        .args(["-from", "bob@example.com", "-to", "alice@example.jp", "-subject", "confidential", "-out"])
        .arg(&out));
    out
}

#[test]
fn piv_card_through_opensc_signs_mail_that_openssl_verifies_with_one_verify_per_signature() {
    let _r = readers();
    let card = alice_piv();
    let _in = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    let o = run(&mut cmd(&user, None, &["status"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("Alice Example"), "{}", stdout(&o));
    assert!(stdout(&o).contains("opensc-piv"), "{}", stdout(&o));
    let status = card.take_seen();
    println!("status: {} card commands: {}", status.len(), table(&status));

    let (o, signed) = sign(&user, Some(CARD_PIN), &[]);
    let seen = card.take_seen();
    println!("one-shot sign: {} card commands: {}", seen.len(), table(&seen));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    openssl_verifies(&signed);
    // 9C is "PIN Always": the card needs a VERIFY right before its one signature.
    assert_eq!(card.with(|c| c.operations.clone()), [(piv::SIGN, 1)].into());
    let verifies: Vec<&Seen> = seen.iter().filter(|s| s.ins == 0x20 && s.lc > 0).collect();
    assert_eq!(verifies.len(), 2, "user login and the context-specific login: {}", table(&seen));
    let last_two: Vec<u8> =
        seen.iter().filter(|s| s.ins != 0xC0 && s.cla & 0x10 == 0).rev().take(2).map(|s| s.ins).collect();
    assert_eq!(last_two, [0x87, 0x20], "VERIFY immediately before the signature: {}", table(&seen));
    assert_eq!(card.with(|c| c.pin_tries()), 3);
}

#[test]
fn piv_card_decrypts_openssl_mail_with_raw_rsa_on_the_card_for_pkcs1_and_oaep() {
    let _r = readers();
    let card = alice_piv();
    let _in = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    let oaep256 =
        ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256"];
    for (name, opts) in [("RSA PKCS#1 v1.5", &[][..]), ("RSA-OAEP (SHA-256)", &oaep256[..])] {
        let enc = openssl_encrypt(&user, &pki().join("alice.pem"), opts);
        let o = run(&mut cmd(&user, Some(CARD_PIN), &["decrypt", "--in", enc.to_str().unwrap()]));
        let seen = card.take_seen();
        println!("decrypt ({name}): {} card commands: {}", seen.len(), table(&seen));
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        assert!(stdout(&o).contains("The merger closes on Friday."), "{name}: {}", stdout(&o));
        assert!(stderr(&o).contains(name), "{}", stderr(&o));
        assert_eq!(
            count(&seen, 0x87),
            1,
            "one key operation, on 9D: {} {:?}",
            table(&seen),
            card.with(|c| c.operations.clone())
        );
    }
    assert_eq!(card.with(|c| c.operations.clone()), [(piv::KEY_MGMT, 2)].into());
}

#[test]
fn piv_wrong_pin_spends_exactly_one_of_the_cards_tries_and_the_right_one_restores_them() {
    let _r = readers();
    let card = alice_piv();
    let _in = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    let (o, _) = sign(&user, Some("654321"), &[]);
    assert_clear_failure(&o, 4);
    assert!(stderr(&o).contains("more than one try left"), "what the card reports: {}", stderr(&o));
    let seen = card.take_seen();
    assert_eq!(seen.iter().filter(|s| s.ins == 0x20 && s.lc > 0).count(), 1, "never retried: {}", table(&seen));
    assert_eq!(card.with(|c| c.pin_tries()), 2);
    let (o, signed) = sign(&user, Some(CARD_PIN), &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    openssl_verifies(&signed);
    assert_eq!(card.with(|c| c.pin_tries()), 3);
}

#[test]
fn piv_final_try_is_refused_and_a_blocked_card_is_refused_before_any_try() {
    let _r = readers();
    let card = alice_piv();
    let _in = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    for _ in 0..2 {
        let (o, _) = sign(&user, Some("654321"), &[]);
        assert_clear_failure(&o, 4);
    }
    assert_eq!(card.with(|c| c.pin_tries()), 1);
    card.take_seen();
    let (o, _) = sign(&user, Some("654321"), &[]);
    assert_clear_failure(&o, 5);
    let seen = card.take_seen();
    assert_eq!(seen.iter().filter(|s| s.ins == 0x20 && s.lc > 0).count(), 0, "no try spent: {}", table(&seen));
    assert_eq!(card.with(|c| c.pin_tries()), 1);

    let (o, _) = sign(&user, Some("654321"), &["--allow-final-pin-try"]);
    assert_clear_failure(&o, 5);
    assert_eq!(card.with(|c| c.pin_tries()), 0);
    card.take_seen();
    let (o, _) = sign(&user, Some(CARD_PIN), &["--allow-final-pin-try"]);
    assert_clear_failure(&o, 5);
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    let seen = card.take_seen();
    assert_eq!(
        seen.iter().filter(|s| s.ins == 0x20 && s.lc > 0).count(),
        0,
        "nothing sent to a blocked card: {}",
        table(&seen)
    );
}

#[test]
fn my_number_card_status_shows_its_signature_token_and_never_offers_the_authentication_one() {
    let _r = readers();
    let card = my_number_card();
    let _in = insert(&card, 1);
    let user = Tok::without_tokens(CARD_PIN);
    let o = run(&mut cmd(&user, None, &["status"]));
    let seen = card.take_seen();
    println!("status: {} card commands: {}", seen.len(), table(&seen));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("JPKI (Digital Signature PIN)"), "{out}");
    assert!(out.contains("jpki"), "{out}");
    assert_eq!(count(&seen, 0x20) - seen.iter().filter(|s| s.ins == 0x20 && s.lc == 0).count(), 0, "no PIN sent");
}

#[test]
fn my_number_card_plain_sign_is_refused_before_the_password_and_with_confirmation_signs_on_the_card() {
    let _r = readers();
    let card = my_number_card();
    let _in = insert(&card, 1);
    let user = Tok::without_tokens(CARD_PIN);
    let (o, _) = sign(&user, Some("abc123"), &[]);
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("date of birth"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--personal-certificate"), "{}", stderr(&o));
    let seen = card.take_seen();
    assert_eq!(seen.iter().filter(|s| s.ins == 0x20 && s.lc > 0).count(), 0, "no password sent: {}", table(&seen));

    // Given in lower case, as users type it: upper-cased as the official client does.
    let (o, signed) = sign(&user, Some("abc123"), &["--personal-certificate"]);
    let seen = card.take_seen();
    println!("one-shot sign: {} card commands: {}", seen.len(), table(&seen));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("personal certificate"), "the warning: {}", stderr(&o));
    assert_eq!(card.with(|c| (c.signatures, c.sign_tries())), (1, 5));
    let v = run(Command::new("openssl")
        .args(["cms", "-verify", "-in"])
        .arg(&signed)
        .arg("-CAfile")
        .arg(jpki_pki().join("sign-ca.pem")));
    assert!(v.status.success(), "openssl cms -verify: {}", stderr(&v));
}

#[test]
fn my_number_card_password_that_breaks_its_rules_spends_no_try_and_a_wrong_one_spends_one() {
    let _r = readers();
    let card = my_number_card();
    let _in = insert(&card, 1);
    let user = Tok::without_tokens(CARD_PIN);
    for bad in ["abc", "ABCDEFG"] {
        let (o, _) = sign(&user, Some(bad), &["--personal-certificate"]);
        assert_clear_failure(&o, 4);
        assert_eq!(card.with(|c| c.sign_tries()), 5, "{bad}: {}", stderr(&o));
    }
    let (o, _) = sign(&user, Some("XYZ789"), &["--personal-certificate"]);
    assert_clear_failure(&o, 4);
    assert_eq!(card.with(|c| c.sign_tries()), 4);
    let seen = card.take_seen();
    assert_eq!(seen.iter().filter(|s| s.ins == 0x20 && s.lc > 0).count(), 1, "never retried: {}", table(&seen));
}

#[test]
fn my_number_card_cannot_decrypt_and_says_so_without_asking_for_the_password() {
    let _r = readers();
    let card = my_number_card();
    let _in = insert(&card, 1);
    let user = Tok::without_tokens(CARD_PIN);
    let enc = openssl_encrypt(&user, &jpki_pki().join("sign.pem"), &[]);
    let o = run(&mut cmd(&user, Some(JPKI_PASSWORD), &["decrypt", "--in", enc.to_str().unwrap()]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("only signs"), "{}", stderr(&o));
    let seen = card.take_seen();
    assert_eq!(seen.iter().filter(|s| s.ins == 0x20 && s.lc > 0).count(), 0, "no password sent: {}", table(&seen));
}

/// Yubico's module against the same PIV card: it offers no slot for a reader that is not a
/// YubiKey's and sends the card nothing (observed with ykcs11 2.2.0), so a PIV employee card is
/// OpenSC's to serve; the yubikey profile never claims it.
#[test]
fn ykcs11_offers_no_slot_for_a_piv_card_in_another_reader_and_sends_it_nothing() {
    let _r = readers();
    let card = alice_piv();
    let _in = insert(&card, 0);
    let module = "/usr/lib/x86_64-linux-gnu/libykcs11.so";
    let o = run(Command::new("pkcs11-tool").args(["--module", module, "-L"]));
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("No slots"), "{said}");
    assert_eq!(card.take_seen(), []);
    // And with it installed, status still finds the card through OpenSC.
    let o = run(&mut cmd(&Tok::without_tokens(CARD_PIN), None, &["status"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("Alice Example"), "{}", stdout(&o));
}

#[test]
fn my_number_card_signs_an_ssmax_send_without_confirmation_and_the_signature_names_the_card() {
    let _r = readers();
    let card = my_number_card();
    let _in = insert(&card, 1);
    let user = Tok::without_tokens(CARD_PIN);
    let config = user.write(
        "config.toml",
        format!(
            "anchors = [\"{}\"]\norg_certificate = \"{}\"\n",
            pki().join("root.pem").display(),
            pki().join("org.pem").display()
        ),
    );
    let draft = user.write("draft.eml", MAIL);
    let sent = user.path("sent.eml");
    let o = run(&mut cmd(
        &user,
        Some("abc123"),
        &[
            "send",
            "--config",
            config.to_str().unwrap(),
            "--in",
            draft.to_str().unwrap(),
            "--out",
            sent.to_str().unwrap(),
        ],
    ));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(card.with(|c| c.signatures), 1);
    let v = run(Command::new("openssl")
        .args(["cms", "-verify", "-in"])
        .arg(&sent)
        .arg("-CAfile")
        .arg(jpki_pki().join("sign-ca.pem")));
    assert!(v.status.success(), "openssl cms -verify: {}", stderr(&v));
    let p7 = user.path("sig.p7s");
    ok(Command::new("openssl").args(["smime", "-pk7out", "-in"]).arg(&sent).arg("-out").arg(&p7));
    let dump = ok(Command::new("openssl").args(["cms", "-cmsout", "-print", "-inform", "PEM", "-in"]).arg(&p7));
    assert!(stdout(&dump).contains("My Number card"), "identity method names the card: {}", stdout(&dump));
}

/// The warm agent: PIN cached until the card leaves; the card is pulled in the middle of a
/// signature, then comes back.
#[test]
fn piv_card_through_the_agent_warm_signature_costs_only_the_signature_and_a_pulled_card_wipes_the_pin() {
    let _r = readers();
    let card = alice_piv();
    let inserted = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    let agent = start_agent_with(&user, "", "pin_cache = \"until-removed\"\n", "0");
    let mail = user.write("mail.eml", MAIL);
    let signed = user.path("signed.eml");
    let sign = || via(&user, &agent, &["sign", "--in", mail.to_str().unwrap(), "--out", signed.to_str().unwrap()]);
    let o = sign();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let cold = card.take_seen();
    println!("agent, first signature: {} card commands: {}", cold.len(), table(&cold));
    let o = sign();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let warm = card.take_seen();
    println!("agent, warm signature: {} card commands: {}", warm.len(), table(&warm));
    openssl_verifies(&signed);
    // 9C asks for the PIN at every signature (SP 800-73-4 "PIN always"), and so does the agent:
    // the cached login never stands in for the person's consent. On the card: the retry flags,
    // VERIFY, then the signature; nothing is re-read.
    assert_eq!(getpins(&agent), 2, "the PIN was asked for each signature");
    assert_eq!(count(&warm, 0x20), 1, "{}", table(&warm));
    assert_eq!(count(&warm, 0x87), 1, "{}", table(&warm));
    assert_eq!(count(&warm, 0xA4) + count(&warm, 0xB0), 0, "nothing re-read: {}", table(&warm));

    let mut sub = subscribe(&agent);
    card.pull_when(0x87);
    let o = sign();
    assert_clear_failure(&o, 3);
    next_event(&mut sub, "token-removed");
    drop(inserted);
    assert_eq!(card.with(|c| c.operations.clone()), [(piv::SIGN, 2)].into(), "no signature made");

    let _back = insert(&card, 0);
    next_event(&mut sub, "token-inserted");
    let o = sign();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // The third was asked for the signature the pulled card never made; the fourth logs in
    // again (the old login was wiped) and serves this signature too.
    assert_eq!(getpins(&agent), 4, "a fresh PIN after the card came back: the old one was wiped");
}

#[test]
fn piv_card_pulled_during_a_one_shot_signature_is_reported_as_removed() {
    let _r = readers();
    let card = alice_piv();
    let inserted = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    card.pull_when(0x87);
    let (o, signed) = sign(&user, Some(CARD_PIN), &[]);
    assert_clear_failure(&o, 3);
    assert!(stderr(&o).contains("removed"), "{}", stderr(&o));
    assert!(!signed.exists(), "nothing half-written");
    drop(inserted);
}

/// Bob's PIV card: his RSA-2048 key and certificate in 9A, 9C and 9D.
fn bob_piv() -> VirtualCard<Piv> {
    let cert = der("bob.der");
    let key = || piv::Key::Rsa(Box::new(rsa_key("bob.key")));
    VirtualCard::new(
        Piv::new(CARD_PIN, CARD_PUK, 3).with_key(piv::AUTH, key(), &cert).with_key(piv::SIGN, key(), &cert).with_key(
            piv::KEY_MGMT,
            key(),
            &cert,
        ),
    )
}

/// What the issue calls "all at once": alice's SoftHSM2 token, bob's PIV card and Yamada's My
/// Number card present together, one agent serving them.
#[test]
fn softhsm_token_piv_card_and_my_number_card_at_once_need_no_choice_of_token() {
    let _r = readers();
    let piv = bob_piv();
    let _p = insert(&piv, 0);
    let jpki = my_number_card();
    let _j = insert(&jpki, 1);
    let tok = Tok::new();
    let o = run(tok.cmd().args(["--agent", "never", "status"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("jpki sets this slot aside"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("error:"), "{}", stdout(&o));
    for label in ["ssmax test", "Bob Partner", "JPKI (Digital Signature PIN)"] {
        assert!(stdout(&o).contains(label), "status shows {label}: {}", stdout(&o));
    }
    let agent = start_agent_answering(
        &tok,
        "pin_cache = \"until-removed\"\n",
        &[("ssmax test", PIN), ("Bob Partner", CARD_PIN), ("JPKI", JPKI_PASSWORD)],
    );
    let bob_mail = "From: Bob Partner <bob@partner.example>\nTo: Alice <alice@example.jp>\nSubject: re\n\nThanks.\n";
    for (mail, token) in [(MAIL, "ssmax test"), (bob_mail, "Bob Partner")] {
        let input = tok.write("mail.eml", mail);
        let signed = tok.path("signed.eml");
        let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap(), "--out", signed.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{token}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("on token '{token}'")), "{}", stderr(&o));
        if token == "ssmax test" {
            // verify needs no key, so no choice: the anchors of every token are trusted.
            let o = via(&tok, &agent, &["verify", "--in", signed.to_str().unwrap()]);
            assert_eq!(code(&o), 0, "{}", stderr(&o));
        }
    }
    assert_eq!(piv.with(|c| c.operations.clone()), [(piv::SIGN, 1)].into());
    for (who, token) in [("alice", "ssmax test"), ("bob", "Bob Partner")] {
        let enc = openssl_encrypt(&tok, &pki().join(format!("{who}.pem")), &[]);
        let o = via(&tok, &agent, &["decrypt", "--in", enc.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{who}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("on token '{token}'")), "{who}: {}", stderr(&o));
    }
    assert_eq!(getpins(&agent), 2, "one PIN per token that was used; the My Number card not yet asked");
    // The My Number card signs only when the user confirms its personal certificate, through
    // the agent as on its own.
    let input = tok.write("mail.eml", MAIL);
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "the From address picks alice's token: {}", stderr(&o));
    let o = via(&tok, &agent, &["sign", "--personal-certificate", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("on token 'JPKI (Digital Signature PIN)'"), "{}", stderr(&o));
    assert_eq!(jpki.with(|c| c.signatures), 1);
    let (o, _) = sign(&tok, Some(JPKI_PASSWORD), &["--agent", "never", "--personal-certificate"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(jpki.with(|c| c.signatures), 2);
}

/// Card commands per operation: ours beside openssl cms + libp11's pkcs11 engine and gpgsm +
/// gpg-agent + gnupg-pkcs11-scd, all through OpenSC on the same virtual PIV card.
#[test]
fn piv_card_commands_per_operation_against_openssl_engine_and_gpgsm() {
    let _r = readers();
    let card = alice_piv();
    let _in = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    let mut rows: Vec<(String, usize)> = Vec::new();
    let mut measure = |name: &str, o: std::process::Output| {
        assert!(o.status.success(), "{name}: {}{}", stdout(&o), stderr(&o));
        let seen = card.take_seen();
        println!("{name}: {} — {}", seen.len(), table(&seen));
        rows.push((name.to_string(), seen.len()));
    };
    let mail = user.write("mail.eml", MAIL);
    let alice = pki().join("alice.pem");
    measure("ours: status", run(&mut cmd(&user, None, &["status"])));
    measure("ours: sign, one-shot", sign(&user, Some(CARD_PIN), &[]).0);
    let enc = openssl_encrypt(&user, &alice, &[]);
    measure(
        "ours: decrypt, one-shot",
        run(&mut cmd(&user, Some(CARD_PIN), &["decrypt", "--in", enc.to_str().unwrap()])),
    );

    let conf = user.write(
        "openssl.cnf",
        format!("openssl_conf = init\n[init]\nengines = engines\n[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\ndynamic_path = /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so\nMODULE_PATH = {OPENSC}\ninit = 0\n"),
    );
    // libp11 asks for the PIN again at each use of the PIN-always key, on the terminal or stdin.
    let answers = user.write("pins.txt", format!("{CARD_PIN}\n{CARD_PIN}\n{CARD_PIN}\n"));
    let openssl = |args: &[&str]| {
        let mut c = Command::new("openssl");
        c.env("OPENSSL_CONF", &conf).args(args).stdin(std::fs::File::open(&answers).unwrap());
        run(&mut c)
    };
    let signer = user.path("piv-sign.pem");
    let sign_der = user.write("piv-sign.der", &alice_piv_keys()[1].1);
    ok(Command::new("openssl").args(["x509", "-inform", "DER", "-in"]).arg(&sign_der).arg("-out").arg(&signer));
    let sign_key = format!("pkcs11:manufacturer=piv_II;id=%02;type=private;pin-value={CARD_PIN}");
    let out = user.path("ossl.eml");
    measure(
        "openssl cms + engine: sign",
        openssl(&[
            "cms",
            "-sign",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-inkey",
            &sign_key,
            "-signer",
            signer.to_str().unwrap(),
            "-in",
            mail.to_str().unwrap(),
            "-out",
            out.to_str().unwrap(),
        ]),
    );
    let dec_key = format!("pkcs11:manufacturer=piv_II;id=%03;type=private;pin-value={CARD_PIN}");
    measure(
        "openssl cms + engine: decrypt",
        openssl(&[
            "cms",
            "-decrypt",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-inkey",
            &dec_key,
            "-recip",
            alice.to_str().unwrap(),
            "-in",
            enc.to_str().unwrap(),
            "-out",
            user.path("ossl.txt").to_str().unwrap(),
        ]),
    );

    let agent = start_agent_with(&user, "", "pin_cache = \"until-removed\"\n", "0");
    let signed = user.path("agent.eml");
    let via_agent = || via(&user, &agent, &["sign", "--in", mail.to_str().unwrap(), "--out", signed.to_str().unwrap()]);
    measure("ours: sign, agent cold", via_agent());
    measure("ours: sign, agent warm", via_agent());
    drop(agent);

    let gh = user.path("gnupg");
    std::fs::create_dir(&gh).unwrap();
    std::fs::set_permissions(&gh, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let pe = user.write("gpg-pinentry.sh", format!("#!/bin/sh\necho OK\nwhile read -r c r; do case $c in GETPIN) echo \"D {CARD_PIN}\"; echo OK;; BYE) echo OK; exit 0;; *) echo OK;; esac; done\n"));
    std::fs::set_permissions(&pe, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    std::fs::write(
        gh.join("gpg-agent.conf"),
        format!("scdaemon-program /usr/bin/gnupg-pkcs11-scd\npinentry-program {}\n", pe.display()),
    )
    .unwrap();
    std::fs::write(gh.join("gnupg-pkcs11-scd.conf"), format!("providers p1\nprovider-p1-library {OPENSC}\n")).unwrap();
    std::fs::write(gh.join("gpgsm.conf"), "disable-crl-checks\n").unwrap();
    let gpg = |script: &str| run(Command::new("bash").env("GNUPGHOME", &gh).arg("-c").arg(script));
    let root = pki().join("root.pem");
    let orgca = pki().join("orgca.pem");
    let o = gpg(&format!(
        "gpgsm --batch --disable-dirmngr --import {} {} && gpgsm --batch --disable-dirmngr --learn-card && echo \"$(gpgsm --with-colons --list-keys 'SSMAX Demo Root' | awk -F: '/^fpr/{{print $10; exit}}') S relax\" > $GNUPGHOME/trustlist.txt",
        root.display(),
        orgca.display()
    ));
    card.take_seen();
    assert!(o.status.success(), "gpgsm set-up: {}", stderr(&o));
    // Two certificates on the card carry her address (signature and key management): gpgsm
    // must be told which, by fingerprint.
    let fpr =
        stdout(&ok(Command::new("openssl").args(["x509", "-noout", "-fingerprint", "-sha1", "-in"]).arg(&signer)));
    let fpr: String = fpr.split('=').nth(1).unwrap_or_default().trim().replace(':', "");
    let gsign = format!(
        "gpgsm --batch --disable-dirmngr -u {fpr} --detach-sign --base64 < {} > {}",
        mail.display(),
        user.path("g.p7s").display()
    );
    measure("gpgsm + scd: sign, agent cold", gpg(&gsign));
    measure("gpgsm + scd: sign, agent warm", gpg(&gsign));
    gpg("gpgconf --kill all");
    for (name, n) in &rows {
        println!("| {name} | {n} |");
    }
    let n = |name: &str| rows.iter().find(|(r, _)| r == name).map(|(_, n)| *n).unwrap_or(usize::MAX);
    // Through OpenSC everyone pays its binding of the card (36 commands here) once per process;
    // past that, ours sends no more than the peers: the same decryption, and a warm signature
    // that is the lock checks, the PIN-always VERIFY and the signature, plus one GET DATA
    // gpgsm's scdaemon does not send: the retry flags read before that VERIFY (a PIN try is
    // never made without knowing it is not the card's last).
    assert!(n("ours: decrypt, one-shot") <= n("openssl cms + engine: decrypt"));
    assert!(n("ours: sign, agent warm") <= n("gpgsm + scd: sign, agent warm") + 1);
    assert_eq!(card.with(|c| c.operations.clone()), [(piv::SIGN, 6), (piv::KEY_MGMT, 2)].into(), "no extra key use");
}

#[test]
fn piv_p256_card_signs_with_ecdsa_and_decrypts_ecdh_mail_on_the_card() {
    let _r = readers();
    let [(sign_key, sign_der, _), (kmgmt_key, kmgmt_der, kmgmt_pem)] = alice_p256_keys();
    let [(auth_key, auth), _] = alice_piv_keys();
    let card = VirtualCard::new(
        Piv::new(CARD_PIN, CARD_PUK, 3)
            .with_key(piv::AUTH, rsa_pem(auth_key), auth)
            .with_key(piv::SIGN, p256_pem(sign_key), sign_der)
            .with_key(piv::KEY_MGMT, p256_pem(kmgmt_key), kmgmt_der),
    );
    let _in = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    let (o, signed) = sign(&user, Some(CARD_PIN), &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("ECDSA P-256"), "{}", stderr(&o));
    openssl_verifies(&signed);
    let enc = openssl_encrypt(&user, kmgmt_pem, &[]);
    let o = run(&mut cmd(&user, Some(CARD_PIN), &["decrypt", "--in", enc.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("The merger closes on Friday."), "{}", stdout(&o));
    assert!(stderr(&o).contains("ECDH"), "{}", stderr(&o));
    assert_eq!(card.with(|c| c.operations.clone()), [(piv::SIGN, 1), (piv::KEY_MGMT, 1)].into());
}

#[test]
fn pulling_one_card_leaves_the_other_token_working_with_its_pin_kept() {
    let _r = readers();
    let card = bob_piv();
    let inserted = insert(&card, 0);
    let tok = Tok::new();
    let agent = start_agent_answering(
        &tok,
        "pin_cache = \"until-removed\"\n",
        &[("ssmax test", PIN), ("Bob Partner", CARD_PIN)],
    );
    let alice = tok.write("alice.eml", MAIL);
    let bob = tok.write(
        "bob.eml",
        "From: Bob Partner <bob@partner.example>\nTo: Alice <alice@example.jp>\nSubject: re\n\nThanks.\n",
    );
    let sign = |m: &Path| via(&tok, &agent, &["sign", "--in", m.to_str().unwrap()]);
    assert_eq!(code(&sign(&alice)), 0);
    assert_eq!(code(&sign(&bob)), 0);
    assert_eq!(getpins(&agent), 2);
    let mut sub = subscribe(&agent);
    inserted.pull();
    next_event(&mut sub, "token-removed");
    // Bob's certificate left with his card: no token present carries his address.
    let o = sign(&bob);
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("bob@partner.example is not in any certificate"), "{}", stderr(&o));
    let o = sign(&alice);
    assert_eq!(code(&o), 0, "the other token goes on: {}", stderr(&o));
    assert_eq!(getpins(&agent), 2, "and keeps its PIN");
}

/// A card holds only its holder's certificates; a recipient who trusts only the SSMAX root needs
/// the issuing CA in the signature. `intermediates` in the config supplies it.
#[test]
fn piv_card_signature_carries_the_configured_issuing_ca_so_a_root_only_recipient_verifies() {
    let _r = readers();
    let card = alice_piv();
    let _in = insert(&card, 0);
    let user = Tok::without_tokens(CARD_PIN);
    let root_only = |signed: &Path| {
        run(Command::new("openssl")
            .args(["cms", "-verify", "-purpose", "smimesign", "-in"])
            .arg(signed)
            .arg("-CAfile")
            .arg(pki().join("root.pem")))
    };
    let (o, signed) = sign(&user, Some(CARD_PIN), &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!root_only(&signed).status.success(), "without the CA the chain cannot be built");
    let config = user.write("config.toml", format!("intermediates = [\"{}\"]\n", pki().join("orgca.pem").display()));
    let (o, signed) = sign(&user, Some(CARD_PIN), &["--config", config.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = root_only(&signed);
    assert!(v.status.success(), "{}", stderr(&v));
}
