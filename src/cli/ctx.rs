//! What a command needs from where it runs: its input, somewhere for its output and notes, the
//! token and a PIN prompt. The CLI runs commands against stdin/stdout and a token it opens; the
//! agent runs the same commands against a request, a response and the token it owns.

use super::common::{prompt, read_input, setup, write_output, Setup};
use super::{Global, InOut};
use crate::error::Failure;
use crate::token::pin::PinPrompt;
use crate::token::Token;

pub trait Ctx {
    fn setup(&self) -> &Setup;
    /// The mail or CMS the command works on.
    fn input(&mut self) -> Result<Vec<u8>, Failure>;
    /// The command's product (a signed mail, decrypted MIME, verified content).
    fn output(&mut self, data: Vec<u8>) -> Result<(), Failure>;
    /// The same, given in pieces, so a large product is not copied into one buffer first.
    fn output_pieces(&mut self, pieces: &[&[u8]]) -> Result<(), Failure> {
        self.output(pieces.concat())
    }
    /// Whether the caller asked for the product at all (verify writes content only on --out).
    fn wants_output(&self) -> bool;
    /// A human-readable report (verify, status) — stdout for the CLI.
    fn report(&mut self, text: String);
    /// One line about what happened (stderr for the CLI).
    fn note(&mut self, line: String);
    /// The token and the PIN prompt, with the settings: a command needs them all at once.
    fn token(&mut self) -> Result<Parts<'_>, Failure>;
    /// The command will not use the token again: the agent lets the next request have it while
    /// this one writes its product (the CLI has nothing to do).
    fn done_with_token(&mut self) {}
}

pub struct Parts<'c> {
    pub g: &'c Global,
    pub s: &'c Setup,
    pub token: &'c mut Token,
    pub prompt: &'c dyn PinPrompt,
}

pub struct CliCtx<'a> {
    g: &'a Global,
    io: &'a InOut,
    s: Setup,
    token: Option<Token>,
    prompt: Option<Box<dyn PinPrompt>>,
    /// `verify --openssl-status`: notes wait for the report, which goes to stderr after the
    /// status line mail clients look for first.
    held_notes: Option<Vec<String>>,
}

impl<'a> CliCtx<'a> {
    pub fn new(g: &'a Global, io: &'a InOut) -> Result<Self, Failure> {
        Ok(CliCtx { g, io, s: setup(g)?, token: None, prompt: None, held_notes: None })
    }

    pub fn with_openssl_status(mut self) -> Self {
        self.held_notes = Some(Vec::new());
        self
    }
}

impl Ctx for CliCtx<'_> {
    fn setup(&self) -> &Setup {
        &self.s
    }
    fn input(&mut self) -> Result<Vec<u8>, Failure> {
        read_input(self.io)
    }
    fn output(&mut self, data: Vec<u8>) -> Result<(), Failure> {
        write_output(self.io, &data)
    }
    fn output_pieces(&mut self, pieces: &[&[u8]]) -> Result<(), Failure> {
        super::common::write_output_pieces(self.io, pieces)
    }
    fn wants_output(&self) -> bool {
        self.io.output.is_some()
    }
    fn report(&mut self, text: String) {
        match self.held_notes.take() {
            Some(notes) => {
                eprintln!("Verification successful");
                eprint!("{text}");
                for n in notes {
                    eprintln!("ssmax-card: {n}");
                }
            }
            None => print!("{text}"),
        }
    }
    fn note(&mut self, line: String) {
        match &mut self.held_notes {
            Some(held) => held.push(line),
            None if self.g.quiet => {}
            None => eprintln!("ssmax-card: {line}"),
        }
    }
    fn token(&mut self) -> Result<Parts<'_>, Failure> {
        if self.prompt.is_none() {
            self.prompt = Some(prompt(self.g, &self.s.config, Some(self.io))?);
        }
        if self.token.is_none() {
            self.token = Some(Token::open(&self.s.token_uri, &self.s.profiles)?);
        }
        match (self.token.as_mut(), self.prompt.as_deref()) {
            (Some(token), Some(prompt)) => Ok(Parts { g: self.g, s: &self.s, token, prompt }),
            _ => Err(Failure::new(crate::error::Exit::Io, "internal: token or prompt missing")),
        }
    }
}
