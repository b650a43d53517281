//! Integration tests: the real `ssmax-card` binary against real SoftHSM2 tokens, judged by real
//! `openssl`. Each test provisions its own token in a temporary directory.

#![deny(clippy::undocumented_unsafe_blocks)]

mod support;

mod agent;
mod config;
mod decrypt;
mod faults;
mod forgery;
mod japanese;
mod lifecycle;
mod limits;
mod mailclients;
mod malformed;
mod ocsp;
mod peers;
mod pin;
mod revocation;
mod samples;
mod sign;
mod smtp;
mod ssmax;
mod status;
mod tokens;
mod verify;
