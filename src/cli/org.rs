//! `ssmax-card org`: one reference organisation hop (tests and the demo; not a mail server).

use super::common::{read_file, read_input, write_output};
use super::{Global, InOut};
use crate::cms::cert::{self, load_file};
use crate::cms::verify::Trust;
use crate::error::{Exit, Failure};
use crate::ssmax::org::{relay, OrgError, OrgKey, Role, Step};
use crate::ssmax::registry::Registry;
use std::path::PathBuf;

pub struct OrgArgs {
    pub role: Role,
    pub key: PathBuf,
    pub cert: PathBuf,
    pub anchors: Vec<PathBuf>,
    pub certfile: Vec<PathBuf>,
    pub own_cas: Vec<PathBuf>,
    pub crls: Vec<PathBuf>,
    pub revocation: crate::cms::revocation::Policy,
    pub next: PathBuf,
    pub scanner: Option<String>,
    pub registry: Option<PathBuf>,
    pub attestation_roots: Vec<PathBuf>,
}

pub fn run(_g: &Global, io: &InOut, a: OrgArgs) -> Result<(), Failure> {
    let raw = read_input(io)?;
    let key_pem = String::from_utf8(read_file(&a.key, crate::files::MAX_TEXT_FILE)?)
        .map_err(|_| Failure::new(Exit::Usage, "the organisation key is not PEM text"))?;
    let cert_der = load_file(&a.cert)?
        .into_iter()
        .next()
        .ok_or_else(|| Failure::new(Exit::Usage, "no organisation certificate"))?;
    let mut org = OrgKey::load(&key_pem, &cert_der)?;
    let mut trust = Trust::default();
    for f in &a.anchors {
        trust.anchors.extend(load_file(f)?);
    }
    for f in &a.certfile {
        trust.intermediates.extend(load_file(f)?);
    }
    let mut own_cas = Vec::new();
    for f in &a.own_cas {
        own_cas.extend(load_file(f)?);
    }
    trust.intermediates.extend(own_cas.iter().cloned());
    for f in &a.crls {
        trust.crls.extend(crate::cms::revocation::load_file(f)?);
    }
    trust.revocation = a.revocation;
    trust.grace = std::time::Duration::from_secs(crate::config::DEFAULT_GRACE_HOURS * 3600);
    let next_der =
        load_file(&a.next)?.into_iter().next().ok_or_else(|| Failure::new(Exit::Usage, "no --next certificate"))?;
    let next = cert::parse(&next_der)?;
    let mut roots = Vec::new();
    for f in &a.attestation_roots {
        roots.extend(load_file(f)?);
    }
    let registry = a
        .registry
        .as_deref()
        .map(|p| Registry::load(p, &roots))
        .transpose()
        .map_err(|e| Failure::new(Exit::Usage, e.to_string()))?;
    let step = Step {
        role: a.role,
        org: &mut org,
        trust,
        own_cas,
        registry: registry.as_ref(),
        next: &next,
        scanner: a.scanner.as_deref(),
    };
    let (out, log) = relay(step, &raw).map_err(|e| match e {
        OrgError::Cms(c) => Failure::from(c),
        OrgError::Mail(m) => Failure::from(m),
        r @ OrgError::Refused { .. } => Failure::new(Exit::VerificationFailed, r.to_string()),
        s @ OrgError::Scanner(_) => Failure::new(Exit::Io, s.to_string()),
    })?;
    for l in log {
        eprintln!("ssmax-card org: {l}");
    }
    write_output(io, &out)
}
