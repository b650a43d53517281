//! Words for people, in their language: Japanese when the locale asks for it, English otherwise.
//!
//! The texts are data, `i18n/en.ftl` and `i18n/ja.ftl` (Fluent), built into the binary; code
//! names a message by its key through [`tr!`](crate::tr). Only what a person reads is here: exit
//! codes, `--openssl-status` lines, the agent protocol and the audit log never change with the
//! locale.

use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use std::cell::Cell;
use std::sync::OnceLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Ja,
}

pub(crate) const CATALOGUES: [(Lang, &str); 2] =
    [(Lang::En, include_str!("../i18n/en.ftl")), (Lang::Ja, include_str!("../i18n/ja.ftl"))];

impl Lang {
    /// The language of messages as POSIX decides it: `LC_ALL`, then `LC_MESSAGES`, then `LANG`,
    /// the first one set and not empty.
    pub fn from_env() -> Lang {
        Lang::from_variables(["LC_ALL", "LC_MESSAGES", "LANG"].map(std::env::var_os))
    }

    fn from_variables(values: [Option<std::ffi::OsString>; 3]) -> Lang {
        values
            .into_iter()
            .flatten()
            .find(|v| !v.is_empty())
            .map(|v| Lang::from_locale(&v.to_string_lossy()))
            .unwrap_or(Lang::En)
    }

    /// `ja_JP.UTF-8` → Japanese; anything else → English (`C`, `en_US.UTF-8`, and also
    /// `ja_JP.eucJP` or a bare `ja_JP`, whose terminals would show UTF-8 text as garbage: what
    /// is written is UTF-8, and English is ASCII).
    pub fn from_locale(locale: &str) -> Lang {
        let without_modifier = locale.split('@').next().unwrap_or("");
        let (name, codeset) = without_modifier.split_once('.').unwrap_or((without_modifier, ""));
        let language = name.split(['_', '-']).next().unwrap_or("");
        let utf8 = codeset.eq_ignore_ascii_case("UTF-8") || codeset.eq_ignore_ascii_case("utf8");
        if language.eq_ignore_ascii_case("ja") && utf8 {
            Lang::Ja
        } else {
            Lang::En
        }
    }

    /// The tag a client sends the agent so that its answers are in the client's language.
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ja => "ja",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Lang> {
        match tag {
            "en" => Some(Lang::En),
            "ja" => Some(Lang::Ja),
            _ => None,
        }
    }
}

thread_local! {
    /// Set while the agent serves a client that asked for another language than its own.
    static SPEAKING: Cell<Option<Lang>> = const { Cell::new(None) };
}

/// The language messages made on this thread are in now.
pub fn current() -> Lang {
    static PROCESS: OnceLock<Lang> = OnceLock::new();
    // Unit tests read English whatever the developer's locale; they ask for Japanese by name.
    let process = || if cfg!(test) { Lang::En } else { Lang::from_env() };
    SPEAKING.get().unwrap_or_else(|| *PROCESS.get_or_init(process))
}

/// Runs `f` with messages in `lang` on this thread (the agent answering one client).
pub fn speaking<R>(lang: Lang, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Lang>);
    impl Drop for Restore {
        fn drop(&mut self) {
            SPEAKING.set(self.0);
        }
    }
    let _restore = Restore(SPEAKING.replace(Some(lang)));
    f()
}

fn bundle(lang: Lang) -> &'static FluentBundle<FluentResource> {
    static BUNDLES: OnceLock<[FluentBundle<FluentResource>; 2]> = OnceLock::new();
    let bundles = BUNDLES.get_or_init(|| CATALOGUES.map(|(lang, text)| load(lang, text)));
    &bundles[lang as usize]
}

fn load(lang: Lang, text: &str) -> FluentBundle<FluentResource> {
    // A catalogue that does not parse is a build defect the tests catch; what did parse is used.
    let resource = FluentResource::try_new(text.to_string()).unwrap_or_else(|(partial, _)| partial);
    let id = lang.tag().parse().unwrap_or_default();
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // Isolation marks (U+2068/U+2069) would reach terminals and logs as stray bytes.
    bundle.set_use_isolating(false);
    let _ = bundle.add_resource(resource);
    bundle
}

/// The message `key` in the current language, falling back to English, then to the key itself.
pub fn text(key: &str, args: &[(&str, FluentValue<'_>)]) -> String {
    let mut fluent_args = FluentArgs::with_capacity(args.len());
    for (name, value) in args {
        fluent_args.set(*name, value.clone());
    }
    for lang in [current(), Lang::En] {
        let b = bundle(lang);
        if let Some(pattern) = b.get_message(key).and_then(|m| m.value()) {
            let mut errors = Vec::new();
            return b.format_pattern(pattern, Some(&fluent_args), &mut errors).into_owned();
        }
    }
    key.to_string()
}

/// Format characters that reorder or hide text: bidirectional marks, embeddings, overrides and
/// isolates (U+202E shows "exe.txt" for "txt.exe"), the Arabic letter mark, zero-width
/// characters, the soft hyphen (shown or not, as the terminal likes), the byte-order mark, and
/// the line and paragraph separators (U+2028, U+2029), which some viewers break lines on.
pub fn misleading(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// Text from outside (a mail's labels, file names, names it carries) as a terminal line may show
/// it: controls and the characters `misleading` names written as their UTF-8 bytes (`\0a`,
/// `\e2\80\ae`), and the backslash doubled, so no such text starts a line of its own, moves
/// the cursor, or reorders what follows.
pub fn escaped(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || misleading(c) {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a message's placeholder can be given: text as is, numbers as numbers (so that a
/// catalogue can choose a plural by them).
pub trait ToArg {
    fn to_arg(&self) -> FluentValue<'static>;
}

impl ToArg for str {
    fn to_arg(&self) -> FluentValue<'static> {
        FluentValue::from(self.to_string())
    }
}

impl ToArg for String {
    fn to_arg(&self) -> FluentValue<'static> {
        FluentValue::from(self.clone())
    }
}

impl ToArg for std::path::Path {
    fn to_arg(&self) -> FluentValue<'static> {
        FluentValue::from(self.display().to_string())
    }
}

impl ToArg for std::path::PathBuf {
    fn to_arg(&self) -> FluentValue<'static> {
        self.as_path().to_arg()
    }
}

impl<T: ToArg + ?Sized> ToArg for &T {
    fn to_arg(&self) -> FluentValue<'static> {
        (**self).to_arg()
    }
}

macro_rules! number_arg {
    ($($t:ty),*) => {$(
        impl ToArg for $t {
            fn to_arg(&self) -> FluentValue<'static> {
                FluentValue::from(*self)
            }
        }
    )*};
}
number_arg!(u8, u16, u32, u64, usize, i32, i64);

/// `tr!("key")` or `tr!("key", name = value, …)`: the message in the current language. Values are
/// strings, paths or numbers; anything else is given as `x.to_string()`.
#[macro_export]
macro_rules! tr {
    ($key:literal) => {
        $crate::l10n::text($key, &[])
    };
    ($key:literal, $($name:ident = $value:expr),+ $(,)?) => {
        $crate::l10n::text($key, &[$((stringify!($name), $crate::l10n::ToArg::to_arg(&$value))),+])
    };
}

#[cfg(test)]
mod tests;
