//! The agent's side of a module's worker: the calls of `calls::Library` and `SessionCalls` sent
//! to the worker process and its answers read, each call on a channel of its own (a socketpair
//! handed to the worker over the control socket), so calls on different tokens of one module
//! run side by side as they did in-process. A worker that ends, does not answer a call within
//! the limit (one deadline per call, however it trickles) or answers garbage is lost with every
//! session in it; the calls that saw it fail with a `ModuleFault`, and the next `Module::load`
//! starts a new worker.

use super::wire::{self, Answer, Call, ReadFailure};
use super::ModuleFault;
use crate::token::calls::{CallResult, Library, Mech, SessionCalls, SlotInfo, TokenInfo};
use crate::token::raw::Op;
use crate::token::TokenError;
use cryptoki::context::Function;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::slot::Slot;
use secrecy::{ExposeSecret, SecretString};
use std::io::IoSlice;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Channels (calls at once) to one worker; more callers wait for one within their deadline.
const CHANNELS: usize = 32;
/// How long a worker whose channel closed has to be seen gone (and one stopped, to go).
const ENDS_WITHIN: Duration = Duration::from_secs(2);
/// Logging out and closing a session, which the desk does under its lock: a module that cannot
/// within this is stopped (the surest logout there is), so no other token waits on it.
const SHORT_CALL: Duration = Duration::from_secs(2);
/// How long a session's login, once seen (a login, the module's word, a private-key operation
/// that worked), stands without asking the module again: a card reset by another program is
/// noticed within this, as the objects read are (objects.rs caches them as long).
const LOGIN_SEEN_FOR: Duration = Duration::from_secs(5);

struct Link {
    path: PathBuf,
    /// How long one call may take before the worker is stopped (`[agent] token_timeout_ms`).
    limit: Duration,
    control: UnixStream,
    child: Mutex<Option<Child>>,
    pool: Mutex<Pool>,
    room: Condvar,
    lost: AtomicBool,
    fault: Mutex<Option<ModuleFault>>,
    /// Counts logouts and closed sessions: a session's login seen before the count moved may be
    /// gone (logging out one session logs out the token), so it is asked again.
    logouts: AtomicU64,
}

#[derive(Default)]
struct Pool {
    idle: Vec<UnixStream>,
    open: usize,
}

/// One module's worker process.
#[derive(Clone)]
pub struct Remote(Arc<Link>);

impl Remote {
    /// Start `ssmax-card module-worker MODULE` and wait (at most the call limit) for it to have
    /// loaded the module.
    pub fn start(path: &Path, limit: Duration) -> CallResult<Remote> {
        let failed = |fault: ModuleFault| TokenError::ModuleFailed { module: path.into(), fault };
        let start = |e: std::io::Error| failed(ModuleFault::Start(e.to_string()));
        let exe = std::env::current_exe().map_err(start)?;
        let (ours, theirs) = UnixStream::pair().map_err(start)?;
        let child = Command::new(exe)
            .arg("module-worker")
            .arg(path)
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            // Its own group: whatever the module forks is stopped with it.
            .process_group(0)
            .spawn()
            .map_err(start)?;
        let link = Arc::new(Link {
            path: path.into(),
            limit,
            control: ours,
            child: Mutex::new(Some(child)),
            pool: Mutex::new(Pool::default()),
            room: Condvar::new(),
            lost: AtomicBool::new(false),
            fault: Mutex::new(None),
            logouts: AtomicU64::new(0),
        });
        let hello = read_until(&link.control, Instant::now() + limit, wire::MAX_ANSWER);
        match hello {
            Ok(Answer::Done) => Ok(Remote(link)),
            Ok(Answer::Failed(f)) => {
                link.lose(Function::GetFunctionList, Loss::Stop("no module".into()));
                Err(f.into_error(path))
            }
            Ok(_) => Err(link.lose(Function::GetFunctionList, Loss::Stop("an answer to no call".into()))),
            Err(e) => Err(link.lose(Function::GetFunctionList, Loss::of(e, limit))),
        }
    }
}

