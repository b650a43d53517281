//! One request run as a job: its Ctx (the request's input, the response's output, the token
//! turn taken when the operation first asks for the token) and the operation it calls.

use super::*;

/// Run one request. The command parses its input here, in parallel with other clients, and takes
/// the token turn when it first needs the token, keeping it to the end. None when the watchdog
/// has answered the request meanwhile (a hung token, or the client's deadline).
pub(super) fn run_job(
    agent: &Agent,
    job: Job<'_>,
    call: Call,
    body: Vec<u8>,
    passed: Vec<(Passed, Vec<u8>)>,
) -> Option<(Response, Vec<u8>)> {
    let req = job.req;
    // The audit log gets a digest of the body, taken before the body moves on to the command (a
    // large mail is held once, not twice).
    let audit = agent.audit.as_ref().map(|log| Audit {
        log,
        pid: job.peer.pid,
        body_digest: crate::agent::audit::body_digest(&body),
        exe: std::fs::read_link(format!("/proc/{}/exe", job.peer.pid)).ok().map(|p| p.display().to_string()),
    });
    let mut s = agent.setup.clone();
    let parsed = (|| -> Result<(), Failure> {
        // As Setup::load does it: a key that names its token selects it, and must agree with
        // the token the client named.
        let named = req.token.as_deref().map(Pkcs11Uri::parse).transpose()?;
        let key = req.key.as_deref().map(Pkcs11Uri::parse).transpose()?;
        let named = match (named, &key) {
            (Some(t), Some(k)) => Some(t.with_token_of(k)?),
            (None, Some(k)) => Some(Pkcs11Uri::default().with_token_of(k)?),
            (named, None) => named,
        };
        if let Some(t) = named {
            s.token_uri = t.or(&agent.setup.token_uri);
        }
        if key.is_some() {
            s.key_uri = key;
        }
        Ok(())
    })();
    let wants_output = match &call {
        Call::Verify(v) => v.out,
        _ => true,
    };
    let prompt = EventPrompt {
        inner: PinentryPin::for_client(s.config.pinentry_program.clone(), req.client.clone()),
        events: agent.events.clone(),
        dog: agent.dog.clone(),
        method: req.method.clone(),
    };
    let token_key = s.token_uri.to_string();
    let mut ctx = AgentCtx {
        allow_final_pin_try: req.allow_final_pin_try,
        s,
        input: Some(body),
        output: Vec::new(),
        reply_file: job.reply_file.map(|f| (f, 0)),
        wants_output,
        notes: Vec::new(),
        report: None,
        agent,
        job: &job,
        turn: None,
        refused: None,
        answered_elsewhere: false,
        key: None,
        token_key,
        prompt,
    };
    let result = parsed.and_then(|()| dispatch(&mut ctx, call, passed));
    let body_in_fd = ctx.reply_file.map(|(_, written)| written);
    let mut resp = Response {
        v: VERSION,
        id: req.id,
        ok: result.is_ok(),
        exit: 0,
        notes: std::mem::take(&mut ctx.notes),
        report: ctx.report.take(),
        body_in_fd,
        ..Default::default()
    };
    let mut failed = result.as_ref().err().map(|f| f.exit);
    if let Err(f) = &result {
        resp.exit = f.exit as u8;
        resp.error = Some(f.message.clone());
    }
    if ctx.refused == Some(Refused::Closed) {
        resp = restarting_response(req.id);
        failed = Some(Exit::Busy);
    }
    // The turn is still held when the command failed on the token or never said it was done.
    if ctx.release(failed) {
        resp.exit = Exit::TokenNotPresent as u8;
        resp.error = Some("the token was removed while the request ran; insert it and try again".into());
    }
    log_request(audit, req, &resp, ctx.key.take());
    (!ctx.answered_elsewhere).then(|| (resp, std::mem::take(&mut ctx.output)))
}

pub(super) fn dispatch(ctx: &mut AgentCtx<'_>, call: Call, passed: Vec<(Passed, Vec<u8>)>) -> Result<(), Failure> {
    use crate::ops::{decrypt, forward, receive, send, sign, status, verify};
    if !passed.is_empty() && !matches!(call, Call::Verify(_)) {
        return Err(Failure::new(Exit::Usage, format!("bad request: {} takes no passed files", call.method())));
    }
    match call {
        Call::Status => status::run(ctx),
        Call::Sign(a) => match &a.signature_only_from {
            Some(from) => sign::run_signature_only(ctx, a.pss, from),
            None if a.personal_certificate => sign::run(ctx, a.pss, sign::Binding::PersonalConfirmed),
            None => sign::run(ctx, a.pss, sign::Binding::Certificate),
        },
        Call::Verify(a) => verify::run(ctx, &verify_args(&a, passed)?),
        Call::Decrypt => decrypt::run(ctx),
        Call::Send(a) => send::run(ctx, Vec::new(), a.pss),
        Call::Receive => {
            let raw = ctx.input()?;
            receive::receive(ctx, &raw)
        }
        Call::Forward(a) => forward::run(ctx, &a),
        Call::Ping | Call::Subscribe => Err(Failure::new(Exit::Usage, "internal: answered by the connection")),
    }
}

