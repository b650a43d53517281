//! The seam every PIN source plugs into (`PinPrompt`; the sources are in prompt.rs) and the rules
//! around a PIN: flags read before login, profile rules. A PIN lives in a `SecretString` (zeroized on
//! drop) from the moment it is read until the token has it; it is never formatted or logged.

use super::{PinFlags, TokenError};
use crate::profile::{Charset, Normalise, PinRules, Profile};
use secrecy::{ExposeSecret, SecretString};

/// What the prompt shows the user, so they know which card and which operation.
pub struct PinRequest<'a> {
    pub token: &'a str,
    pub operation: &'a str,
    pub rules: &'a PinRules,
}

/// The longest operation a prompt shows, and the longest token label (in characters).
const MAX_OPERATION_SHOWN: usize = 200;
const MAX_LABEL_SHOWN: usize = 64;

impl PinRequest<'_> {
    /// The operation as a prompt shows it. It holds what a mail says (its From, To and Cc,
    /// unverified when decrypting): no control, bidi or zero-width characters that could
    /// reorder the prompt or hide part of it, and no text longer than a prompt has room for.
    pub fn operation_shown(&self) -> String {
        shown(self.operation, MAX_OPERATION_SHOWN)
    }

    /// The token's label (what the card says of itself), the same way.
    pub fn token_shown(&self) -> String {
        shown(self.token, MAX_LABEL_SHOWN)
    }
}