/// Read one answer of at most `max` bytes by `until`, however slowly its bytes come.
fn read_until(sock: &UnixStream, until: Instant, max: usize) -> Result<Answer, ReadFailure> {
    wire::read_frame(&mut crate::platform::ReadUntil { sock, deadline: until }, max)
}

/// Send all of `bytes` by `until`.
fn send_until(sock: &UnixStream, bytes: &[u8], until: Instant) -> std::io::Result<()> {
    std::io::Write::write_all(&mut crate::platform::WriteUntil { sock, deadline: until }, bytes)
}

/// How a call found the worker gone or wrong.
enum Loss {
    /// Its end of the channel closed: it ended (or will, or is stopped).
    Ended,
    /// No answer within this long.
    Hung(Duration),
    /// It said something that is no answer to the call.
    Stop(String),
}

impl Loss {
    /// How a read failed, for a call given `allowed`.
    fn of(e: ReadFailure, allowed: Duration) -> Loss {
        match e {
            ReadFailure::Closed => Loss::Ended,
            ReadFailure::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Loss::Hung(allowed),
            ReadFailure::Io(_) => Loss::Ended,
            ReadFailure::TimedOut => Loss::Hung(allowed),
            ReadFailure::Garbled(m) => Loss::Stop(m),
            ReadFailure::TooLong(n) => Loss::Stop(format!("{n} bytes")),
        }
    }
}

/// Whether a channel must be had now, or may be waited for.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    Until(Instant),
    /// Only an idle channel or a new one (closing a session: never worth a wait).
    Not,
}

impl Link {
    fn failure(&self) -> TokenError {
        let fault = self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone();
        TokenError::ModuleFailed {
            module: self.path.clone(),
            fault: fault.unwrap_or(ModuleFault::Start("lost".into())),
        }
    }

