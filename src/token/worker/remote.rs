//! The agent's side of a module's worker: the calls of `calls::Library` and `SessionCalls` sent
//! to the worker process and its answers read, each call on a channel of its own (a socketpair
//! handed to the worker over the control socket), so calls on different tokens of one module
//! run side by side as they did in-process. A worker that ends, hangs past the limit or answers
//! garbage is lost with every session in it; the request that saw it fails with a
//! `ModuleFault`, and the next `Module::load` starts a new worker.

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
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Channels (calls at once) to one worker; more callers wait for one within the call limit.
const CHANNELS: usize = 32;
/// How long a worker whose channel closed has to be seen gone before it is stopped.
const ENDS_WITHIN: Duration = Duration::from_secs(2);

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
    /// Start `ssmax-card module-worker MODULE` and wait for it to have loaded the module.
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
            .spawn()
            .map_err(start)?;
        ours.set_read_timeout(Some(limit)).map_err(start)?;
        let link = Arc::new(Link {
            path: path.into(),
            limit,
            control: ours,
            child: Mutex::new(Some(child)),
            pool: Mutex::new(Pool::default()),
            room: Condvar::new(),
            lost: AtomicBool::new(false),
            fault: Mutex::new(None),
        });
        let hello = wire::read_frame::<Answer>(&mut &link.control);
        match hello {
            Ok(Answer::Done) => Ok(Remote(link)),
            Ok(Answer::Failed(f)) => {
                link.lose(Function::GetFunctionList, Loss::Stop("".into()));
                Err(f.into_error(path))
            }
            Ok(other) => Err(link.lose(Function::GetFunctionList, Loss::Stop(format!("{other:?}")))),
            Err(e) => Err(link.lose(Function::GetFunctionList, Loss::from(e))),
        }
    }
}

/// How a call found the worker gone or wrong.
enum Loss {
    /// Its end of the channel closed: it ended (or will, or is stopped).
    Ended,
    Hung,
    /// It said something that is no answer to the call.
    Stop(String),
}

impl From<ReadFailure> for Loss {
    fn from(e: ReadFailure) -> Loss {
        match e {
            ReadFailure::Closed | ReadFailure::Io(_) => Loss::Ended,
            ReadFailure::TimedOut => Loss::Hung,
            ReadFailure::Garbled(m) => Loss::Stop(m),
        }
    }
}

impl Link {
    fn failure(&self) -> TokenError {
        let fault = self.fault.lock().unwrap_or_else(|p| p.into_inner()).clone();
        TokenError::ModuleFailed {
            module: self.path.clone(),
            fault: fault.unwrap_or(ModuleFault::Start("lost".into())),
        }
    }

    /// The worker is lost: say why once (the first call to see it), stop it if it still runs,
    /// and collect its exit status. Every call from now on fails with the same fault.
    fn lose(&self, during: Function, how: Loss) -> TokenError {
        {
            let mut fault = self.fault.lock().unwrap_or_else(|p| p.into_inner());
            if fault.is_none() {
                let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
                let status = child.as_mut().map(|c| end(c, !matches!(how, Loss::Ended)));
                *child = None;
                *fault = Some(match how {
                    Loss::Hung => ModuleFault::Hung { during, after: self.limit },
                    Loss::Stop(what) => ModuleFault::Garbled { during, what },
                    Loss::Ended => match status {
                        Some((s, false)) => ModuleFault::Ended { during, signal: s.signal(), status: s.code() },
                        _ => ModuleFault::Garbled { during, what: "a closed channel".into() },
                    },
                });
                self.lost.store(true, Ordering::Release);
            }
        }
        self.room.notify_all();
        self.failure()
    }

    fn channel(&self, during: Function) -> CallResult<UnixStream> {
        let until = Instant::now() + self.limit;
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
                    self.pool.lock().unwrap_or_else(|p| p.into_inner()).open -= 1;
                    match e {
                        Some(e) => e,
                        None => self.lose(during, Loss::Ended),
                    }
                });
            }
            let left = until.saturating_duration_since(Instant::now());
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
        ours.set_read_timeout(Some(self.limit)).map_err(local)?;
        ours.set_write_timeout(Some(self.limit)).map_err(local)?;
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
    }

    fn call(&self, mut call: Call) -> CallResult<Answer> {
        let during = call.function();
        let mut channel = self.channel(during)?;
        let sent = wire::write_frame(&mut channel, &call);
        call.wipe();
        if let Err(e) = sent {
            self.drop_channel();
            let how = match e.kind() {
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Loss::Hung,
                _ => Loss::Ended,
            };
            return Err(self.lose(during, how));
        }
        match wire::read_frame::<Answer>(&mut channel) {
            Ok(Answer::Failed(f)) => {
                self.give_back(channel);
                Err(f.into_error(&self.path))
            }
            Ok(answer) => {
                self.give_back(channel);
                Ok(answer)
            }
            Err(e) => {
                self.drop_channel();
                Err(self.lose(during, Loss::from(e)))
            }
        }
    }
}

