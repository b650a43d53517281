//! What a local mail client sends the IMAP front door: whole sessions (login, LIST, SELECT,
//! FETCH with every section and partial, AUTHENTICATE exchanges, garbage) against a door whose
//! mirror holds one view and whose upstream is unreachable (a refresh fails and changes nothing).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::config::{ImapConfig, RelayTls};
use ssmax_card::imap::{mirror, session, Shared};
use std::io::{Read, Write};
use std::sync::{Arc, Mutex, OnceLock};

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let view = b"Authentication-Results: ssmax-card.local; smime=pass\r\nFrom: a@example.jp\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n";
        let message = mirror::Message {
            uid: std::num::NonZeroU32::new(7).expect("non-zero"),
            flags: Vec::new(),
            internal_date: None,
            view: Arc::new(view.to_vec()),
        };
        Shared {
            cfg: ImapConfig { upstream_tls: RelayTls::None, ..Default::default() },
            upstream: "127.0.0.1:9".into(),
            upstream_host: "127.0.0.1".into(),
            security: ssmax_card::imap::upstream::Security::Plain,
            upstream_user: "fuzz".into(),
            upstream_password: "x".to_string().into(),
            client_user: "fuzz".into(),
            client_secret: "fuzz-secret".to_string().into(),
            agent: "/nonexistent/ssmax-card-agent.sock".into(),
            mirror: Mutex::new(mirror::Mirror { uidvalidity: 42, messages: vec![message], pending: Vec::new() }),
            refreshing: Mutex::new(()),
        }
    })
}

/// The client's bytes in, the door's answers dropped.
struct Client<'a>(&'a [u8]);

impl Read for Client<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Client<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl session::Idle for Client<'_> {
    fn set_idle(&mut self, _: std::time::Duration) {}
}

fuzz_target!(|data: &[u8]| {
    let _ = session::serve(Client(data), shared());
});