    /// The worker is lost: from now on every call fails at once; it is stopped if it still
    /// runs, collected, and what happened said once (as the first call to see it found it).
    fn lose(&self, during: Function, how: Loss) -> TokenError {
        self.lost.store(true, Ordering::Release);
        {
            let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
            if fault.is_none() {
                let child = self.child.lock().unwrap_or_else(|p| p.into_inner()).take();
                let status = child.map(|c| end(c, !matches!(how, Loss::Ended)));
                *fault = Some(match how {
                    Loss::Hung(after) => ModuleFault::Hung { during, after },
                    Loss::Stop(what) => ModuleFault::Garbled { during, what },
                    Loss::Ended => match status {
                        Some((Some(s), false)) => ModuleFault::Ended { during, signal: s.signal(), status: s.code() },
                        _ => ModuleFault::Garbled { during, what: "a closed channel".into() },
                    },
                });
            }
        }
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).idle.clear();
        self.room.notify_all();
        self.failure()
    }

    fn channel(&self, during: Function, wait: Wait) -> CallResult<UnixStream> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.lost.load(Ordering::Acquire) {
                return Err(self.failure());
            }
            if let Some(c) = pool.idle.pop() {
                return Ok(c);
            }
            if pool.open < CHANNELS {
                pool.open += 1;
                drop(pool);
                return self.open_channel().map_err(|e| {
                    self.drop_channel();
                    match e {
                        Some(e) => e,
                        None => self.lose(during, Loss::Ended),
                    }
                });
            }
            let left = match wait {
                Wait::Until(until) => until.saturating_duration_since(Instant::now()),
                Wait::Not => Duration::ZERO,
            };
            if left.is_zero() {
                return Err(TokenError::Library(format!(
                    "{}: {CHANNELS} calls already wait for the module",
                    self.path.display()
                )));
            }
            pool = self.room.wait_timeout(pool, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// A new socketpair, one end handed to the worker. None: the worker took no more.
    fn open_channel(&self) -> Result<UnixStream, Option<TokenError>> {
        let local = |e: std::io::Error| Some(TokenError::Library(format!("a channel to the module's worker: {e}")));
        let (ours, theirs) = UnixStream::pair().map_err(local)?;
        match crate::platform::send_with_descriptors(&self.control, &[IoSlice::new(&[1])], &[theirs.as_fd()]) {
            Ok(1) => Ok(ours),
            _ => Err(None),
        }
    }

    fn give_back(&self, channel: UnixStream) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).idle.push(channel);
        self.room.notify_one();
    }

    fn drop_channel(&self) {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        pool.open = pool.open.saturating_sub(1);
        drop(pool);
        self.room.notify_one();
    }

    fn call(&self, call: Call) -> CallResult<Answer> {
        self.call_within(call, self.limit, true)
    }

    /// Make `call`, its answer due within `allowed` (a channel waited for within it too, when
    /// `wait`). The call's secrets are wiped whatever happens.
    fn call_within(&self, mut call: Call, allowed: Duration, wait: bool) -> CallResult<Answer> {
        let until = Instant::now() + allowed;
        let wait = if wait { Wait::Until(until) } else { Wait::Not };
        let during = call.function();
        let max = call.answer_limit();
        let channel = self.channel(during, wait);
        let frame = wire::frame(&call);
        call.wipe();
        let channel = channel?;
        let frame = frame.map_err(|e| TokenError::Library(e.to_string()))?;
        if let Err(e) = send_until(&channel, &frame, until) {
            self.drop_channel();
            let how = if e.kind() == std::io::ErrorKind::TimedOut { Loss::Hung(allowed) } else { Loss::Ended };
            return Err(self.lose(during, how));
        }
        drop(frame);
        match read_until(&channel, until, max) {
            Ok(Answer::Failed(f)) => {
                self.give_back(channel);
                Err(f.into_error(&self.path))
            }
            Ok(answer) => {
                self.give_back(channel);
                Ok(answer)
            }
            // Read past whole: the channel is in step, the worker well; only this call fails.
            Err(ReadFailure::TooLong(n)) => {
                self.give_back(channel);
                Err(TokenError::BadAnswer {
                    function: function_text(during),
                    what: format!("{n} bytes, more than {max}"),
                })
            }
            Err(e) => {
                self.drop_channel();
                Err(self.lose(during, Loss::of(e, allowed)))
            }
        }
    }

    /// Stop the worker now (the agent is about to replace its own image).
    fn stop(&self) {
        self.lost.store(true, Ordering::Release);
        if let Some(c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            end(c, true);
        }
    }
}

/// Collect a worker's exit status: stopped first when `stop`, or when it has not ended within
/// `ENDS_WITHIN` of closing its channel. The flag says whether it was stopped here. A worker
/// that does not go even then (a process stuck in the kernel) is left to a thread to collect.
fn end(mut child: Child, stop: bool) -> (Option<ExitStatus>, bool) {
    let wait = |child: &mut Child| {
        let until = Instant::now() + ENDS_WITHIN;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return Some(s),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
                _ => return None,
            }
        }
    };
    if !stop {
        if let Some(s) = wait(&mut child) {
            return (Some(s), false);
        }
    }
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    match wait(&mut child) {
        Some(s) => (Some(s), true),
        None => {
            let _ = std::thread::Builder::new().name("reaper".into()).spawn(move || child.wait());
            (None, true)
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Its control socket closing ends the worker as well; this also collects it.
        if let Some(c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            end(c, true);
        }
    }
}

impl Link {
    /// A logout or close that failed on a worker still there (no channel free): stop it, the
    /// surest end of its logins and sessions.
    fn unless_lost(&self, e: TokenError, during: Function) -> TokenError {
        if self.lost.load(Ordering::Acquire) {
            return e;
        }
        self.lose(during, Loss::Stop("no channel free to end a session".into()))
    }

