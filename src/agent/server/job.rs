//! One request run as a job: its Ctx (the request's input, the response's output, the turn of
//! the token it uses, taken when the operation first asks for it) and the operation it calls.

use super::*;
use crate::agent::desk::wait_for_leaving;
use crate::token::objects::Shown;

/// How long a new request lets a module waiting to be re-initialised go first: the requests
/// under way finish (a signature takes milliseconds), the module starts afresh, and the new
/// request finds the token as it now is. One waiting on a person is not waited for longer.
const RESCAN_FIRST: Duration = Duration::from_secs(2);

/// The token a request uses, out of the agent's table while the request holds its turn.
pub(super) struct Held {
    key: String,
    /// None until opened (the agent had not used this token yet).
    token: Option<Token>,
    turn: Turn,
}

/// Run one request. The command parses its input here, in parallel with other clients, and takes
/// its token's turn when it first needs the token, keeping it until done with it. None when the watchdog
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
        let mut named = req.token.as_deref().map(Pkcs11Uri::parse).transpose()?;
        let mut key = req.key.as_deref().map(Pkcs11Uri::parse).transpose()?;
        for uri in named.iter_mut().chain(key.iter_mut()) {
            only_known_module(uri, &agent.setup)?;
        }
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
        if req.revocation.is_some() {
            s.config.revocation = req.revocation;
        }
        Ok(())
    })();
    let wants_output = match &call {
        Call::Verify(v) => v.out,
        _ => true,
    };
    let serial = agent.serials.fetch_add(1, Ordering::SeqCst);
    let prompt = EventPrompt {
        inner: PinentryPin::for_client(s.config.pinentry_program.clone(), req.client.clone()),
        events: agent.events.clone(),
        dog: agent.dog.clone(),
        serial,
        method: req.method.clone(),
        quiet: matches!(&call, Call::View(a) if a.no_prompt),
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
        serial,
        held: None,
        modules: None,
        looking: None,
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
        resp.error = Some(crate::tr!("agent-token-removed-during"));
    }
    log_request(audit, req, &resp, ctx.key.take());
    (!ctx.answered_elsewhere).then(|| (resp, std::mem::take(&mut ctx.output)))
}

