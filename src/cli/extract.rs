//! `receive --extract DIR`: every attachment of a received mail written into DIR, or none.
//!
//! All content is decoded and every target checked before anything is written; the files are
//! then written under temporary names and renamed into place together. Everything happens
//! relative to one descriptor of DIR opened without following a symbolic link, so the
//! directory cannot be swapped for a link to somewhere else between the check and the writing.

use crate::error::{Exit, Failure};
use crate::mail::Entity;
use crate::ssmax::mail::{opened_attachments, safe_filename};
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, CWD};
use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One written attachment.
pub struct Extracted {
    pub path: PathBuf,
    pub label: String,
    /// The name the attachment asked for, when another attachment had it first.
    pub asked_for: Option<String>,
}

impl Extracted {
    /// The line the user sees for it.
    pub fn note(&self) -> String {
        match &self.asked_for {
            Some(name) => crate::tr!(
                "extract-wrote-renamed",
                path = self.path,
                label = crate::l10n::escaped(&self.label),
                name = name
            ),
            None => crate::tr!("extract-wrote", path = self.path, label = crate::l10n::escaped(&self.label)),
        }
    }
}

/// A file to write: its final name in the directory and its decoded content.
struct Planned {
    name: String,
    asked_for: Option<String>,
    label: String,
    content: Vec<u8>,
}

/// Write every opened attachment of `mime` into `dir`. Without `force` an existing file of the
/// same name stops the whole extraction before anything is written; with it, existing files
/// are replaced.
pub fn extract_all(mime: &[u8], dir: &Path, force: bool) -> Result<Vec<Extracted>, Failure> {
    let plan = plan(mime)?;
    let dirfd = open_target_dir(dir)?;
    let at = |name: &str| dir.join(name);
    let mut clashes = Vec::new();
    for p in &plan {
        match rustix::fs::statat(&dirfd, p.name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory => {
                return Err(Failure::new(Exit::Usage, crate::tr!("extract-is-directory", path = at(&p.name))));
            }
            Ok(_) => clashes.push(at(&p.name).display().to_string()),
            Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(io_failure(&at(&p.name), e)),
        }
    }
    if !force && !clashes.is_empty() {
        return Err(Failure::new(Exit::Usage, crate::tr!("extract-exists", paths = clashes.join(", "))));
    }
    let mut temps = Temps { dir: &dirfd, names: Vec::new() };
    for p in &plan {
        let tmp = temps.create(&p.content).map_err(|e| io_failure(&at(&p.name), e))?;
        temps.names.push(tmp);
    }
    let flags = if force { RenameFlags::empty() } else { RenameFlags::NOREPLACE };
    let mut placed: Vec<&str> = Vec::new();
    for (p, tmp) in plan.iter().zip(temps.names.clone()) {
        if let Err(e) = rustix::fs::renameat_with(&dirfd, tmp.as_str(), &dirfd, p.name.as_str(), flags) {
            // Take back what this run put in place, so the directory is as it was (a file
            // replaced under --force stays replaced: its old content is gone).
            for name in &placed {
                let _ = rustix::fs::unlinkat(&dirfd, *name, AtFlags::empty());
            }
            let why = if e == rustix::io::Errno::EXIST { crate::tr!("extract-appeared") } else { e.to_string() };
            return Err(Failure::new(Exit::Io, crate::tr!("extract-nothing-kept", path = at(&p.name), error = why)));
        }
        temps.names.retain(|n| *n != tmp);
        placed.push(&p.name);
    }
    rustix::fs::fsync(&dirfd).map_err(|e| io_failure(dir, e))?;
    Ok(plan.into_iter().map(|p| Extracted { path: at(&p.name), label: p.label, asked_for: p.asked_for }).collect())
}

/// Decode every attachment and give each a distinct safe name, before anything touches the
/// disk. Names are told apart without regard to case: the files may be copied to a system
/// that does not.
fn plan(mime: &[u8]) -> Result<Vec<Planned>, Failure> {
    let mut taken = HashSet::new();
    let mut plan = Vec::new();
    for (n, a) in opened_attachments(mime)?.into_iter().enumerate() {
        let content = Entity::parse(&a.entity)?.decoded_body()?;
        let wanted = safe_filename(&a.filename, n + 1);
        let mut name = wanted.clone();
        let mut k = 2;
        while !taken.insert(name.to_lowercase()) {
            name = numbered(&wanted, k);
            k += 1;
        }
        let asked_for = (name != wanted).then_some(wanted);
        plan.push(Planned { name, asked_for, label: a.label, content });
    }
    Ok(plan)
}

/// "report (2).pdf" for "report.pdf", "README (2)" for "README".
fn numbered(name: &str, k: usize) -> String {
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem} ({k}).{ext}"),
        _ => format!("{name} ({k})"),
    }
}

/// The extraction directory, opened once. Its last component must not be a symbolic link
/// (a link planted where the user expects a directory would send the files elsewhere) unless
/// the user names it as `DIR/.`, which says "where this leads".
fn open_target_dir(dir: &Path) -> Result<OwnedFd, Failure> {
    let bytes = dir.as_os_str().as_bytes();
    let explicit = bytes == b"." || bytes.ends_with(b"/.");
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !explicit {
        flags |= OFlags::NOFOLLOW;
    }
    rustix::fs::openat(CWD, dir, flags, Mode::empty()).map_err(|e| {
        let is_link = std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink());
        match e {
            _ if is_link && !explicit => Failure::new(Exit::Usage, crate::tr!("extract-symlink", path = dir)),
            rustix::io::Errno::NOENT => Failure::new(Exit::Usage, crate::tr!("extract-no-directory", path = dir)),
            rustix::io::Errno::NOTDIR => Failure::new(Exit::Usage, crate::tr!("extract-not-directory", path = dir)),
            e => io_failure(dir, e),
        }
    })
}

fn io_failure(path: &Path, e: rustix::io::Errno) -> Failure {
    Failure::new(Exit::Io, crate::tr!("extract-cannot-write", path = path, error = std::io::Error::from(e).to_string()))
}

/// Temporary files in the extraction directory, removed unless renamed into place.
struct Temps<'d> {
    dir: &'d OwnedFd,
    names: Vec<String>,
}

impl Temps<'_> {
    /// A new private file holding `content`, on disk before it is renamed.
    fn create(&self, content: &[u8]) -> Result<String, rustix::io::Errno> {
        use rand_core::RngCore;
        let mut id = [0u8; 8];
        rand_core::OsRng.fill_bytes(&mut id);
        let name = format!(".ssmax-card-{}.part", base16ct::lower::encode_string(&id));
        let fd = rustix::fs::openat(
            self.dir,
            name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let written = (|| {
            let mut rest = content;
            while !rest.is_empty() {
                let n = rustix::io::write(&fd, rest)?;
                rest = &rest[n..];
            }
            rustix::fs::fsync(&fd)
        })();
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(self.dir, name.as_str(), AtFlags::empty());
            return Err(e);
        }
        Ok(name)
    }
}

impl Drop for Temps<'_> {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = rustix::fs::unlinkat(self.dir, name.as_str(), AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn a_second_name_is_numbered_before_its_extension() {
        assert_eq!(numbered("same.txt", 2), "same (2).txt");
        assert_eq!(numbered("archive.tar.gz", 3), "archive.tar (3).gz");
        assert_eq!(numbered("README", 2), "README (2)");
    }
}