/// `text` with controls and the format characters that reorder or hide text (bidi overrides and
/// isolates, marks, zero-width characters, the BOM) dropped, runs of white space made one
/// space, and at most `max` characters kept (the rest said by "…").
pub fn shown(text: &str, max: usize) -> String {
    let hidden = crate::l10n::misleading;
    let mut out = String::new();
    let (mut count, mut space) = (0, false);
    for c in text.chars().filter(|&c| !hidden(c)) {
        if c.is_whitespace() || c.is_control() {
            space = !out.is_empty();
            continue;
        }
        for c in if std::mem::take(&mut space) { vec![' ', c] } else { vec![c] } {
            if count == max {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

/// A source of PINs; the CLI and the agent share the core through this.
pub trait PinPrompt {
    fn ask(&self, request: &PinRequest<'_>) -> Result<SecretString, TokenError>;
}

/// Refuse before `C_Login` when the token says a try would lock it or it is locked already.
/// Returns a warning to show when tries are running low.
pub fn check_flags(token: &str, flags: PinFlags, allow_final_try: bool) -> Result<Option<String>, TokenError> {
    if flags.locked {
        return Err(TokenError::PinLocked(token.to_string()));
    }
    if flags.final_try {
        if !allow_final_try {
            return Err(TokenError::FinalTryRefused(token.to_string()));
        }
        return Ok(Some(crate::tr!("pin-final-try-warning", token = token)));
    }
    if flags.count_low {
        return Ok(Some(crate::tr!("pin-low-warning", token = token)));
    }
    Ok(None)
}

/// The remaining-tries sentence for a wrong-PIN error, from the flags read after the failure.
pub fn tries_left(after: Option<PinFlags>, profile: &Profile) -> String {
    match after {
        Some(f) if f.locked => crate::tr!("pin-tries-locked"),
        Some(f) if f.final_try => crate::tr!("pin-tries-final"),
        Some(f) if f.count_low && profile.pin.reports_retry_flags => crate::tr!("pin-tries-few"),
        // A token that raises FINAL_TRY at one try left has more when it does not: OpenSC's PIV
        // driver knows no maximum, so COUNT_LOW never comes, but FINAL_TRY and LOCKED do.
        Some(_) if profile.pin.reports_retry_flags => crate::tr!("pin-tries-more"),
        _ if profile.pin.max_tries == 0 => crate::tr!("pin-tries-uncounted"),
        _ => crate::tr!("pin-tries-unknown"),
    }
}

/// Check length and charset before a try is spent, and normalise as the token's official
/// software does. The reason never contains the PIN.
pub fn apply_rules(rules: &PinRules, pin: SecretString) -> Result<SecretString, String> {
    let normalised = match rules.normalise {
        Normalise::None => pin,
        Normalise::Uppercase => {
            let upper = pin.expose_secret().to_ascii_uppercase();
            drop(pin);
            SecretString::from(upper)
        }
    };
    let s = normalised.expose_secret();
    let len = s.chars().count();
    let (min, max) = (*rules.min_length.get_ref(), rules.max_length);
    if len < min || len > max {
        return Err(crate::tr!("pin-rule-length", min = min, max = max, length = len));
    }
    let ok = match rules.charset {
        Charset::Any => true,
        Charset::Digits => s.chars().all(|c| c.is_ascii_digit()),
        Charset::UpperAlnum => s.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
    };
    if !ok {
        return Err(match rules.charset {
            Charset::Digits => crate::tr!("pin-rule-digits"),
            _ => crate::tr!("pin-rule-upper-alnum"),
        });
    }
    if rules.mix_letters_and_digits
        && !(s.chars().any(|c| c.is_ascii_digit()) && s.chars().any(|c| c.is_ascii_alphabetic()))
    {
        return Err(crate::tr!("pin-rule-mix"));
    }
    Ok(normalised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::load_all;

    fn profile(name: &str) -> Profile {
        load_all(None).unwrap().into_iter().find(|p| p.name == name).unwrap()
    }

    #[test]
    fn a_prompt_shows_no_control_bidi_or_zero_width_character_and_no_endless_text() {
        // U+202E would show "ceo@bank.example" as "elpmaxe.knab@oec" after it, the CR rewrite
        // the line, the zero-width space split what looks like one address.
        let text = "sign mail from a\u{202e}lpmaxe.knab@oec\r\n to b\u{200b}ob@x.example\t\x1b[2J";
        assert_eq!(shown(text, 200), "sign mail from alpmaxe.knab@oec to bob@x.example [2J");
        let long = "x".repeat(1000);
        assert_eq!(shown(&long, 200).chars().count(), 201);
        assert!(shown(&long, 200).ends_with('…'));
        assert_eq!(shown("  \u{2066}\u{2069} ", 10), "");
        assert_eq!(shown("山田 太郎 <taro@example.jp>", 200), "山田 太郎 <taro@example.jp>");
    }

    #[test]
    fn locked_pin_is_refused_before_login() {
        let f = PinFlags { locked: true, ..Default::default() };
        assert!(matches!(check_flags("t", f, true), Err(TokenError::PinLocked(_))));
    }

    #[test]
    fn final_try_is_refused_unless_allowed() {
        let f = PinFlags { final_try: true, count_low: true, ..Default::default() };
        assert!(matches!(check_flags("t", f, false), Err(TokenError::FinalTryRefused(_))));
        assert!(check_flags("t", f, true).unwrap().unwrap().contains("one PIN try left"));
    }

    #[test]
    fn count_low_warns_but_proceeds() {
        let f = PinFlags { count_low: true, ..Default::default() };
        assert!(check_flags("t", f, false).unwrap().is_some());
        assert!(check_flags("t", PinFlags::default(), false).unwrap().is_none());
    }

    #[test]
    fn jpki_password_is_uppercased_and_checked_without_spending_a_try() {
        let p = profile("jpki");
        let pin = apply_rules(&p.pin, SecretString::from("abc123".to_string())).unwrap();
        assert_eq!(pin.expose_secret(), "ABC123");
        let e = apply_rules(&p.pin, SecretString::from("abcdef".to_string())).unwrap_err();
        assert!(e.contains("mix"), "{e}");
        let e = apply_rules(&p.pin, SecretString::from("ab-123".to_string())).unwrap_err();
        assert!(e.contains("A–Z"), "{e}");
        assert!(!e.contains("ab-123"));
    }

    #[test]
    fn piv_pin_length_and_digits_are_checked() {
        let p = profile("opensc-piv");
        assert!(apply_rules(&p.pin, SecretString::from("12345".to_string())).unwrap_err().contains("6 to 8"));
        assert!(apply_rules(&p.pin, SecretString::from("12345a".to_string())).unwrap_err().contains("digits"));
        assert!(apply_rules(&p.pin, SecretString::from("123456".to_string())).is_ok());
    }

    #[test]
    fn tries_left_reports_what_the_token_tells() {
        let p = profile("yubikey");
        assert_eq!(
            tries_left(Some(PinFlags { final_try: true, ..Default::default() }), &p),
            "one try left before it locks"
        );
        assert_eq!(tries_left(Some(PinFlags { locked: true, ..Default::default() }), &p), "the PIN is now locked");
        assert_eq!(tries_left(None, &profile("softhsm2")), "this token does not count tries");
    }
}