/// Collect a worker's exit status: stopped first when `stop`, or when it has not ended within
/// `ENDS_WITHIN` of closing its channel. The flag says whether it was stopped here.
fn end(child: &mut Child, stop: bool) -> (ExitStatus, bool) {
    let until = Instant::now() + ENDS_WITHIN;
    if !stop {
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return (s, false),
                Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(5)),
                _ => break,
            }
        }
    }
    let _ = child.kill();
    match child.wait() {
        Ok(s) => (s, true),
        Err(_) => (ExitStatus::from_raw(0), true),
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Its control socket closing ends the worker as well; this also collects it.
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The answer was not the kind the call has: the worker is not to be trusted further.
fn unexpected(link: &Link, during: Function, got: &Answer) -> TokenError {
    link.lose(during, Loss::Stop(format!("{} where {} was due", kind(got), function_word(during))))
}

fn kind(a: &Answer) -> &'static str {
    match a {
        Answer::Done => "Done",
        Answer::Slots(_) => "Slots",
        Answer::SlotInfo(_) => "SlotInfo",
        Answer::TokenInfo(_) => "TokenInfo",
        Answer::Session(_) => "Session",
        Answer::Bool(_) => "Bool",
        Answer::Handles(_) => "Handles",
        Answer::Handle(_) => "Handle",
        Answer::Attributes(_) => "Attributes",
        Answer::Bytes(_) => "Bytes",
        Answer::Failed(_) => "Failed",
    }
}

fn function_word(f: Function) -> String {
    crate::token::function_name(f)
}

/// Make `$call` and take the answer `$pat => $out`, any other being the worker's fault.
macro_rules! ask {
    ($link:expr, $call:expr, $pat:pat => $out:expr) => {{
        let call = $call;
        let during = call.function();
        match $link.call(call)? {
            $pat => Ok($out),
            other => Err(unexpected(&$link, during, &other)),
        }
    }};
}

fn handle(h: u64) -> ObjectHandle {
    // SAFETY: a handle the worker's module gave out; the module checks every handle it is
    // passed (CKR_OBJECT_HANDLE_INVALID), so a wrong one is an error, never memory.
    unsafe { ObjectHandle::new_from_raw(h) }
}

fn slot(s: u64) -> CallResult<Slot> {
    Slot::try_from(s).map_err(|e| TokenError::Library(e.to_string()))
}

impl Library for Remote {
    fn initialize(&self) -> CallResult<()> {
        ask!(self.0, Call::Initialize, Answer::Done => ())
    }

    fn finalize(&self) -> CallResult<()> {
        ask!(self.0, Call::Finalize, Answer::Done => ())
    }

    fn slots(&self) -> CallResult<Vec<Slot>> {
        let ids = ask!(self.0, Call::Slots, Answer::Slots(ids) => ids)?;
        ids.into_iter().map(slot).collect()
    }

    fn slot_info(&self, s: Slot) -> CallResult<SlotInfo> {
        ask!(self.0, Call::SlotInfo(s.id()), Answer::SlotInfo(i) => i)
    }

    fn token_info(&self, s: Slot) -> CallResult<TokenInfo> {
        ask!(self.0, Call::TokenInfo(s.id()), Answer::TokenInfo(i) => i)
    }

    fn open_session(&self, s: Slot, rw: bool) -> CallResult<Box<dyn SessionCalls>> {
        let id = ask!(self.0, Call::Open { slot: s.id(), rw }, Answer::Session(id) => id)?;
        Ok(Box::new(RemoteSession { link: self.0.clone(), id }))
    }

    fn lost(&self) -> bool {
        self.0.lost.load(Ordering::Acquire)
    }
}

/// A session inside the worker, by the worker's number for it.
struct RemoteSession {
    link: Arc<Link>,
    id: u64,
}

