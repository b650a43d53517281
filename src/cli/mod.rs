//! The command-line face: clap definitions, and each command handed to an operation (`crate::ops`)
//! run here or in an agent.

mod bench;
pub mod common;
pub mod ctx;
pub mod docs;
mod extract;
mod imap;
mod local;
mod org;
mod profiles;
mod remote;
mod smtp;

use crate::error::Failure;
use crate::ops::{decrypt, forward, lifecycle, sign, status, verify};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "ssmax-card", version, about = "Sign and decrypt mail with the key on your card (SSMAX user side)")]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AgentMode {
    /// Use the agent when one is running, else work directly on the token.
    #[default]
    Auto,
    /// Only through the agent (exit 7 when it is not running).
    Always,
    /// Never use the agent.
    Never,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Whether to go through a running agent.
    #[arg(long, global = true, value_enum, default_value_t = AgentMode::Auto)]
    pub agent: AgentMode,
    /// The agent's socket (default: $SSMAX_CARD_SOCKET, else $XDG_RUNTIME_DIR/ssmax-card/agent.sock).
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Config file (TOML); default: the platform config dir's ssmax-card/config.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The token, as an RFC 7512 URI, e.g. 'pkcs11:token=My%20Card?module-path=/usr/lib/softhsm/libsofthsm2.so'.
    #[arg(long, global = true, value_name = "URI")]
    pub token: Option<String>,
    /// The key, as an RFC 7512 URI, e.g. 'pkcs11:id=%01'. Default: the key whose certificate names the From address.
    #[arg(long, global = true, value_name = "URI")]
    pub key: Option<String>,
    /// Read the PIN from this already-open file descriptor (automation and tests).
    #[arg(long, global = true, value_name = "N")]
    pub pin_fd: Option<i32>,
    /// Spend the token's last PIN try (otherwise refused).
    #[arg(long, global = true)]
    pub allow_final_pin_try: bool,
    /// Print nothing on success but the output (mail clients treat any stderr as a problem).
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// Revocation of every certificate relied on — require: no current CRL or OCSP answer is a
    /// failure; prefer: a warning; off: not looked at. Default: `revocation` in the config, else
    /// prefer (the organisation hop: require).
    #[arg(long, global = true, value_enum)]
    pub revocation: Option<crate::cms::revocation::Policy>,
}

