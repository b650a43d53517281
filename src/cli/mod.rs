//! Command-line definitions (clap) and the commands behind them.

mod common;
mod decrypt;
mod profiles;
mod sign;
mod status;
mod verify;

use crate::error::Failure;
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

#[derive(Args, Debug, Clone)]
pub struct Global {
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
}

#[derive(Args, Debug, Clone)]
pub struct InOut {
    /// Read from FILE instead of standard input.
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Write to FILE (atomically: a temporary file, then rename) instead of standard output.
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
    },
    /// Decrypt an S/MIME mail (enveloped or auth-enveloped) with the key on the token.
    Decrypt {
        #[command(flatten)]
        io: InOut,
    },
}

pub fn run(cli: Cli) -> Result<(), Failure> {
    let g = &cli.global;
    match cli.command {
        Command::Status => status::run(g),
        Command::Profiles => profiles::run(g),
        Command::Sign { io, pss } => sign::run(g, &io, pss),
        Command::Verify { io, ca, certfile, content, no_token } => verify::run(g, &io, &ca, &certfile, content.as_deref(), no_token),
        Command::Decrypt { io } => decrypt::run(g, &io),
    }
}
