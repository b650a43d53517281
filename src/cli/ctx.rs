//! The command line as a place to run an operation: standard input or `--in`, standard output
//! or `--out`, notes on standard error, a token this process opens and a PIN prompt here.

use super::common::{prompt, read_input, setup, write_output};
use super::{Global, InOut};
use crate::error::Failure;
use crate::ops::ctx::{Ctx, Parts};
use crate::ops::setup::Setup;
use crate::token::objects::Shown;
use crate::token::pin::PinPrompt;
use crate::token::Token;

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
    fn use_held(&mut self, fits: &dyn Fn(&Shown) -> Result<bool, Failure>) -> Result<bool, Failure> {
        match &self.token {
            Some(t) => fits(&t.shown()?),
            None => Ok(false),
        }
    }
    fn holds_token(&mut self) -> Result<bool, Failure> {
        Ok(self.token.is_some())
    }
    fn adopt_token(&mut self, token: Token) -> Result<(), Failure> {
        self.token = Some(token);
        Ok(())
    }
    fn token(&mut self) -> Result<Parts<'_>, Failure> {
        if self.prompt.is_none() {
            self.prompt = Some(prompt(self.g, &self.s.config, Some(self.io))?);
        }
        if self.token.is_none() {
            self.token = Some(Token::open(&self.s.token_uri, &self.s.profiles)?);
        }
        match (self.token.as_mut(), self.prompt.as_deref()) {
            (Some(token), Some(prompt)) => {
                Ok(Parts { allow_final_pin_try: self.g.allow_final_pin_try, s: &self.s, token, prompt })
            }
            _ => Err(Failure::new(crate::error::Exit::Io, "internal: token or prompt missing")),
        }
    }
}
