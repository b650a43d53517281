//! Profile files, config files and pkcs11: URIs.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = ssmax_card::profile::Profile::parse("fuzz.toml", text);
    let _ = toml::from_str::<ssmax_card::config::Config>(text);
    let _ = ssmax_card::token::uri::Pkcs11Uri::parse(text);
});