    /// The answer was not the kind the call has: the worker is not to be trusted further.
    fn unexpected(&self, during: Function) -> TokenError {
        self.lose(during, Loss::Stop("an answer of another kind".into()))
    }
}

/// Make `$call` and take the answer `$pat => $out`, any other being the worker's fault.
macro_rules! ask {
    ($link:expr, $call:expr, $pat:pat => $out:expr) => {{
        let call = $call;
        let during = call.function();
        match $link.call(call)? {
            $pat => Ok($out),
            _ => Err($link.unexpected(during)),
        }
    }};
}

/// `C_Sign`, as BadAnswer names a function.
fn function_text(f: Function) -> &'static str {
    match f {
        Function::FindObjects => "C_FindObjects",
        Function::GetAttributeValue => "C_GetAttributeValue",
        Function::Sign => "C_Sign",
        Function::Decrypt => "C_Decrypt",
        _ => "a PKCS#11 call",
    }
}

fn handle(h: u64) -> ObjectHandle {
    // SAFETY: a handle the worker's module gave out; the module checks every handle it is
    // passed (CKR_OBJECT_HANDLE_INVALID), so a wrong one is an error, never memory.
    unsafe { ObjectHandle::new_from_raw(h) }
}

fn slot(s: u64) -> CallResult<Slot> {
    Slot::try_from(s).map_err(|e| TokenError::Library(e.to_string()))
}