/// verify's options from its wire arguments and the files its client passed.
pub(super) fn verify_args(
    a: &VerifyArgs,
    passed: Vec<(Passed, Vec<u8>)>,
) -> Result<crate::ops::verify::VerifyArgs, Failure> {
    let mut v = crate::ops::verify::VerifyArgs { no_token: a.no_token, revocation: a.revocation, ..Default::default() };
    for (kind, data) in passed {
        match kind {
            Passed::Anchors => v.anchors.extend(crate::cms::cert::load_bytes(&data, "a passed --ca file")?),
            Passed::Intermediates => {
                v.intermediates.extend(crate::cms::cert::load_bytes(&data, "a passed --certfile file")?)
            }
            Passed::Crls => v.crls.extend(crate::cms::revocation::load_bytes(&data, "a passed --crl file")?),
            Passed::Content if v.content.is_none() => v.content = Some(data),
            Passed::Content => return Err(Failure::new(Exit::Usage, "bad request: more than one content file")),
        }
    }
    Ok(v)
}

impl AgentCtx<'_> {
    /// Give the turn back, after noting what the request did to the tokens (`failed`: how, if
    /// it did). Returns whether the token turned out to be removed.
    pub(super) fn release(&mut self, failed: Option<Exit>) -> bool {
        let Some(mut desk) = self.turn.take() else { return false };
        self.key = desk.tokens.get(&self.token_key).map(|t| t.description.clone());
        // A token that went away is forgotten (and logged out): the next request finds it afresh.
        if failed == Some(Exit::TokenNotPresent) {
            desk.tokens.remove(&self.token_key);
        }
        // A failure on a watched token may be its removal: look now, and say so.
        let gone = desk.after_request(&self.token_key, failed);
        self.agent.dog.leave();
        self.answered_elsewhere = lock(&self.agent.current).take().is_none();
        drop(desk);
        gone
    }

    pub(super) fn take_turn(&mut self) -> Result<(), Failure> {
        match self.agent.desk.take(self.job.deadline) {
            Ok(turn) => {
                self.agent.dog.enter(&self.job.req.method);
                *lock(&self.agent.current) = Some(Running {
                    id: self.job.req.id,
                    stream: self.job.stream.clone(),
                    deadline: self.job.deadline,
                    timeout: self.job.timeout,
                });
                self.turn = Some(turn);
                Ok(())
            }
            Err(r) => {
                self.refused = Some(r);
                Err(match r {
                    Refused::Busy => {
                        Failure::new(Exit::Busy, "busy: too many requests are waiting for the token; try again shortly")
                    }
                    Refused::TimedOut => Failure::new(
                        Exit::Io,
                        format!("timed out after {} ms waiting for the token", self.job.timeout.as_millis()),
                    ),
                    Refused::Closed => Failure::new(
                        Exit::Busy,
                        "busy: the agent is restarting after a token call hung; try again in a moment",
                    ),
                })
            }
        }
    }
}