#[derive(Args, Debug, Clone)]
pub struct InOut {
    /// Read from FILE instead of standard input.
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write to FILE (atomically: a temporary file, then rename) instead of standard output
    /// ("-": standard output; verify writes the content only when --out is given).
    #[arg(long = "out", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Modules, slots, tokens, PIN state, keys and certificates.
    Status,
    /// The PKCS#11 profiles known to this build (and the profiles directory).
    Profiles,
    /// Sign a mail (RFC 5322 in, S/MIME multipart/signed out) with the key on the token.
    Sign {
        #[command(flatten)]
        io: InOut,
        /// RSA keys: sign with RSA-PSS instead of PKCS#1 v1.5.
        #[arg(long)]
        pss: bool,
        /// The input is the MIME entity a mail client will send as the first part of
        /// multipart/signed; write only the detached signature (DER). Needs --from.
        #[arg(long, requires = "from")]
        signature_only: bool,
        /// With --signature-only: the From address of the mail, which the certificate must carry.
        #[arg(long, value_name = "ADDRESS", requires = "signature_only")]
        from: Option<String>,
        /// Sign with a certificate that names you rather than your mailbox (My Number card:
        /// name, address, date of birth, sex), knowing every recipient sees it.
        #[arg(long, conflicts_with = "signature_only")]
        personal_certificate: bool,
    },
    /// Verify a signed mail (multipart/signed or opaque) or a CMS signature.
    Verify {
        #[command(flatten)]
        io: InOut,
        /// Trust anchor certificate(s), PEM or DER, added to the anchors on the token.
        #[arg(long, value_name = "FILE")]
        ca: Vec<PathBuf>,
        /// Extra certificates to find the signer or build the chain.
        #[arg(long, value_name = "FILE")]
        certfile: Vec<PathBuf>,
        /// For a bare detached CMS signature: the signed content.
        #[arg(long, value_name = "FILE")]
        content: Option<PathBuf>,
        /// Do not read anchors from a token.
        #[arg(long)]
        no_token: bool,
        /// Certificate revocation lists (PEM or DER), added to `crls` in the config.
        #[arg(long, value_name = "FILE")]
        crl: Vec<PathBuf>,
        /// For mail clients that expect openssl's wording: the first line on stderr is
        /// "Verification successful" (or "Verification failure"), the report follows on stderr.
        #[arg(long)]
        openssl_status: bool,
    },
    /// Decrypt an S/MIME mail (enveloped or auth-enveloped) with the key on the token.
    Decrypt {
        #[command(flatten)]
        io: InOut,
    },
    /// SSMAX send: encrypt each attachment to your organisation, label it, sign the mail on the card.
    Send {
        #[command(flatten)]
        io: InOut,
        /// A file to attach, protected (repeatable; pair each with --label).
        #[arg(long, value_name = "FILE")]
        attach: Vec<PathBuf>,
        /// The plain-text label of the matching --attach.
        #[arg(long, value_name = "TEXT")]
        label: Vec<String>,
        #[arg(long)]
        pss: bool,
    },
    /// SSMAX receive: verify your organisation's signature (certificate on the token), decrypt attachments on the card.
    Receive {
        #[command(flatten)]
        io: InOut,
        /// Write the decrypted attachments into DIR (mode 0600), all or none, instead of printing
        /// MIME. A DIR that is a symbolic link is refused unless named as DIR/.
        #[arg(long, value_name = "DIR")]
        extract: Option<PathBuf>,
        /// With --extract: overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// SSMAX forward: keep chosen attachments, re-key them to your organisation on the card, sign.
    Forward {
        #[command(flatten)]
        io: InOut,
        /// Recipient address (repeatable).
        #[arg(long, value_name = "ADDR", required = true)]
        to: Vec<String>,
        /// Your address (default: the one on your token's certificate).
        #[arg(long, value_name = "ADDR")]
        from: Option<String>,
        /// Attachment to keep, by file name or label (repeatable; none kept by default).
        #[arg(long, value_name = "NAME")]
        keep: Vec<String>,
        /// Text to put above the forwarded message.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        #[arg(long)]
        pss: bool,
    },
    /// Generate a key pair on the token (sensitive, never extractable).
    Keygen {
        #[arg(long = "type", value_enum, default_value_t = KeyType::Rsa2048)]
        key_type: KeyType,
        #[arg(long)]
        label: Option<String>,
        /// CKA_ID in hex (default: the first free one).
        #[arg(long)]
        id: Option<String>,
    },
    /// A PKCS#10 certificate request for your mail address, signed on the token (PEM out).
    Csr {
        #[command(flatten)]
        io: InOut,
        /// The mail address (rfc822Name; emailProtection is requested).
        #[arg(long)]
        email: String,
        /// Subject, e.g. "CN=Alice Example,O=Example Org" (default CN=<email>).
        #[arg(long)]
        subject: Option<String>,
        /// YubiKey: append the PIV attestation chain for slot 9C (proof the key was born on it).
        #[arg(long)]
        attest: bool,
    },
    /// Store an issued certificate next to its key; older keys for the address only decrypt from now on.
    ImportCert {
        #[command(flatten)]
        io: InOut,
        #[arg(long)]
        label: Option<String>,
    },
    /// Store an SSMAX root (trust anchor) or, with --org, your organisation's certificate on the token.
    ImportAnchor {
        #[command(flatten)]
        io: InOut,
        #[arg(long)]
        org: bool,
        #[arg(long)]
        label: Option<String>,
    },
    /// The certificates on the token, with expiry.
    Certs,
    /// Run the agent: own the token, serve mail clients and the CLI on a Unix socket.
    Agent {
        /// Append-only, hash-chained audit log (default: the platform data dir's audit.log).
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
    },
    /// Time the raw token operations in-process (benchmark harness; JSON out).
    #[command(hide = true)]
    BenchToken {
        #[arg(long, default_value_t = 200)]
        iterations: usize,
    },
    /// Is the token there? (the agent's presence check; no PIN, no login)
    #[command(hide = true)]
    Probe,
    /// Run one PKCS#11 module for the agent, on the socket that is standard input (the agent
    /// starts it; see token/worker).
    #[command(hide = true)]
    ModuleWorker {
        #[arg(value_name = "MODULE")]
        module: PathBuf,
    },
    /// Write the manual pages and shell completions under DIR (the package build runs this).
    #[command(hide = true)]
    GenerateDocs {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        what: AuditCommand,
    },
    /// The SMTP submission front door: mail clients submit here, mail leaves signed on the card.
    Smtp {
        #[command(subcommand)]
        what: SmtpCommand,
    },
    /// The IMAP front door: mail clients read SSMAX mail verified and decrypted on the card.
    Imap {
        #[command(subcommand)]
        what: ImapCommand,
    },
    /// Reference organisation hop (tests, demo): verify, inspect, re-key, re-sign.
    #[command(hide = true)]
    Org {
        #[command(flatten)]
        io: InOut,
        #[arg(long, value_enum)]
        role: OrgRole,
        /// The organisation's private key (PKCS#8 PEM).
        #[arg(long, value_name = "FILE")]
        org_key: PathBuf,
        /// The organisation's certificate.
        #[arg(long, value_name = "FILE")]
        org_cert: PathBuf,
        /// SSMAX root / trust anchors (repeatable).
        #[arg(long, value_name = "FILE", required = true)]
        anchor: Vec<PathBuf>,
        /// Extra certificates for chain building (never a reason to serve a user).
        #[arg(long, value_name = "FILE")]
        certfile: Vec<PathBuf>,
        /// The organisation's own user CAs (sending role, repeatable): it serves only users
        /// whose certificate one of these issued; they also build chains.
        #[arg(long, value_name = "FILE")]
        own_ca: Vec<PathBuf>,
        /// Certificate revocation lists the sender's chain is checked against.
        #[arg(long, value_name = "FILE")]
        crl: Vec<PathBuf>,
        /// Certificate the attachments are re-keyed to.
        #[arg(long, value_name = "FILE")]
        next: PathBuf,
        /// Inspection command, run with each decrypted attachment's path as $1 (exit 0 = clean).
        #[arg(long, value_name = "CMD")]
        scanner: Option<String>,
        /// What the organisation registered about its users' tokens (sending role; TOML,
        /// docs/ssmax-mail-profile.md): the identity method it states comes from here.
        #[arg(long, value_name = "FILE")]
        registry: Option<PathBuf>,
        /// Roots the registry's token attestations chain to (Yubico's PIV root; repeatable).
        #[arg(long, value_name = "FILE")]
        attestation_root: Vec<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum KeyType {
    Rsa2048,
    Rsa3072,
    P256,
}

#[derive(Subcommand, Debug)]
pub enum ImapCommand {
    /// What the door shows a mail client for one mail: an SSMAX mail verified against your
    /// organisation's certificate on the card and its attachments decrypted (a plain
    /// multipart/mixed with Authentication-Results); any other mail unchanged.
    View {
        #[command(flatten)]
        io: InOut,
        /// The authserv-id of Authentication-Results (default: [imap] authserv_id, else ssmax-card.local).
        #[arg(long, value_name = "ID")]
        authserv_id: Option<String>,
    },
    /// Listen on loopback; show the upstream's INBOX, each SSMAX mail as its view built in the
    /// agent ([imap] in the config; flags override). In progress: read-only, INBOX only.
    Serve {
        /// Loopback address:port mail clients connect to (default 127.0.0.1:1143).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// The mail store, host:port.
        #[arg(long, value_name = "HOST:PORT")]
        upstream: Option<String>,
        /// The account there (its password: `imap set-upstream-password`).
        #[arg(long, value_name = "USER")]
        upstream_user: Option<String>,
        #[arg(long, value_enum)]
        upstream_tls: Option<crate::config::RelayTls>,
        /// A CA certificate (PEM) to trust for the upstream, besides the system's.
        #[arg(long, value_name = "FILE")]
        upstream_ca: Option<PathBuf>,
    },
    /// Store the upstream account's password in the OS keyring (asked on the terminal).
    SetUpstreamPassword {
        #[arg(long, value_name = "HOST:PORT")]
        upstream: Option<String>,
        #[arg(long, value_name = "USER")]
        upstream_user: Option<String>,
        /// Read the password from this file descriptor (automation) instead of the terminal.
        #[arg(long, value_name = "N")]
        password_fd: Option<i32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum SmtpCommand {
    /// Listen on loopback; SSMAX send in the agent, then relay ([smtp] in the config; flags override).
    Serve {
        /// Loopback address:port mail clients connect to (default 127.0.0.1:10587).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
        /// The organisation's submission server, host:port.
        #[arg(long, value_name = "HOST:PORT")]
        relay: Option<String>,
        #[arg(long, value_enum)]
        relay_tls: Option<crate::smtp::RelayTls>,
        /// The relay account (its password: `smtp set-relay-password`).
        #[arg(long, value_name = "USER")]
        relay_user: Option<String>,
        /// A CA certificate (PEM) to trust for the relay, besides the system's.
        #[arg(long, value_name = "FILE")]
        relay_ca: Option<PathBuf>,
    },
    /// Store the relay account's password in the OS keyring (asked on the terminal).
    SetRelayPassword {
        #[arg(long, value_name = "HOST:PORT")]
        relay: Option<String>,
        #[arg(long, value_name = "USER")]
        relay_user: Option<String>,
        /// Read the password from this open file descriptor instead (automation, tests).
        #[arg(long, value_name = "N")]
        password_fd: Option<i32>,
    },
    /// Print the user name and secret mail clients log in with (made on first use, kept in the OS keyring).
    ClientSecret {
        /// Make a new secret (the old one stops working).
        #[arg(long)]
        renew: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check every entry's hash and link, and that nothing was cut off the end.
    Verify {
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum OrgRole {
    Sending,
    Receiving,
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    let status_line = matches!(cli.command, Command::Verify { openssl_status: true, .. });
    let result = run_here_or_in_agent(cli);
    if status_line && result.is_err() {
        // The success line is printed with the report, before anything else (see ctx.rs).
        eprintln!("Verification failure");
    }
    result
}

fn run_here_or_in_agent(cli: Cli) -> Result<(), Failure> {
    if let Some(result) = remote::try_agent(&cli) {
        return result;
    }
    let g = &cli.global;
    let no_io = InOut { input: None, output: None };
    match cli.command {
        Command::Status => status::run(&mut ctx::CliCtx::new(g, &no_io)?),
        Command::Profiles => profiles::run(g),
        Command::Sign { io, pss, from: Some(from), .. } => {
            sign::run_signature_only(&mut ctx::CliCtx::new(g, &io)?, pss, &from)
        }
        Command::Sign { io, pss, personal_certificate, .. } => {
            let binding =
                if personal_certificate { sign::Binding::PersonalConfirmed } else { sign::Binding::Certificate };
            sign::run(&mut ctx::CliCtx::new(g, &io)?, pss, binding)
        }
        Command::Verify { io, ca, certfile, content, no_token, crl, openssl_status } => {
            let mut c = ctx::CliCtx::new(g, &io)?;
            if openssl_status {
                c = c.with_openssl_status();
            }
            let mut args = verify::VerifyArgs::from_files(&ca, &certfile, content.as_deref(), no_token)?;
            for f in &crl {
                args.crls.extend(crate::cms::revocation::load_file(f)?);
            }
            args.revocation = g.revocation;
            verify::run(&mut c, &args)
        }
        Command::Decrypt { io } => decrypt::run(&mut ctx::CliCtx::new(g, &io)?),
        Command::Send { io, attach, label, pss } => local::run_send(g, &io, &attach, &label, pss),
        Command::Receive { io, extract, force } => local::run_receive(g, &io, extract.as_deref(), force),
        Command::Forward { io, to, from, keep, note, pss } => {
            forward::run(&mut ctx::CliCtx::new(g, &io)?, &forward::ForwardArgs { to, from, keep, note, pss })
        }
        Command::Keygen { key_type, label, id } => {
            let spec = match key_type {
                KeyType::Rsa2048 => crate::token::keys::KeySpec::Rsa2048,
                KeyType::Rsa3072 => crate::token::keys::KeySpec::Rsa3072,
                KeyType::P256 => crate::token::keys::KeySpec::P256,
            };
            lifecycle::keygen(&mut ctx::CliCtx::new(g, &no_io)?, spec, label.as_deref(), id.as_deref())
        }
        Command::Csr { io, email, subject, attest } => {
            lifecycle::csr(&mut ctx::CliCtx::new(g, &io)?, &email, subject.as_deref(), attest)
        }
        Command::ImportCert { io, label } => lifecycle::import_cert(&mut ctx::CliCtx::new(g, &io)?, label.as_deref()),
        Command::ImportAnchor { io, org, label } => {
            lifecycle::import_anchor(&mut ctx::CliCtx::new(g, &io)?, org, label.as_deref())
        }
        Command::Certs => lifecycle::certs(&mut ctx::CliCtx::new(g, &no_io)?),
        Command::Agent { audit_log } => local::run_agent(g, audit_log),
        Command::BenchToken { iterations } => bench::run(&mut ctx::CliCtx::new(g, &no_io)?, iterations),
        Command::Probe => local::probe(g),
        Command::ModuleWorker { module } => crate::token::worker::serve::serve(&module),
        Command::GenerateDocs { out } => docs::generate(&out),
        Command::Smtp { what } => smtp::run(g, what),
        Command::Imap { what: ImapCommand::View { io, authserv_id } } => local::run_view(g, &io, authserv_id),
        Command::Imap { what } => imap::run(g, what),
        Command::Audit { what: AuditCommand::Verify { log } } => local::audit_verify(g, log),
        Command::Org {
            io,
            role,
            org_key,
            org_cert,
            anchor,
            certfile,
            own_ca,
            crl,
            next,
            scanner,
            registry,
            attestation_root,
        } => {
            let role = match role {
                OrgRole::Sending => crate::ssmax::org::Role::Sending,
                OrgRole::Receiving => crate::ssmax::org::Role::Receiving,
            };
            org::run(
                g,
                &io,
                org::OrgArgs {
                    role,
                    key: org_key,
                    cert: org_cert,
                    anchors: anchor,
                    certfile,
                    own_cas: own_ca,
                    crls: crl,
                    // An organisation has its CAs' lists: it passes on no mail whose sender's
                    // status it cannot tell.
                    revocation: g.revocation.unwrap_or(crate::cms::revocation::Policy::Require),
                    next,
                    scanner,
                    registry,
                    attestation_roots: attestation_root,
                },
            )
        }
    }
}
