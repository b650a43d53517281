//! ssmax-card as a library: what the binary, the benchmarks and the fuzz targets share.
//! The modules are described in docs/architecture.md.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod agent;
pub mod cli;
pub mod cms;
pub mod config;
pub mod crl_store;
pub mod deadlines;
pub mod error;
pub mod files;
pub mod imap;
pub mod l10n;
pub mod mail;
pub mod ops;
pub mod platform;
pub mod profile;
pub mod prompt;
pub mod smtp;
pub mod ssmax;
pub mod token;

/// The layering docs/architecture.md draws, checked on the source: each module may use those on
/// lower floors (and, among the faces, cli → agent / smtp / imap, smtp → agent, imap → agent /
/// smtp); only `token/`
/// speaks PKCS#11.
#[cfg(test)]
mod layering {
    use std::path::Path;

    /// Floor of each top-level module, lowest first.
    const FLOORS: &[(&str, u8)] = &[
        // Words for people: every layer names its messages.
        ("l10n", 0),
        ("deadlines", 1),
        ("files", 1),
        ("platform", 1),
        ("mail", 2),
        ("cms", 3),
        ("profile", 4),
        ("config", 5),
        ("token", 6),
        ("prompt", 7),
        ("crl_store", 6),
        ("ssmax", 7),
        ("error", 7),
        ("ops", 8),
        ("agent", 9),
        ("smtp", 9),
        ("imap", 9),
        ("cli", 9),
    ];
    const FACE_EDGES: &[(&str, &str)] = &[
        ("cli", "agent"),
        ("cli", "smtp"),
        ("cli", "imap"),
        ("smtp", "agent"),
        ("imap", "agent"),
        // The IMAP door logs clients in with the SMTP door's client secret, from its keyring.
        ("imap", "smtp"),
    ];

    fn floor(module: &str) -> u8 {
        FLOORS.iter().find(|(m, _)| *m == module).map(|(_, f)| *f).unwrap_or_else(|| panic!("{module} has no floor"))
    }

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                sources(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn no_module_uses_one_on_a_higher_floor_and_only_token_speaks_pkcs11() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for f in files {
            let rel = f.strip_prefix(&src).unwrap();
            let top = rel.iter().next().unwrap().to_string_lossy().trim_end_matches(".rs").to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&f).unwrap();
            for (at, _) in text.match_indices("crate::") {
                let name: String = text[at + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                // `crate::tr!` is l10n's macro, exported at the crate root.
                let name = if name == "tr" { "l10n".to_string() } else { name };
                if name.is_empty() || name == top {
                    continue;
                }
                let allowed = floor(&name) < floor(&top) || FACE_EDGES.contains(&(top.as_str(), name.as_str()));
                if !allowed {
                    wrong.push(format!("{}: {top} uses {name}", rel.display()));
                }
            }
            if text.contains("crate::{") {
                wrong.push(format!("{}: a grouped crate::{{…}} import (write one path per module)", rel.display()));
            }
            if top != "token" && (text.contains("cryptoki::") || text.contains("cryptoki_sys::")) {
                wrong.push(format!("{}: uses cryptoki outside token/", rel.display()));
            }
        }
        wrong.sort();
        wrong.dedup();
        assert!(wrong.is_empty(), "imports against the layering:\n{}", wrong.join("\n"));
    }

    /// Within a directory, a file that uses a sibling (`super::name`, `crate::dir::name`) is
    /// not used back by it: two files that need each other are one thing cut in two.
    #[test]
    fn no_two_files_of_a_directory_use_each_other() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        // (directory, file stem) → siblings it names.
        let mut uses: std::collections::BTreeMap<(String, String), std::collections::BTreeSet<String>> =
            Default::default();
        for f in &files {
            let rel = f.strip_prefix(&src).unwrap();
            let parts: Vec<String> =
                rel.iter().map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
            let (dir, stem) = match parts.as_slice() {
                [d, s] if s != "mod" => (d.clone(), s.clone()),
                _ => continue,
            };
            let text = std::fs::read_to_string(f).unwrap();
            let name_at = |at: usize| -> String {
                text[at..].chars().take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_').collect()
            };
            let mut named = std::collections::BTreeSet::new();
            for (at, m) in text.match_indices("super::") {
                named.insert(name_at(at + m.len()));
            }
            let own = format!("crate::{dir}::");
            for (at, m) in text.match_indices(own.as_str()) {
                named.insert(name_at(at + m.len()));
            }
            named.remove(&stem);
            uses.insert((dir, stem), named);
        }
        let mut circles = Vec::new();
        for ((dir, a), named) in &uses {
            for b in named {
                let back = uses.get(&(dir.clone(), b.clone())).is_some_and(|n| n.contains(a));
                if back && a < b {
                    circles.push(format!("{dir}/{a}.rs <-> {dir}/{b}.rs"));
                }
            }
        }
        // Found by this test when it came (issue 30), to be broken one by one: the list only shrinks.
        const KNOWN: &[&str] = &[
            "agent/client.rs <-> agent/protocol.rs",
            "cms/asn1.rs <-> cms/signed.rs",
            "smtp/event_loop.rs <-> smtp/server.rs",
            "smtp/server.rs <-> smtp/session.rs",
        ];
        let new: Vec<&String> = circles.iter().filter(|c| !KNOWN.contains(&c.as_str())).collect();
        assert!(new.is_empty(), "files that use each other:\n{new:?}");
        let broken: Vec<&&str> = KNOWN.iter().filter(|k| !circles.iter().any(|c| c == *k)).collect();
        assert!(broken.is_empty(), "no longer a circle, take it off KNOWN: {broken:?}");
    }
}