impl Ctx for AgentCtx<'_> {
    fn setup(&self) -> &Setup {
        &self.s
    }
    fn input(&mut self) -> Result<Vec<u8>, Failure> {
        Ok(self.input.take().unwrap_or_default())
    }
    fn output(&mut self, data: Vec<u8>) -> Result<(), Failure> {
        match self.reply_file {
            Some(_) => self.output_pieces(&[&data]),
            None => {
                self.output = data;
                Ok(())
            }
        }
    }
    fn output_pieces(&mut self, pieces: &[&[u8]]) -> Result<(), Failure> {
        let Some((file, written)) = &mut self.reply_file else {
            return self.output(pieces.concat());
        };
        for p in pieces {
            file.write_all_at(p, *written)
                .map_err(|e| Failure::new(Exit::Io, format!("writing the product to the client's file: {e}")))?;
            *written += p.len() as u64;
        }
        Ok(())
    }
    fn wants_output(&self) -> bool {
        self.wants_output
    }
    fn report(&mut self, text: String) {
        self.report = Some(text);
    }
    fn note(&mut self, line: String) {
        self.notes.push(line);
    }
    fn done_with_token(&mut self) {
        self.release(None);
    }
    fn use_held(&mut self, fits: &dyn Fn(&Token) -> Result<bool, Failure>) -> Result<bool, Failure> {
        if self.turn.is_none() {
            self.take_turn()?;
        }
        let Some(desk) = self.turn.as_deref() else { return Ok(false) };
        let base = self.s.token_uri.to_string();
        for (key, t) in &desk.tokens {
            if key_selects(key, &base) && fits(t)? {
                self.token_key = key.clone();
                return Ok(true);
            }
        }
        Ok(false)
    }
    fn holds_token(&mut self) -> Result<bool, Failure> {
        if self.turn.is_none() {
            self.take_turn()?;
        }
        Ok(self.turn.as_deref().is_some_and(|desk| desk.tokens.contains_key(&self.token_key)))
    }
    fn adopt_token(&mut self, token: Token) -> Result<(), Failure> {
        if self.turn.is_none() {
            self.take_turn()?;
        }
        let Some(desk) = self.turn.as_deref_mut() else {
            return Err(Failure::new(Exit::Io, "internal: the token turn vanished"));
        };
        // Each token found by looking is kept under its own key, so several stay open at once,
        // each with its login (PIN cache), and the next request finds the one it needs.
        self.token_key = chosen_key(&self.s.token_uri.to_string(), &token);
        // Found again by looking: the one held already keeps its session and login.
        desk.tokens.entry(self.token_key.clone()).or_insert(token);
        Ok(())
    }
    fn token(&mut self) -> Result<Parts<'_>, Failure> {
        if self.turn.is_none() {
            self.take_turn()?;
        }
        let Some(desk) = self.turn.as_deref_mut() else {
            return Err(Failure::new(Exit::Io, "internal: the token turn vanished"));
        };
        if !desk.tokens.contains_key(&self.token_key) {
            let t = Token::open(&self.s.token_uri, &self.s.profiles)?;
            desk.tokens.insert(self.token_key.clone(), t);
        }
        // Possession first: a token bound to a reader is there only while its card is.
        let gate = desk
            .tokens
            .get(&self.token_key)
            .and_then(|t| reader_of(t, &self.s.config.agent).map(|(r, strict)| (t.label.clone(), r, strict)));
        if let Some((label, reader, strict)) = gate {
            let refuse = match self.agent.readers.card_in(&reader) {
                Some(true) => None,
                Some(false) => Some(format!("token '{label}' is not present: insert the card in reader '{reader}'")),
                None if strict => Some(format!("token '{label}' follows reader '{reader}', which PC/SC does not show (is pcscd running, is the reader connected?)")),
                None => None,
            };
            if let Some(msg) = refuse {
                desk.tokens.remove(&self.token_key);
                return Err(TokenError::NotPresent(msg).into());
            }
        }
        let token = desk
            .tokens
            .get_mut(&self.token_key)
            .ok_or_else(|| Failure::new(Exit::Io, "internal: token vanished from the agent's table"))?;
        Ok(Parts { allow_final_pin_try: self.allow_final_pin_try, s: &self.s, token, prompt: &self.prompt })
    }
}

impl PinPrompt for EventPrompt {
    fn ask(&self, request: &PinRequest<'_>) -> Result<SecretString, TokenError> {
        if let Ok(mut subs) = self.events.lock() {
            let ev = Response {
                v: VERSION,
                ok: true,
                event: Some("pin-needed".into()),
                notes: vec![format!("token '{}': {}", request.token, request.operation)],
                ..Default::default()
            };
            subs.retain(|s| s.send(ev.clone()).is_ok());
        }
        // A person typing a PIN is not a hung card: the watchdog looks away meanwhile.
        self.dog.leave();
        let pin = self.inner.ask(request);
        self.dog.enter(&self.method);
        pin
    }
}

/// The desk key of a token found by looking under the settings' URI `base`.
fn chosen_key(base: &str, token: &Token) -> String {
    format!("{base}\u{0}{}\u{0}{}", token.label, token.serial)
}

/// Whether a desk key belongs to the settings' URI: the URI itself, or a token chosen under it.
fn key_selects(key: &str, base: &str) -> bool {
    key == base || key.strip_prefix(base).is_some_and(|rest| rest.starts_with('\u{0}'))
}
