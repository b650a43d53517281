//! Integration tests: the real `ssmax-card` binary against real SoftHSM2 tokens, judged by real
//! `openssl`. Each test provisions its own token in a temporary directory.

mod support;

mod agent;
mod config;
mod decrypt;
mod faults;
mod limits;
mod mailclients;
mod lifecycle;
mod malformed;
mod peers;
mod samples;
mod pin;
mod sign;
mod smtp;
mod ssmax;
mod status;
mod verify;
