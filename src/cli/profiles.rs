use super::common::setup;
use super::Global;
use crate::error::Failure;

pub fn run(g: &Global) -> Result<(), Failure> {
    let s = setup(g)?;
    for p in s.profiles.iter() {
        let module = p.module_paths().iter().find(|m| m.exists()).map(|m| format!("{} (installed)", m.display()));
        let module = module
            .or_else(|| p.module_paths().first().map(|m| format!("{} (not installed)", m.display())))
            .unwrap_or_else(|| "no module for this OS".into());
        println!("{:<16} {}", p.name, p.description);
        println!("{:<16} module: {module}", "");
        println!(
            "{:<16} PIN {}–{} chars{}{}; sign: {}; decrypt: {}",
            "",
            p.pin.min_length.get_ref(),
            p.pin.max_length,
            if p.pin.max_tries > 0 { format!(", locks after {} tries", p.pin.max_tries) } else { String::new() },
            if p.pin.normalise == crate::profile::Normalise::Uppercase { ", upper-cased" } else { "" },
            p.mechanisms.sign.iter().map(|m| m.get_ref().as_str()).collect::<Vec<_>>().join(" "),
            if p.keys.can_decrypt {
                p.mechanisms.decrypt.iter().map(|m| m.get_ref().as_str()).collect::<Vec<_>>().join(" ")
            } else {
                "no (signing only)".into()
            },
        );
        let presence = match p.presence.method {
            crate::profile::PresenceMethod::Pcsc => "PC/SC reader events",
            crate::profile::PresenceMethod::Pkcs11Poll if p.presence.reinitialise_to_rescan => {
                "slot polling (module re-initialised to see new tokens)"
            }
            crate::profile::PresenceMethod::Pkcs11Poll => "slot polling",
        };
        let per_use = match p.pin.always_authenticate {
            crate::profile::AlwaysAuthenticate::PerKey => "per key (CKA_ALWAYS_AUTHENTICATE)",
        };
        println!("{:<16} presence: {presence}; PIN on every use: {per_use}", "");
        println!("{:<16} source: {}", "", p.source);
    }
    if let Some(dir) = &s.config.profiles_dir {
        println!("extra profiles directory: {}", dir.display());
    }
    Ok(())
}
