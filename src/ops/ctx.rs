//! What an operation needs from where it runs: its input, somewhere for its output and notes,
//! the token and a PIN prompt. The CLI runs operations against stdin/stdout and a token it
//! opens; the agent runs the same operations against a request, a response and the token it owns.

use super::setup::Setup;
use crate::error::{Exit, Failure};
use crate::token::objects::{CertObject, Shown};
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
    /// The certificates of the token the settings name, or of every present token a profile
    /// matches when they name none and there are several: what needs no key (the anchors a
    /// verification trusts) needs no choice of token. No PIN is asked.
    /// The one token found is kept as this command's token: it is looked for once.
    fn token_certificates(&mut self) -> Result<Vec<CertObject>, Failure> {
        let uri = self.setup().token_uri.clone();
        if !uri.names_token() && !self.holds_token()? {
            let mut all = Token::open_all(&uri, &self.setup().profiles)?;
            if all.len() > 1 {
                let mut certs = Vec::new();
                for t in &all {
                    certs.extend(t.certificates()?);
                }
                return Ok(certs);
            }
            if let Some(t) = all.pop() {
                self.adopt_token(t)?;
            }
        }
        Ok(self.token()?.token.certificates()?)
    }
    /// With several tokens present and none named by the settings: make the one `fits` accepts
    /// (judged without a PIN, from what each shows) this command's token. `what` says what is
    /// looked for, in messages. A token already held that fits is kept (the agent's PIN cache);
    /// with one token present, or one named, there is nothing to choose.
    fn choose_token(&mut self, what: &str, fits: &dyn Fn(&Shown) -> Result<bool, Failure>) -> Result<(), Failure> {
        let uri = self.setup().token_uri.clone();
        if uri.names_token() || self.use_held(fits)? {
            return Ok(());
        }
        let all = Token::open_all(&uri, &self.setup().profiles)?;
        if all.len() <= 1 {
            return match all.into_iter().next() {
                Some(t) => self.adopt_token(t),
                None => Ok(()),
            };
        }
        let names: Vec<String> = all.iter().map(|t| format!("'{}'", t.label)).collect();
        let mut fit = Vec::new();
        for t in all {
            if fits(&t.shown()?)? {
                fit.push(t);
            }
        }
        if fit.len() > 1 {
            let labels: Vec<String> = fit.iter().map(|t| format!("'{}'", t.label)).collect();
            return Err(Failure::new(
                Exit::Usage,
                crate::tr!("token-several-hold", what = what, tokens = labels.join(", ")),
            ));
        }
        match fit.pop() {
            Some(t) => self.adopt_token(t),
            None => {
                Err(Failure::new(Exit::NoKey, crate::tr!("token-none-holds", what = what, tokens = names.join(", "))))
            }
        }
    }
    /// Use a token this command (the agent: any request) already holds for these settings if
    /// `fits` accepts it. Returns whether one was.
    fn use_held(&mut self, fits: &dyn Fn(&Shown) -> Result<bool, Failure>) -> Result<bool, Failure>;
    /// The token the settings select is open already (the agent: the turn is taken to look).
    fn holds_token(&mut self) -> Result<bool, Failure>;
    /// Use `token`, found by looking, as the token the settings select.
    fn adopt_token(&mut self, token: Token) -> Result<(), Failure>;
    /// The command is about to call into modules itself (status lists every slot): the agent
    /// re-initialises none meanwhile.
    fn using_modules(&mut self) {}
    /// The command is done with the token for now: the agent lets the next request have it while
    /// this one works without it (the CLI has nothing to do). Asking for the token again waits
    /// for a new turn.
    fn done_with_token(&mut self) {}
}

pub struct Parts<'c> {
    /// The user said to spend a token's last PIN try (`--allow-final-pin-try`).
    pub allow_final_pin_try: bool,
    pub s: &'c Setup,
    pub token: &'c mut Token,
    pub prompt: &'c dyn PinPrompt,
}
