//! `--agent auto|always|never`: the same commands, carried out by a running agent. The client
//! opens input and output itself (output atomically, as the CLI does) and hands the agent files
//! where it can, not bytes; the agent owns the token.

use super::common::{
    open_input, output_temp, persist_output, read_file, read_input, read_opened_input, write_output, writes_in_place,
};
use super::{AgentMode, Cli, Command, InOut};
use crate::agent::client::{call_retrying, client_env, connect, socket_path};
use crate::agent::protocol::{Call, ForwardArgs, Passed, Request, SendArgs, SignArgs, VerifyArgs, MAX_PASSED, VERSION};
use crate::error::{Exit, Failure};
use crate::ssmax::mail::{add_to_draft, file_attachment};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

/// None when the command runs locally; Some(result) when the agent carried it out (or had to).
pub fn try_agent(cli: &Cli) -> Option<Result<(), Failure>> {
    let g = &cli.global;
    if g.agent == AgentMode::Never {
        return None;
    }
    let eligible = matches!(
        cli.command,
        Command::Status
            | Command::Sign { .. }
            | Command::Verify { .. }
            | Command::Decrypt { .. }
            | Command::Send { .. }
            | Command::Receive { .. }
            | Command::Forward { .. }
    );
    if !eligible {
        return None;
    }
    // The agent reads its own config and asks for PINs through pinentry: these stay local.
    if g.pin_fd.is_some() || g.config.is_some() {
        return match g.agent {
            AgentMode::Always => Some(Err(Failure::new(Exit::Usage, crate::tr!("cli-not-for-agent")))),
            _ => None,
        };
    }
    let path = socket_path(g.socket.as_deref());
    let stream = match connect(&path) {
        Ok(s) => s,
        Err(e) => {
            return match g.agent {
                AgentMode::Always => Some(Err(Failure::new(Exit::AgentUnreachable, e.to_string()))),
                // Someone else's listener is no agent: said, then the work is done here.
                _ if matches!(e, crate::agent::client::ClientError::NotOurs { .. }) => {
                    if !g.quiet {
                        eprintln!("ssmax-card: {}", crate::tr!("warning", text = e.to_string()));
                    }
                    None
                }
                _ => None,
            };
        }
    };
    Some(run(cli, stream, &path))
}