pub(super) fn dispatch(ctx: &mut AgentCtx<'_>, call: Call, passed: Vec<(Passed, Vec<u8>)>) -> Result<(), Failure> {
    use crate::ops::{decrypt, forward, receive, send, sign, status, verify, view};
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
        Call::View(a) => {
            let raw = ctx.input()?;
            let id = if a.authserv_id.is_empty() { ctx.setup().config.imap.authserv_id.clone() } else { a.authserv_id };
            let v = view::view(ctx, &raw, &id)?;
            ctx.output(v.mail)
        }
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

impl<'w> AgentCtx<'w> {
    /// Give the token and its turn back, after noting what the request did to it (`failed`:
    /// how, if it did). Returns whether the token turned out to be removed.
    pub(super) fn release(&mut self, failed: Option<Exit>) -> bool {
        self.looking = None;
        let Some(held) = self.held.take() else { return false };
        self.key = held.token.as_ref().map(|t| t.description.clone());
        let agent = self.agent;
        // What it shows is read before the table is locked (a look past the object cache calls
        // into the token).
        let shown = held.token.as_ref().and_then(|t| t.shown().ok());
        let reader = {
            let mut desk = lock(&agent.desk);
            desk.put_back(&held.key, held.token, shown, failed);
            desk.reader_to_ask(&held.key, failed)
        };
        // Then this request's hold on the modules goes, so a rescan after a removal can run if
        // no other request uses one.
        self.modules = None;
        if let Some(r) = reader {
            wait_for_leaving(&agent.readers, &r);
        }
        let unused = agent.modules.try_write().ok();
        let gone = {
            let mut desk = lock(&agent.desk);
            let gone = desk.after_request(&held.key, failed, unused.is_some());
            agent.rescan_wanted.store(desk.rescan_wanted(), Ordering::SeqCst);
            gone
        };
        drop(unused);
        agent.dog.leave(self.serial);
        self.answered_elsewhere |= lock(&agent.current).remove(&self.serial).is_none();
        drop(held.turn);
        gone
    }

    /// The command looks at every token present: one request at a time does.
    fn start_looking(&mut self) {
        self.hold_modules();
        if self.looking.is_none() {
            self.looking = Some(lock(&self.agent.looking));
        }
    }

    /// From here until the request is done with its token, no module is re-initialised.
    fn hold_modules(&mut self) {
        if self.modules.is_none() {
            // A module waiting to be re-initialised goes first, for at most RESCAN_FIRST.
            let until = (Instant::now() + RESCAN_FIRST).min(self.job.deadline);
            while self.agent.rescan_wanted.load(Ordering::SeqCst) && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            self.modules = Some(self.agent.modules.read().unwrap_or_else(|e| e.into_inner()));
        }
    }

    /// Wait for the turn of the token under `key` and take the token out of the table.
    fn take_turn(&mut self, key: &str) -> Result<(), Failure> {
        // Moving from one token's turn to another's keeps the hold on the modules: a token
        // opened meanwhile (found by looking) keeps a live session, no module re-initialised.
        let modules = self.modules.take();
        self.release(None);
        self.modules = modules;
        self.hold_modules();
        let gate = lock(&self.agent.desk).gate(key);
        match gate.and_then(|g| g.take(self.job.deadline)) {
            Ok(turn) => {
                let token = lock(&self.agent.desk).lend(key);
                self.start_holding(key, token, turn);
                Ok(())
            }
            Err(r) => {
                self.refused = Some(r);
                Err(match r {
                    Refused::Busy => Failure::new(Exit::Busy, crate::tr!("agent-busy-queue")),
                    Refused::TimedOut => {
                        Failure::new(Exit::Io, crate::tr!("agent-timed-out", ms = self.job.timeout.as_millis() as u64))
                    }
                    Refused::Closed => Failure::new(Exit::Busy, crate::tr!("agent-busy-restarting")),
                })
            }
        }
    }

    fn start_holding(&mut self, key: &str, token: Option<Token>, turn: Turn) {
        self.hold_modules();
        self.agent.dog.enter(self.serial, &self.job.req.method);
        lock(&self.agent.current).insert(
            self.serial,
            Running {
                id: self.job.req.id,
                stream: self.job.stream.clone(),
                deadline: self.job.deadline,
                timeout: self.job.timeout,
            },
        );
        self.token_key = key.to_string();
        self.held = Some(Held { key: key.to_string(), token, turn });
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
                .map_err(|e| Failure::new(Exit::Io, crate::tr!("agent-reply-file", error = e.to_string())))?;
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
    fn using_modules(&mut self) {
        self.hold_modules();
    }
    fn use_held(&mut self, fits: &dyn Fn(&Shown) -> Result<bool, Failure>) -> Result<bool, Failure> {
        self.hold_modules();
        if let Some(t) = self.held.as_ref().and_then(|h| h.token.as_ref()) {
            if fits(&t.shown()?)? {
                return Ok(true);
            }
            self.release(None);
        }
        // Judged by what each showed when last given back, so a token busy with another request
        // need not be waited for to know it is not the one; the one that fits is waited for.
        let known = lock(&self.agent.desk).known(&self.s.token_uri.to_string());
        for (key, shown) in known {
            if !fits(&shown)? {
                continue;
            }
            self.take_turn(&key)?;
            if self.held.as_ref().is_some_and(|h| h.token.is_some()) {
                return Ok(true);
            }
            // Forgotten meanwhile (removed): found afresh by looking.
            self.release(None);
            break;
        }
        // What follows looks at every token present.
        self.start_looking();
        Ok(false)
    }
    fn holds_token(&mut self) -> Result<bool, Failure> {
        if self.held.is_none() {
            let known = lock(&self.agent.desk).lanes.contains_key(&self.token_key);
            if !known {
                self.start_looking();
                return Ok(false);
            }
            self.take_turn(&self.token_key.clone())?;
        }
        Ok(self.held.as_ref().is_some_and(|h| h.token.is_some()))
    }
    fn adopt_token(&mut self, token: Token) -> Result<(), Failure> {
        // Each token found by looking is kept under its own key, so several stay open at once,
        // each with its login (PIN cache), and the next request finds the one it needs.
        let key = chosen_key(&self.s.token_uri.to_string(), &token);
        self.looking = None;
        if self.held.as_ref().map(|h| &h.key) != Some(&key) {
            self.take_turn(&key)?;
        }
        // Found again by looking: the one held already keeps its session and login.
        if let Some(h) = self.held.as_mut() {
            h.token.get_or_insert(token);
        }
        Ok(())
    }
    fn token(&mut self) -> Result<Parts<'_>, Failure> {
        if self.held.is_none() {
            self.take_turn(&self.token_key.clone())?;
        }
        let Some(held) = self.held.as_mut() else {
            return Err(Failure::new(Exit::Io, "internal: the token turn vanished"));
        };
        if held.token.is_none() {
            // Known to be away (or back, but its module not yet re-read, so what the module
            // shows is the token as it was): not opened on that stale view.
            let away = lock(&self.agent.desk).away(&held.key);
            if let Some(label) = away {
                return Err(TokenError::NotPresent(crate::tr!("token-removed-during", token = label)).into());
            }
            held.token = Some(Token::open(&self.s.token_uri, &self.s.profiles)?);
        }
        // Possession first: a token bound to a reader is there only while its card is.
        let gate = held
            .token
            .as_ref()
            .and_then(|t| reader_of(t, &self.s.config.agent).map(|(r, strict)| (t.label.clone(), r, strict)));
        if let Some((label, reader, strict)) = gate {
            let refuse = match self.agent.readers.card_in(&reader) {
                Some(true) => None,
                Some(false) => Some(crate::tr!("agent-card-not-in-reader", token = label, reader = reader)),
                None if strict => Some(crate::tr!("agent-reader-not-shown", token = label, reader = reader)),
                None => None,
            };
            if let Some(msg) = refuse {
                held.token = None;
                return Err(TokenError::NotPresent(msg).into());
            }
        }
        let token = held
            .token
            .as_mut()
            .ok_or_else(|| Failure::new(Exit::Io, "internal: token vanished from the agent's table"))?;
        Ok(Parts { allow_final_pin_try: self.allow_final_pin_try, s: &self.s, token, prompt: &self.prompt })
    }
}

impl PinPrompt for EventPrompt {
    fn ask(&self, request: &PinRequest<'_>) -> Result<SecretString, TokenError> {
        if self.quiet {
            return Err(TokenError::NoPinSource(crate::tr!("pin-not-asked")));
        }
        if let Ok(mut subs) = self.events.lock() {
            let ev = Response {
                v: VERSION,
                ok: true,
                event: Some(Event::PinNeeded),
                notes: vec![crate::tr!("event-pin-needed", token = request.token, operation = request.operation)],
                ..Default::default()
            };
            subs.retain(|s| (s.send)(ev.clone()));
        }
        // A person typing a PIN is not a hung card: the watchdog looks away meanwhile.
        self.dog.leave(self.serial);
        let pin = self.inner.ask(request);
        self.dog.enter(self.serial, &self.method);
        pin
    }
}

/// The desk key of a token found by looking under the settings' URI `base`.
fn chosen_key(base: &str, token: &Token) -> String {
    format!("{base}\u{0}{}\u{0}{}", token.label, token.serial)
}

/// A module is code run inside the agent, which holds cached PINs: the agent loads only the
/// modules its own configuration and profiles name. A request that names one by path is taken
/// only when the path is one of those, and then the agent's own path is what is loaded (a
/// client's path could be a link it changes after the check).
fn only_known_module(uri: &mut Pkcs11Uri, setup: &Setup) -> Result<(), Failure> {
    let Some(asked) = uri.module_path.take() else { return Ok(()) };
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let known = crate::token::candidate_modules(&setup.profiles).into_iter().chain(setup.token_uri.module_path.clone());
    let asked_canon = canon(&asked);
    for k in known {
        if k == asked || (asked_canon.is_some() && canon(&k) == asked_canon) {
            uri.module_path = Some(k);
            return Ok(());
        }
    }
    Err(Failure::new(Exit::Usage, crate::tr!("agent-module-refused", module = asked.display().to_string())))
}