impl Drop for RemoteSession {
    fn drop(&mut self) {
        if !self.link.lost.load(Ordering::Acquire) {
            let _ = self.link.call(Call::Close(self.id));
        }
    }
}

fn secret(pin: &SecretString) -> String {
    pin.expose_secret().to_string()
}

impl SessionCalls for RemoteSession {
    fn login(&self, pin: &SecretString) -> CallResult<()> {
        ask!(self.link, Call::Login { session: self.id, pin: secret(pin) }, Answer::Done => ())
    }

    fn logout(&self) -> CallResult<()> {
        ask!(self.link, Call::Logout(self.id), Answer::Done => ())
    }

    fn logged_in(&self) -> CallResult<bool> {
        ask!(self.link, Call::LoggedIn(self.id), Answer::Bool(b) => b)
    }

    fn find_objects(&self, template: &[Attribute]) -> CallResult<Vec<ObjectHandle>> {
        let call = Call::Find { session: self.id, template: wire::raw_attributes(template) };
        let hs = ask!(self.link, call, Answer::Handles(hs) => hs)?;
        Ok(hs.into_iter().map(handle).collect())
    }

    fn get_attributes(&self, object: ObjectHandle, types: &[AttributeType]) -> CallResult<Vec<Attribute>> {
        let call =
            Call::GetAttributes { session: self.id, object: object.handle(), types: wire::attribute_types(types) };
        let mut raw = ask!(self.link, call, Answer::Attributes(a) => a)?;
        let out = wire::attributes(&raw);
        raw.iter_mut().for_each(|(_, v)| zeroize::Zeroize::zeroize(v));
        out
    }

    fn sign(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        let call = Call::Sign { session: self.id, mech: mech.clone(), key: key.handle(), data: data.to_vec() };
        ask!(self.link, call, Answer::Bytes(b) => b)
    }

    fn encrypt(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        let call = Call::Encrypt { session: self.id, mech: mech.clone(), key: key.handle(), data: data.to_vec() };
        ask!(self.link, call, Answer::Bytes(b) => b)
    }

    fn decrypt(&self, mech: &Mech, key: ObjectHandle, data: &[u8]) -> CallResult<Vec<u8>> {
        let call = Call::Decrypt { session: self.id, mech: mech.clone(), key: key.handle(), data: data.to_vec() };
        ask!(self.link, call, Answer::Bytes(b) => b)
    }

    fn single_call(
        &self,
        op: Op,
        mech: &Mech,
        key: ObjectHandle,
        context_pin: Option<&SecretString>,
        data: &[u8],
    ) -> CallResult<Vec<u8>> {
        let call = Call::Single {
            session: self.id,
            sign: matches!(op, Op::Sign),
            mech: mech.clone(),
            key: key.handle(),
            context_pin: context_pin.map(secret),
            data: data.to_vec(),
        };
        ask!(self.link, call, Answer::Bytes(b) => b)
    }

    fn derive_key(&self, mech: &Mech, key: ObjectHandle, template: &[Attribute]) -> CallResult<ObjectHandle> {
        let call = Call::Derive {
            session: self.id,
            mech: mech.clone(),
            key: key.handle(),
            template: wire::raw_attributes(template),
        };
        ask!(self.link, call, Answer::Handle(h) => handle(h))
    }

    fn destroy_object(&self, object: ObjectHandle) -> CallResult<()> {
        ask!(self.link, Call::Destroy { session: self.id, object: object.handle() }, Answer::Done => ())
    }

    fn generate_key_pair(&self, mech: &Mech, public: &[Attribute], private: &[Attribute]) -> CallResult<()> {
        let call = Call::GenerateKeyPair {
            session: self.id,
            mech: mech.clone(),
            public: wire::raw_attributes(public),
            private: wire::raw_attributes(private),
        };
        ask!(self.link, call, Answer::Done => ())
    }

    fn create_object(&self, template: &[Attribute]) -> CallResult<ObjectHandle> {
        let call = Call::Create { session: self.id, template: wire::raw_attributes(template) };
        ask!(self.link, call, Answer::Handle(h) => handle(h))
    }

    fn update_attributes(&self, object: ObjectHandle, template: &[Attribute]) -> CallResult<()> {
        let call = Call::Update { session: self.id, object: object.handle(), template: wire::raw_attributes(template) };
        ask!(self.link, call, Answer::Done => ())
    }
}