fn run(cli: &Cli, mut stream: std::os::unix::net::UnixStream, path: &Path) -> Result<(), Failure> {
    let g = &cli.global;
    let none = InOut { input: None, output: None };
    // Files the agent is to read: opened here, with this user's rights, and passed as descriptors.
    let mut passed: Vec<(Passed, File)> = Vec::new();
    let (call, io, body, extract): (Call, &InOut, Body, Option<(&Path, bool)>) = match &cli.command {
        Command::Status => (Call::Status, &none, Body::Inline(Vec::new()), None),
        Command::Sign { io, pss, from, personal_certificate, .. } => (
            Call::Sign(SignArgs {
                pss: *pss,
                signature_only_from: from.clone(),
                personal_certificate: *personal_certificate,
            }),
            io,
            Body::of(io)?,
            None,
        ),
        Command::Decrypt { io } => (Call::Decrypt, io, Body::of(io)?, None),
        Command::Verify { io, ca, certfile, content, no_token, crl, .. } => {
            let named = ca
                .iter()
                .map(|p| (Passed::Anchors, p))
                .chain(certfile.iter().map(|p| (Passed::Intermediates, p)))
                .chain(crl.iter().map(|p| (Passed::Crls, p)))
                .chain(content.iter().map(|p| (Passed::Content, p)));
            for (kind, p) in named {
                passed.push((kind, crate::files::open_regular(p)?));
            }
            if passed.len() > MAX_PASSED {
                return Err(Failure::new(Exit::Usage, crate::tr!("cli-too-many-files-for-agent", most = MAX_PASSED)));
            }
            let args = VerifyArgs { no_token: *no_token, out: io.output.is_some(), revocation: g.revocation };
            (Call::Verify(args), io, Body::of(io)?, None)
        }
        Command::Send { io, attach, label, pss } => {
            if attach.len() != label.len() {
                return Err(Failure::new(
                    Exit::Usage,
                    crate::tr!("cli-labels-per-attachment", files = attach.len(), labels = label.len()),
                ));
            }
            let mut extra = Vec::new();
            for (p, l) in attach.iter().zip(label) {
                extra.push(file_attachment(p, l, &read_file(p, crate::files::MAX_MAIL)?));
            }
            (Call::Send(SendArgs { pss: *pss }), io, Body::Inline(add_to_draft(&read_input(io)?, extra)?), None)
        }
        Command::Receive { io, extract, force } => {
            (Call::Receive, io, Body::of(io)?, extract.as_deref().map(|d| (d, *force)))
        }
        Command::Forward { io, to, from, keep, note, pss } => {
            let a =
                ForwardArgs { to: to.clone(), from: from.clone(), keep: keep.clone(), note: note.clone(), pss: *pss };
            (Call::Forward(a), io, Body::of(io)?, None)
        }
        _ => return Err(Failure::new(Exit::Usage, "this command does not run in the agent")),
    };
    // The product goes straight into the --out file's temp file when there is one.
    let out_file = match (&extract, io.output.as_deref()) {
        (None, Some(p)) if p.as_os_str() != "-" && call != Call::Status && !writes_in_place(p) => {
            Some((output_temp(p)?, p))
        }
        _ => None,
    };
    let req = Request {
        v: VERSION,
        id: u64::from(std::process::id()),
        method: call.method().to_string(),
        args: call.args(),
        token: g.token.clone(),
        key: g.key.clone(),
        allow_final_pin_try: g.allow_final_pin_try,
        revocation: g.revocation,
        // PIN entry happens inside this time: be generous.
        timeout_ms: 300_000,
        client: client_env(),
        body_in_fd: matches!(body, Body::File(_)),
        reply_in_fd: out_file.is_some(),
        passed: passed.iter().map(|(k, _)| *k).collect(),
    };
    let (inline, mut fds) = match &body {
        Body::Inline(b) => (b.as_slice(), Vec::new()),
        Body::File(f) => (&[][..], vec![f.as_fd()]),
    };
    fds.extend(passed.iter().map(|(_, f)| f.as_fd()));
    fds.extend(out_file.as_ref().map(|(t, _)| t.as_file().as_fd()));
    let (resp, out) = call_retrying(&mut stream, path, &req, inline, &fds)
        .map_err(|e| Failure::new(Exit::AgentUnreachable, e.to_string()))?;
    if !resp.ok {
        return Err(Failure::new(
            Exit::from_code(resp.exit),
            resp.error.unwrap_or_else(|| crate::tr!("agent-refused")),
        ));
    }
    let openssl_status = matches!(cli.command, Command::Verify { openssl_status: true, .. });
    if openssl_status {
        // As the local path does: the status line first, then the report, all on stderr.
        eprintln!("Verification successful");
        eprint!("{}", resp.report.as_deref().unwrap_or(""));
    } else if let Some(r) = &resp.report {
        print!("{r}");
    }
    match extract {
        Some((dir, force)) => {
            for x in super::extract::extract_all(&out, dir, force)? {
                eprintln!("ssmax-card: {}", x.note());
            }
        }
        None if matches!(call, Call::Verify(_)) && io.output.is_none() => {}
        None if call == Call::Status => {}
        None => match out_file {
            Some((tmp, p)) => {
                let len = resp.body_in_fd.ok_or_else(|| Failure::new(Exit::Io, crate::tr!("agent-no-length")))?;
                tmp.as_file().set_len(len).map_err(|e| {
                    Failure::new(Exit::Io, crate::tr!("cli-cannot-write", path = p, error = e.to_string()))
                })?;
                persist_output(tmp, p)?;
            }
            None => write_output(io, &out)?,
        },
    }
    if !g.quiet {
        for n in &resp.notes {
            eprintln!("ssmax-card: {n}");
        }
    }
    Ok(())
}

/// A request's input: a regular file the agent reads itself, or bytes (standard input, a pipe,
/// a draft assembled here).
enum Body {
    Inline(Vec<u8>),
    File(File),
}

impl Body {
    fn of(io: &InOut) -> Result<Body, Failure> {
        let Some(p) = &io.input else {
            return read_input(io).map(Body::Inline);
        };
        let f = open_input(p)?;
        if f.metadata().is_ok_and(|m| m.file_type().is_file()) {
            return Ok(Body::File(f));
        }
        read_opened_input(f, p).map(Body::Inline)
    }
}
