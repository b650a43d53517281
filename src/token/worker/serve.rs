//! The worker's side: `ssmax-card module-worker MODULE`, the agent's own child, loads one
//! module and makes the calls the agent sends. Its standard input is the control socket: each
//! byte that comes carries a new channel (SCM_RIGHTS), served by a thread of its own, one call
//! at a time. The control socket closing means the agent is gone, and so is the worker.

use super::wire::{self, Answer, Call, Fault, ReadFailure};
use crate::token::calls::{InProcess, Library, LocalSession, SessionCalls};
use crate::token::TokenError;
use cryptoki::object::ObjectHandle;
use cryptoki::slot::Slot;
use secrecy::SecretString;
use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Sessions one worker keeps open at most (the agent opens one per token it holds).
const MAX_SESSIONS: usize = 4096;
/// Channels (threads) one worker serves at most; the agent opens fewer (remote.rs).
const MAX_CHANNELS: usize = 64;

struct Worker {
    lib: InProcess,
    sessions: Mutex<HashMap<u64, Arc<Mutex<LocalSession>>>>,
    next: AtomicU64,
    channels: AtomicUsize,
}

/// Serve the agent until it closes the control socket; never returns.
pub fn serve(module: &Path) -> ! {
    let control = match std::io::stdin().as_fd().try_clone_to_owned().and_then(crate::platform::keep_only) {
        Ok(fd) => UnixStream::from(fd),
        Err(_) => leave(),
    };
    let hello = match InProcess::load(module) {
        Ok(lib) => Ok(lib),
        Err(e) => Err(Fault::from_error(e)),
    };
    let lib = match hello {
        Ok(lib) => {
            let _ = wire::write_frame(&mut &control, &Answer::Done);
            lib
        }
        Err(f) => {
            let _ = wire::write_frame(&mut &control, &Answer::Failed(f));
            leave()
        }
    };
    let worker = Arc::new(Worker {
        lib,
        sessions: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
        channels: AtomicUsize::new(0),
    });
    let mut byte = [0u8; 1];
    loop {
        let got = match crate::platform::recv_with_descriptors(&control, &mut byte) {
            Ok(g) => g,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => leave(),
        };
        if got.bytes == 0 {
            leave();
        }
        for fd in got.fds {
            if worker.channels.fetch_add(1, Ordering::AcqRel) >= MAX_CHANNELS {
                worker.channels.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let w = worker.clone();
            let channel = UnixStream::from(fd);
            let spawned = std::thread::Builder::new().name("channel".into()).spawn(move || {
                w.serve_channel(channel);
                w.channels.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                worker.channels.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }
}

/// End the process at once: no atexit handlers, no static destructors of the module (a
/// module's destructors crashed once they ran under a call still in progress).
fn leave() -> ! {
    // SAFETY: _exit ends the process; nothing in it is used afterwards.
    unsafe { libc::_exit(0) }
}

/// A PIN as the agent sent it (the UTF-8 bytes of what the person typed).
fn secret(pin: &[u8]) -> Result<SecretString, TokenError> {
    let text = std::str::from_utf8(pin).map_err(|_| TokenError::Library("a PIN that is not UTF-8".into()))?;
    Ok(SecretString::from(text.to_string()))
}

impl Worker {
    fn serve_channel(&self, mut channel: UnixStream) {
        loop {
            let mut call: Call = match wire::read_frame(&mut channel, wire::MAX_CALL) {
                Ok(c) => c,
                Err(ReadFailure::Io(e)) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            let mut answer = self.answer(&call).unwrap_or_else(|e| Answer::Failed(Fault::from_error(e)));
            call.wipe();
            let sent = wire::write_frame(&mut channel, &answer);
            answer.wipe();
            if sent.is_err() {
                return;
            }
        }
    }

    fn session(&self, id: u64) -> Result<Arc<Mutex<LocalSession>>, TokenError> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        sessions.get(&id).cloned().ok_or(TokenError::Pkcs11 {
            function: cryptoki::context::Function::GetSessionInfo,
            rv: cryptoki::error::RvError::SessionHandleInvalid,
        })
    }

    fn with<R>(&self, id: u64, f: impl FnOnce(&LocalSession) -> Result<R, TokenError>) -> Result<R, TokenError> {
        let s = self.session(id)?;
        let s = s.lock().unwrap_or_else(|p| p.into_inner());
        f(&s)
    }

    fn answer(&self, call: &Call) -> Result<Answer, TokenError> {
        let slot = |s: u64| Slot::try_from(s).map_err(|e| TokenError::Library(e.to_string()));
        // SAFETY: a handle the agent was given by this module; the module checks it
        // (CKR_OBJECT_HANDLE_INVALID), so a wrong one is an error, never memory.
        let object = |h: u64| unsafe { ObjectHandle::new_from_raw(h) };
        let handles = |v: Vec<ObjectHandle>| Answer::Handles(v.iter().map(ObjectHandle::handle).collect());
        Ok(match call {
            Call::Initialize => self.lib.initialize().map(|()| Answer::Done)?,
            Call::Finalize => {
                // C_Finalize ends every session: their numbers must not reach sessions the
                // module opens afresh under the same handles.
                drop(std::mem::take(&mut *self.sessions.lock().unwrap_or_else(|p| p.into_inner())));
                self.lib.finalize().map(|()| Answer::Done)?
            }
            Call::Slots => Answer::Slots(self.lib.slots()?.iter().map(Slot::id).collect()),
            Call::SlotInfo(s) => Answer::SlotInfo(self.lib.slot_info(slot(*s)?)?),
            Call::TokenInfo(s) => Answer::TokenInfo(self.lib.token_info(slot(*s)?)?),
            Call::Open { slot: s, rw } => {
                let opened = self.lib.open(slot(*s)?, *rw)?;
                let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
                if sessions.len() >= MAX_SESSIONS {
                    return Err(TokenError::Pkcs11 {
                        function: cryptoki::context::Function::OpenSession,
                        rv: cryptoki::error::RvError::SessionCount,
                    });
                }
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                sessions.insert(id, Arc::new(Mutex::new(opened)));
                Answer::Session(id)
            }
            Call::Close(id) => {
                let s = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
                drop(s);
                Answer::Done
            }
            Call::Login { session, pin } => {
                let pin = secret(pin)?;
                self.with(*session, |s| s.login(&pin)).map(|()| Answer::Done)?
            }
            Call::Logout(session) => self.with(*session, |s| s.logout()).map(|()| Answer::Done)?,
            Call::LoggedIn(session) => Answer::Bool(self.with(*session, |s| s.logged_in())?),
            Call::Find { session, template } => {
                let template = wire::attributes(template)?;
                handles(self.with(*session, |s| s.find_objects(&template))?)
            }
            Call::GetAttributes { session, object: o, types } => {
                let types = wire::attribute_types_back(types)?;
                let got = self.with(*session, |s| s.get_attributes(object(*o), &types))?;
                Answer::Attributes(wire::raw_attributes(&got))
            }
            Call::Sign { session, mech, key, data } => {
                Answer::Bytes(self.with(*session, |s| s.sign(mech, object(*key), data))?)
            }
            Call::Encrypt { session, mech, key, data } => {
                Answer::Bytes(self.with(*session, |s| s.encrypt(mech, object(*key), data))?)
            }
            Call::Decrypt { session, mech, key, data } => {
                Answer::Bytes(self.with(*session, |s| s.decrypt(mech, object(*key), data))?)
            }
            Call::Single { session, sign, mech, key, context_pin, data } => {
                let pin = context_pin.as_deref().map(secret).transpose()?;
                let op = Call::op(*sign);
                Answer::Bytes(self.with(*session, |s| s.single_call(op, mech, object(*key), pin.as_ref(), data))?)
            }
            Call::Derive { session, mech, key, template } => {
                let template = wire::attributes(template)?;
                Answer::Handle(self.with(*session, |s| s.derive_key(mech, object(*key), &template))?.handle())
            }
            Call::Destroy { session, object: o } => {
                self.with(*session, |s| s.destroy_object(object(*o))).map(|()| Answer::Done)?
            }
            Call::GenerateKeyPair { session, mech, public, private } => {
                let (public, private) = (wire::attributes(public)?, wire::attributes(private)?);
                self.with(*session, |s| s.generate_key_pair(mech, &public, &private)).map(|()| Answer::Done)?
            }
            Call::Create { session, template } => {
                let template = wire::attributes(template)?;
                Answer::Handle(self.with(*session, |s| s.create_object(&template))?.handle())
            }
            Call::Update { session, object: o, template } => {
                let template = wire::attributes(template)?;
                self.with(*session, |s| s.update_attributes(object(*o), &template)).map(|()| Answer::Done)?
            }
        })
    }
}
