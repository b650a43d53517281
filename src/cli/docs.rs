//! The manual pages and shell completions, written from the clap definitions themselves so they
//! never drift from what the binary accepts. The package build runs this (packaging/deb.sh);
//! nothing here runs for users.

use super::Cli;
use crate::error::{Exit, Failure};
use clap::CommandFactory;
use clap_complete::Shell;
use std::path::Path;

/// `ssmax-card.1`, one `ssmax-card-<command>.1` per visible subcommand, and bash, zsh and fish
/// completions, under `out` as the package lays them out (man/man1, bash-completion, zsh, fish).
pub fn generate(out: &Path) -> Result<(), Failure> {
    let io = |what: &str, e: std::io::Error| {
        Failure::new(Exit::Io, format!("writing the {what} under {}: {e}", out.display()))
    };
    let man = out.join("man/man1");
    std::fs::create_dir_all(&man).map_err(|e| io("manual pages", e))?;
    let mut cmd = Cli::command();
    cmd.build();
    // A page per `help` subcommand would only repeat the others.
    clap_mangen::generate_to(without_help(Cli::command()), &man).map_err(|e| io("manual pages", e))?;
    for (shell, dir) in [(Shell::Bash, "bash-completion"), (Shell::Zsh, "zsh"), (Shell::Fish, "fish")] {
        let dir = out.join(dir);
        std::fs::create_dir_all(&dir).map_err(|e| io("completions", e))?;
        clap_complete::generate_to(shell, &mut cmd, "ssmax-card", &dir).map_err(|e| io("completions", e))?;
    }
    Ok(())
}

fn without_help(c: clap::Command) -> clap::Command {
    c.disable_help_subcommand(true).mut_subcommands(without_help)
}