/// A text field of CK_SLOT_INFO / CK_TOKEN_INFO, no longer than PKCS#11 makes it.
fn field(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

impl Library for Remote {
    fn initialize(&self) -> CallResult<()> {
        self.0.logouts.fetch_add(1, Ordering::AcqRel);
        ask!(self.0, Call::Initialize, Answer::Done => ())
    }

    fn finalize(&self) -> CallResult<()> {
        // C_Finalize ends every session and login of the module.
        self.0.logouts.fetch_add(1, Ordering::AcqRel);
        let r = ask!(self.0, Call::Finalize, Answer::Done => ());
        self.0.logouts.fetch_add(1, Ordering::AcqRel);
        r
    }

    fn slots(&self) -> CallResult<Vec<Slot>> {
        let ids = ask!(self.0, Call::Slots, Answer::Slots(ids) => ids)?;
        ids.into_iter().map(slot).collect()
    }

    fn slot_info(&self, s: Slot) -> CallResult<SlotInfo> {
        let i = ask!(self.0, Call::SlotInfo(s.id()), Answer::SlotInfo(i) => i)?;
        Ok(SlotInfo {
            present: i.present,
            description: field(i.description, 64),
            manufacturer: field(i.manufacturer, 32),
        })
    }

    fn token_info(&self, s: Slot) -> CallResult<TokenInfo> {
        let t = ask!(self.0, Call::TokenInfo(s.id()), Answer::TokenInfo(t) => t)?;
        Ok(TokenInfo {
            label: field(t.label, 32),
            manufacturer: field(t.manufacturer, 32),
            model: field(t.model, 16),
            serial: field(t.serial, 16),
            ..t
        })
    }

    fn open_session(&self, s: Slot, rw: bool) -> CallResult<Box<dyn SessionCalls>> {
        let id = ask!(self.0, Call::Open { slot: s.id(), rw }, Answer::Session(id) => id)?;
        Ok(Box::new(RemoteSession { link: self.0.clone(), id, logged_in_at: Mutex::new(None) }))
    }

    fn lost(&self) -> bool {
        self.0.lost.load(Ordering::Acquire)
    }

    fn stop(&self) {
        self.0.stop();
    }
}

/// A session inside the worker, by the worker's number for it.
struct RemoteSession {
    link: Arc<Link>,
    id: u64,
    /// The link's logout count and the time when this session was last seen logged in: while
    /// the count stands, for `LOGIN_SEEN_FOR`, the session is known logged in without asking
    /// the worker (a call less per signature).
    logged_in_at: Mutex<Option<(u64, Instant)>>,
}

impl Drop for RemoteSession {
    fn drop(&mut self) {
        if !self.link.lost.load(Ordering::Acquire) {
            self.link.logouts.fetch_add(1, Ordering::AcqRel);
            // Never waits for a channel (the desk may hold its lock); a worker that cannot take
            // the close is stopped, or its sessions would pile up.
            if let Err(e) = self.link.call_within(Call::Close(self.id), SHORT_CALL, false) {
                self.link.unless_lost(e, Function::CloseSession);
            }
            self.link.logouts.fetch_add(1, Ordering::AcqRel);
        }
    }
}

fn secret(pin: &SecretString) -> Vec<u8> {
    pin.expose_secret().as_bytes().to_vec()
}

impl RemoteSession {
    fn seen(&self, at: Option<u64>) {
        *self.logged_in_at.lock().unwrap_or_else(|p| p.into_inner()) = at.map(|n| (n, Instant::now()));
    }

    /// A private-key operation worked: the session was logged in when it ran.
    fn worked(&self, at: u64, r: CallResult<Vec<u8>>) -> CallResult<Vec<u8>> {
        if r.is_ok() {
            let mut seen = self.logged_in_at.lock().unwrap_or_else(|p| p.into_inner());
            if seen.is_some_and(|(n, _)| n == at) {
                *seen = Some((at, Instant::now()));
            }
        }
        r
    }

    fn unexpected(&self, during: Function) -> TokenError {
        self.seen(None);
        self.link.unexpected(during)
    }

    /// A call on this session; a failure makes its login unknown again.
    fn call(&self, call: Call) -> CallResult<Answer> {
        let r = self.link.call(call);
        if r.is_err() {
            self.seen(None);
        }
        r
    }
}

impl SessionCalls for RemoteSession {
    fn login(&self, pin: &SecretString) -> CallResult<()> {
        let at = self.link.logouts.load(Ordering::Acquire);
        ask!(self, Call::Login { session: self.id, pin: secret(pin) }, Answer::Done => ())?;
        self.seen(Some(at));
        Ok(())
    }

    fn logout(&self) -> CallResult<()> {
        // Counted before and after: a login seen while the logout is under way is not kept.
        self.link.logouts.fetch_add(1, Ordering::AcqRel);
        self.seen(None);
        let r = self.link.call_within(Call::Logout(self.id), SHORT_CALL.min(self.link.limit), true);
        self.link.logouts.fetch_add(1, Ordering::AcqRel);
        match r {
            Ok(Answer::Done) => Ok(()),
            Ok(_) => Err(self.link.unexpected(Function::Logout)),
            // A logout that cannot be made (every channel busy): the worker is stopped, which
            // ends the login for certain.
            Err(e) => Err(self.link.unless_lost(e, Function::Logout)),
        }
    }

    fn logged_in(&self) -> CallResult<bool> {
        let at = self.link.logouts.load(Ordering::Acquire);
        let seen = *self.logged_in_at.lock().unwrap_or_else(|p| p.into_inner());
        if seen.is_some_and(|(n, when)| n == at && when.elapsed() < LOGIN_SEEN_FOR) {
            return Ok(true);
        }
        let yes = ask!(self, Call::LoggedIn(self.id), Answer::Bool(b) => b)?;
        self.seen(yes.then_some(at));
        Ok(yes)
    }

    fn find_objects(&self, template: &[Attribute]) -> CallResult<Vec<ObjectHandle>> {
        let call = Call::Find { session: self.id, template: wire::raw_attributes(template) };
        let hs = ask!(self, call, Answer::Handles(hs) => hs)?;
        Ok(hs.into_iter().map(handle).collect())
    }

    fn get_attributes(&self, object: ObjectHandle, types: &[AttributeType]) -> CallResult<Vec<Attribute>> {
        let asked = wire::attribute_types(types);
        let call = Call::GetAttributes { session: self.id, object: object.handle(), types: asked.clone() };
        let mut raw = ask!(self, call, Answer::Attributes(a) => a)?;
        let out = wire::answered_attributes(&raw, &asked);
        raw.iter_mut().for_each(|a| zeroize::Zeroize::zeroize(&mut a.v));
        out
    }

    fn sign(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        let at = self.link.logouts.load(Ordering::Acquire);
        let call = Call::Sign { session: self.id, mech: mech.clone(), key: key.handle(), data: data.to_vec() };
        self.worked(at, ask!(self, call, Answer::Bytes(b) => b))
    }

    fn encrypt(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        let call = Call::Encrypt { session: self.id, mech: mech.clone(), key: key.handle(), data: data.to_vec() };
        ask!(self, call, Answer::Bytes(b) => b)
    }

    fn decrypt(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        let call = Call::Decrypt { session: self.id, mech: mech.clone(), key: key.handle(), data: data.to_vec() };
        ask!(self, call, Answer::Bytes(b) => b)
    }

    fn single_call(
        &self,
        op: Op,
        mech: &Mech,
        key: ObjectHandle,
        context_pin: Option<&SecretString>,
        data: &[u8],
    ) -> CallResult<Vec<u8>> {
        let at = self.link.logouts.load(Ordering::Acquire);
        let call = Call::Single {
            session: self.id,
            sign: matches!(op, Op::Sign),
            mech: mech.clone(),
            key: key.handle(),
            context_pin: context_pin.map(secret),
            data: data.to_vec(),
        };
        self.worked(at, ask!(self, call, Answer::Bytes(b) => b))
    }

    fn derive_key(&self, mech: &Mech, key: ObjectHandle, template: &[Attribute]) -> CallResult<ObjectHandle> {
        let call = Call::Derive {
            session: self.id,
            mech: mech.clone(),
            key: key.handle(),
            template: wire::raw_attributes(template),
        };
        ask!(self, call, Answer::Handle(h) => handle(h))
    }

    fn destroy_object(&self, object: ObjectHandle) -> CallResult<()> {
        ask!(self, Call::Destroy { session: self.id, object: object.handle() }, Answer::Done => ())
    }

    fn generate_key_pair(&self, mech: &Mech, public: &[Attribute], private: &[Attribute]) -> CallResult<()> {
        let call = Call::GenerateKeyPair {
            session: self.id,
            mech: mech.clone(),
            public: wire::raw_attributes(public),
            private: wire::raw_attributes(private),
        };
        ask!(self, call, Answer::Done => ())
    }

    fn create_object(&self, template: &[Attribute]) -> CallResult<ObjectHandle> {
        let call = Call::Create { session: self.id, template: wire::raw_attributes(template) };
        ask!(self, call, Answer::Handle(h) => handle(h))
    }

    fn update_attributes(&self, object: ObjectHandle, template: &[Attribute]) -> CallResult<()> {
        let call = Call::Update { session: self.id, object: object.handle(), template: wire::raw_attributes(template) };
        ask!(self, call, Answer::Done => ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_that_trickles_in_is_cut_off_at_the_calls_deadline_not_each_reads() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        // A length of 8 bytes, then a byte every 50 ms: each read would be in time on its own.
        let writer = std::thread::spawn(move || {
            let mut theirs = theirs;
            let _ = std::io::Write::write_all(&mut theirs, &8u32.to_be_bytes());
            for _ in 0..40 {
                std::thread::sleep(Duration::from_millis(50));
                if std::io::Write::write_all(&mut theirs, b" ").is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let got = read_until(&ours, started + Duration::from_millis(300), wire::MAX_ANSWER);
        assert!(matches!(got, Err(ReadFailure::TimedOut)), "{got:?}");
        assert!(started.elapsed() < Duration::from_millis(600), "{:?}", started.elapsed());
        drop(ours);
        let _ = writer.join();
    }
}
