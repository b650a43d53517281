//! Certificates from messages, files and tokens.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::cms::cert;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = cert::parse(data) {
        let _ = cert::emails(&c);
        let _ = cert::subject(&c);
        let _ = cert::check_signing_usage(&c);
        let _ = cert::subject_key_id(&c);
        let _ = cert::is_ca(&c);
        let _ = cert::fmt_time(cert::not_after(&c));
    }
});
