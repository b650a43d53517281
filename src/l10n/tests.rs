use super::*;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::Path;

type Placeholders = BTreeSet<String>;

/// Message key → the `$variables` its text uses, read from a catalogue's source.
fn messages(catalogue: &str) -> BTreeMap<String, Placeholders> {
    let mut out: BTreeMap<String, Placeholders> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in catalogue.lines() {
        let starts_message = line.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
        if starts_message {
            let key = line.split('=').next().unwrap_or("").trim().to_string();
            assert!(!out.contains_key(&key), "message {key} is defined twice");
            out.insert(key.clone(), BTreeSet::new());
            current = Some(key);
        } else if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(key) = &current {
            let vars = out.entry(key.clone()).or_default();
            let mut rest = line;
            while let Some(at) = rest.find('$') {
                rest = &rest[at + 1..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                vars.insert(name);
            }
        }
    }
    out
}

/// Every `tr!("key", a = …, b = …)` in the sources: the key and the names it gives.
fn call_sites() -> Vec<(String, String, Placeholders)> {
    fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    let mut sites = Vec::new();
    for f in files {
        if f.starts_with(root.join("l10n")) || f == root.join("l10n.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("tr!(") {
            let before = rest[..at].chars().next_back();
            rest = &rest[at + 4..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue; // include_str!( and the like
            }
            let body = rest.trim_start();
            let Some(body) = body.strip_prefix('"') else {
                panic!("{}: tr! must name its message with a string literal", f.display());
            };
            let key: String = body.chars().take_while(|c| *c != '"').collect();
            let args = top_level_arguments(&body[key.len() + 1..]);
            let names = args
                .iter()
                .map(|a| a.split('=').next().unwrap_or("").trim().to_string())
                .filter(|n| !n.is_empty())
                .collect();
            sites.push((f.display().to_string(), key, names));
        }
    }
    sites
}

/// The comma-separated pieces after the key, up to the macro's closing parenthesis.
fn top_level_arguments(after_key: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut piece = String::new();
    for c in after_key.chars() {
        if in_string {
            piece.push(c);
            match (escaped, c) {
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => escaped = false,
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                piece.push(c);
            }
            '(' | '[' | '{' => {
                depth += 1;
                piece.push(c);
            }
            ')' | ']' | '}' if depth == 0 => break,
            ')' | ']' | '}' => {
                depth -= 1;
                piece.push(c);
            }
            ',' if depth == 0 => args.push(std::mem::take(&mut piece)),
            _ => piece.push(c),
        }
    }
    args.push(piece);
    args.into_iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect()
}

#[test]
fn both_catalogues_parse_without_errors() {
    for (lang, text) in CATALOGUES {
        if let Err((_, errors)) = FluentResource::try_new(text.to_string()) {
            panic!("{lang:?} catalogue: {errors:?}");
        }
    }
}

#[test]
fn both_catalogues_have_the_same_messages_with_the_same_placeholders() {
    let en = messages(CATALOGUES[0].1);
    let ja = messages(CATALOGUES[1].1);
    let only_en: Vec<_> = en.keys().filter(|k| !ja.contains_key(*k)).collect();
    let only_ja: Vec<_> = ja.keys().filter(|k| !en.contains_key(*k)).collect();
    assert!(only_en.is_empty(), "missing in ja.ftl: {only_en:?}");
    assert!(only_ja.is_empty(), "missing in en.ftl: {only_ja:?}");
    for (key, vars) in &en {
        assert_eq!(vars, &ja[key], "{key}: placeholders differ between en.ftl and ja.ftl");
    }
}

#[test]
fn every_message_the_code_names_exists_with_the_placeholders_it_is_given() {
    let en = messages(CATALOGUES[0].1);
    let sites = call_sites();
    for (file, key, given) in &sites {
        let Some(wanted) = en.get(key) else { panic!("{file}: no message {key} in the catalogues") };
        assert_eq!(given, wanted, "{file}: {key} given other placeholders than the catalogue uses");
    }
    let used: BTreeSet<&String> = sites.iter().map(|(_, k, _)| k).collect();
    let unused: Vec<_> = en.keys().filter(|k| !used.contains(k)).collect();
    assert!(unused.is_empty(), "catalogue messages no code uses: {unused:?}");
}

#[test]
fn japanese_is_chosen_by_the_first_locale_variable_set() {
    let v = |s: &str| Some(OsString::from(s));
    assert_eq!(Lang::from_variables([None, None, v("ja_JP.UTF-8")]), Lang::Ja);
    assert_eq!(Lang::from_variables([v("C"), None, v("ja_JP.UTF-8")]), Lang::En);
    assert_eq!(Lang::from_variables([v(""), v("ja_JP.utf8"), v("en_US.UTF-8")]), Lang::Ja);
    assert_eq!(Lang::from_variables([None, None, None]), Lang::En);
    assert_eq!(Lang::from_locale("ja_JP.UTF-8@calendar=japanese"), Lang::Ja);
    assert_eq!(Lang::from_locale("jam_JM.UTF-8"), Lang::En);
}

#[test]
fn a_japanese_locale_that_is_not_utf8_gets_english_rather_than_garbage() {
    for locale in ["ja_JP.eucJP", "ja_JP.SJIS", "ja_JP", "ja"] {
        assert_eq!(Lang::from_locale(locale), Lang::En, "{locale}");
    }
}

#[test]
fn a_message_follows_the_language_of_the_thread_and_falls_back_to_english() {
    let ja = speaking(Lang::Ja, || crate::tr!("token-pin-locked", token = "alice"));
    let en = speaking(Lang::En, || crate::tr!("token-pin-locked", token = "alice"));
    assert!(ja.contains("alice") && ja.contains("ロック"), "{ja}");
    assert!(en.contains("alice") && en.contains("locked"), "{en}");
    assert_eq!(speaking(Lang::Ja, || text("no-such-message", &[])), "no-such-message");
}
