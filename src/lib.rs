//! ssmax-card as a library: what the binary, the benchmarks and the fuzz targets share.
//! The modules are described in docs/architecture.md.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod agent;
pub mod cli;
pub mod cms;
pub mod config;
pub mod error;
pub mod files;
pub mod mail;
pub mod ops;
pub mod process;
pub mod profile;
pub mod prompt;
pub mod smtp;
pub mod ssmax;
pub mod token;
