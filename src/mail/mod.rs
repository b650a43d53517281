//! MIME handling: split a mail into header fields and body, find parts, and rewrite an entity into
//! the canonical, 7-bit-safe form S/MIME signs (RFC 8551 §3.1). Header values are parsed with
//! mail-parser; part boundaries are found here because a signature covers exact bytes.

pub mod auth_results;
mod canonical;
mod encoding;
mod entity;
pub mod fields;
pub mod smime;

pub use canonical::*;
pub use encoding::*;
pub use entity::*;

use mail_parser::{HeaderName, MessageParser};

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("{}", crate::tr!("mail-malformed", detail = .0))]
    Malformed(String),
}

type Result<T> = std::result::Result<T, MailError>;

/// Deepest multipart nesting we follow; real mail stays far below.
pub const MAX_DEPTH: usize = 32;
/// Most body parts one multipart may have (each costs a little memory and a parse).
pub const MAX_PARTS: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed pseudo-random sequence: the property tests are reproducible.
    fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
        move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        }
    }

    #[test]
    fn base64_lines_are_76_characters_and_decode_back() {
        use base64::Engine;
        for len in [0usize, 1, 56, 57, 58, 57 * 1024 - 1, 57 * 1024, 57 * 1024 + 1, 200_003] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let lines = base64_lines(&data);
            let plain = base64::engine::general_purpose::STANDARD.encode(&data);
            let expected: Vec<u8> =
                plain.as_bytes().chunks(76).flat_map(|c| c.iter().copied().chain(*b"\r\n")).collect();
            assert_eq!(lines, expected, "length {len}");
            assert_eq!(decode_base64(&lines).unwrap(), data);
        }
    }

    #[test]
    fn base64_decoded_in_place_is_what_a_separate_decode_gives() {
        use base64::Engine;
        let mut next = xorshift(0x05ee_db64);
        for len in [0usize, 1, 2, 3, 57, 4096, 200_003] {
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let one_line = base64::engine::general_purpose::STANDARD.encode(&data).into_bytes();
            // Lines of 76 with CRLF, one unbroken line, bare LF with stray spaces and a blank
            // line, and two padded units back to back: every layout the gatherer handles.
            let spaced: Vec<u8> =
                one_line.chunks(64).flat_map(|c| c.iter().copied().chain(*b" \n")).chain(*b"\n").collect();
            let half = base64::engine::general_purpose::STANDARD.encode(&data[..len / 2])
                + "\r\n"
                + &base64::engine::general_purpose::STANDARD.encode(&data[len / 2..]);
            for body in [base64_lines(&data), one_line.clone(), spaced, half.into_bytes()] {
                let head = b"Content-Type: application/pkcs7-mime\r\n\r\n".to_vec();
                let mut buf = [head.clone(), body.clone()].concat();
                decode_base64_in_place(&mut buf, head.len()).unwrap();
                assert_eq!(buf, decode_base64(&body).unwrap(), "length {len}");
                assert_eq!(buf, data, "length {len}");
            }
        }
        let mut bad = b"head\n\nAAA*\n".to_vec();
        assert!(decode_base64_in_place(&mut bad, 6).is_err());
    }

    #[test]
    fn the_digest_beside_the_check_is_of_head_and_body_and_only_for_a_canonical_body() {
        use sha2::Digest;
        let digest = |pieces: &[&[u8]]| {
            pieces
                .iter()
                .fold(sha2::Sha256::new(), |mut h, p| {
                    h.update(p);
                    h
                })
                .finalize()
                .to_vec()
        };
        let line = [b'Q'; 76];
        for size in [100usize, DIGEST_BESIDE - 1, DIGEST_BESIDE + 1000] {
            let mut body: Vec<u8> = line.iter().copied().chain(*b"\r\n").cycle().take(size).collect();
            body.truncate(body.len() - body.len() % 78);
            let head = b"Content-Type: text/plain\r\n\r\n";
            let expected = digest(&[head, &body]);
            assert_eq!(canonical_digest(head, &body, digest), Some(expected), "size {size}");
            // A bare LF at the very end: not canonical, so no digest of it as it is.
            body.extend_from_slice(b"tail\n");
            assert_eq!(canonical_digest(head, &body, digest), None, "size {size}");
        }
    }

    /// The plain definition `already_canonical` must agree with (the windowed scan is faster).
    fn canonical_by_definition(body: &[u8]) -> bool {
        let lines: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
        let n = lines.len();
        body.is_ascii()
            && !body.contains(&0)
            && lines.iter().enumerate().all(|(i, l)| {
                let last = i + 1 == n;
                let text = if last {
                    *l
                } else {
                    match l.strip_suffix(b"\r") {
                        Some(t) => t,
                        None => return false,
                    }
                };
                !text.contains(&b'\r')
                    && text.len() <= MAX_LINE
                    && !text.ends_with(b" ")
                    && !text.ends_with(b"\t")
                    && !text.starts_with(b"From ")
            })
    }

    /// The same line rules without the CRLF requirement: a line may end in CR LF or LF.
    fn transport_safe_by_definition(body: &[u8]) -> bool {
        body.is_ascii()
            && !body.contains(&0)
            && body.split(|&b| b == b'\n').all(|l| {
                let text = l.strip_suffix(b"\r").unwrap_or(l);
                !text.contains(&b'\r')
                    && text.len() <= MAX_LINE
                    && !text.ends_with(b" ")
                    && !text.ends_with(b"\t")
                    && !text.starts_with(b"From ")
            })
    }

    #[test]
    fn windowed_canonical_check_agrees_with_the_definition() {
        let mut next = xorshift(0x2545f4914f6cdd1d);
        let alphabet: &[u8] = b"ab \t\r\nF=\x00\x80";
        for round in 0..3000 {
            // Long bodies cross the 64 KiB windows; short ones hit the edge cases.
            let len = if round % 50 == 0 { 200_000 } else { (next() % 300) as usize };
            let mut body = Vec::with_capacity(len);
            while body.len() < len {
                match next() % 10 {
                    0 => body.extend_from_slice(b"\r\n"),
                    1 => body.push(alphabet[(next() % alphabet.len() as u64) as usize]),
                    2 if round % 7 == 0 => body.extend_from_slice(b"From x"),
                    _ => body.extend_from_slice(b"abcdefgh"),
                }
                if round % 50 == 0 && body.len() % 70 < 8 {
                    body.extend_from_slice(b"\r\n");
                }
            }
            assert_eq!(
                already_canonical(&body),
                canonical_by_definition(&body),
                "round {round}: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
            assert_eq!(
                transport_safe(&body),
                transport_safe_by_definition(&body),
                "round {round}: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            );
        }
        // Across windows: canonical, then one flaw at a time far past the first window.
        let mut big: Vec<u8> = Vec::new();
        while big.len() < 300_000 {
            big.extend_from_slice(b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=abcdefghijklmnopqrstuvwxyz0123456789+/\r\n");
        }
        assert!(already_canonical(&big) && canonical_by_definition(&big));
        for flaw in [&b"\n"[..], b"\r", b" \r\n", b"\r\nFrom here", b"\x80", b"\x00"] {
            let mut b = big.clone();
            let at = 200_000 - 200_000 % 78;
            b.splice(at..at, flaw.iter().copied());
            assert_eq!(already_canonical(&b), canonical_by_definition(&b), "{flaw:?}");
            assert!(!already_canonical(&b), "{flaw:?}");
        }
        let long_line = [b'a'; 1200];
        assert!(!already_canonical(&long_line));
        assert!(already_canonical(b"a\r\nb"));
        assert!(!already_canonical(b"a\nb"));
    }

    #[test]
    fn multipart_parts_exclude_the_line_end_before_each_delimiter() {
        let body = b"preamble\r\n--b\r\nA\r\n\r\nx\r\n--b\r\nB\r\n--b--\r\nepilogue";
        let parts = split_multipart(body, "b").unwrap();
        assert_eq!(parts, vec![&b"A\r\n\r\nx"[..], &b"B"[..]]);
    }

    #[test]
    fn multipart_without_closing_delimiter_is_malformed() {
        assert!(split_multipart(b"--b\r\nA\r\n", "b").is_err());
    }

    #[test]
    fn eight_bit_text_is_made_quoted_printable() {
        let raw = "Content-Type: text/plain; charset=utf-8\n\nこんにちは \nFrom here\n".as_bytes();
        let e = Entity::parse(raw).unwrap();
        let c = canonicalise(&e, 0).unwrap();
        let s = String::from_utf8(c).unwrap();
        assert!(s.contains("Content-Transfer-Encoding: quoted-printable\r\n\r\n"), "{s}");
        assert!(s.is_ascii());
        assert!(s.contains("=46rom here"), "{s}");
        assert!(s.contains("=20\r\n"), "trailing space protected: {s}");
        let back = mail_parser::decoders::quoted_printable::quoted_printable_decode(
            s.split("\r\n\r\n").nth(1).unwrap().as_bytes(),
        )
        .unwrap();
        assert_eq!(back, "こんにちは \r\nFrom here\r\n".as_bytes());
    }

    #[test]
    fn safe_seven_bit_text_is_kept_with_crlf() {
        let e = Entity::parse(b"Content-Type: text/plain\n\nhello\nworld\n").unwrap();
        assert_eq!(canonicalise(&e, 0).unwrap(), b"Content-Type: text/plain\r\n\r\nhello\r\nworld\r\n");
    }

    #[test]
    fn header_line_that_is_not_a_field_is_malformed() {
        assert!(Entity::parse(b"From: a@b\nthis is not a header\n\nbody").is_err());
    }

    fn from_of(head: &str) -> std::result::Result<String, FromError> {
        Entity::parse(format!("{head}\nTo: b@c.example\n\nx").as_bytes()).unwrap().from_address()
    }

    #[test]
    fn from_address_is_found() {
        assert_eq!(from_of("From: \"Alice\" <Alice@Example.JP>").as_deref(), Ok("alice@example.jp"));
        assert_eq!(from_of("From: alice@example.jp").as_deref(), Ok("alice@example.jp"));
        assert_eq!(from_of("FROM: alice@example.jp (Alice)").as_deref(), Ok("alice@example.jp"));
        assert_eq!(from_of("From:\n  =?UTF-8?B?5bGx55Sw?= <alice@example.jp>").as_deref(), Ok("alice@example.jp"));
        // A display name that looks like an address names no one: the address is what counts.
        assert_eq!(from_of("From: ceo@bank.example <alice@example.jp>").as_deref(), Ok("alice@example.jp"));
    }

    #[test]
    fn a_second_from_field_is_refused_wherever_it_stands() {
        assert_eq!(from_of("From: CEO <ceo@bank.example>\nFrom: alice@example.jp"), Err(FromError::Fields(2)));
        assert_eq!(from_of("From: alice@example.jp\nSubject: x\nfrom: ceo@bank.example"), Err(FromError::Fields(2)));
        assert_eq!(from_of("From: a@x.example\nFrom: a@x.example\nFrom: a@x.example"), Err(FromError::Fields(3)));
    }

    #[test]
    fn a_from_with_several_mailboxes_or_a_group_or_no_address_is_refused() {
        assert_eq!(from_of("From: alice@example.jp, ceo@bank.example"), Err(FromError::Mailboxes(2)));
        assert_eq!(from_of("From: Alice <alice@example.jp>,\n CEO <ceo@bank.example>"), Err(FromError::Mailboxes(2)));
        assert_eq!(from_of("From: Staff: alice@example.jp, ceo@bank.example;"), Err(FromError::Group));
        assert_eq!(from_of("From: Alice"), Err(FromError::NotAnAddress));
        assert_eq!(from_of("From: <>"), Err(FromError::NotAnAddress));
        assert_eq!(from_of("From:"), Err(FromError::NotAnAddress));
        assert_eq!(from_of("Subject: none"), Err(FromError::Missing));
        // Two addresses a reader could take either of, in forms the parser does not split.
        for two in [
            "From: ceo@bank.example alice@example.jp",
            "From: <alice@example.jp> <ceo@bank.example>",
            "From: <alice@example.jp> ceo@bank.example",
            "From: alice@example.jp\n\tceo@bank.example",
            "From: <ceo@bank.example\"> alice@example.jp",
            "From: alice@@example.jp",
        ] {
            assert_eq!(from_of(two), Err(FromError::NotAnAddress), "{two}");
        }
        assert_eq!(from_of("From: alice@example.jp;ceo@bank.example"), Err(FromError::Group));
    }

    #[test]
    fn a_bare_cr_that_could_hide_a_from_field_is_refused() {
        assert_eq!(from_of("From: alice@example.jp\nX-Note: x\rFrom: ceo@bank.example"), Err(FromError::BareCr));
    }

    #[test]
    fn mutated_mime_never_panics_in_canonicalise_or_classify() {
        let sample = b"From: a@b.example\nContent-Type: multipart/mixed; boundary=\"X\"\n\n--X\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\nh=C3=A9llo =\nworld\n--X\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\nAAECAw==\n--X\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=Y\n\n--Y\n\nx\n--Y\nContent-Type: application/pkcs7-signature\n\nMAA=\n--Y--\n--X--\n";
        let mut next = xorshift(0x2545f4914f6cdd1d);
        for _ in 0..5000 {
            let mut m = sample.to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % m.len();
                match next() % 4 {
                    0 => m[i] ^= 1 << (next() % 8),
                    1 => m.truncate(i.max(1)),
                    2 => m.insert(i, [b'\n', b'-', b'=', 0xff, b':', b'"'][(next() % 6) as usize]),
                    _ => {
                        m.remove(i);
                    }
                }
                if m.is_empty() {
                    m.push(b'x');
                }
            }
            if let Ok(e) = Entity::parse(&m) {
                let _ = canonicalise(&e, 0);
                let _ = e.from_address();
            }
            let _ = smime::classify(&m);
        }
    }
}
