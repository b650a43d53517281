//! ssmax-card: the user-side half of SSMAX. Parses arguments and dispatches; nothing else.

#![deny(clippy::undocumented_unsafe_blocks)]

use clap::Parser;
use ssmax_card::{cli, error};
use std::process::ExitCode;

fn main() -> ExitCode {
    ssmax_card::platform::harden();
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { error::Exit::Usage as u8 } else { 0 });
        }
    };
    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("ssmax-card: {}", f.message);
            ExitCode::from(f.exit as u8)
        }
    }
}
