//! What a local mail client sends the IMAP front door: whole sessions (login, LIST, SELECT,
//! FETCH with every section and partial, AUTHENTICATE exchanges, garbage) against a door whose
//! cache holds one view and whose upstream is unreachable (a refresh fails and changes nothing).
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::config::{ImapConfig, RelayTls};
use ssmax_card::imap::{mirror, session, Settings, Shared};
use std::io::{Read, Write};
use std::sync::OnceLock;

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let view = b"Authentication-Results: ssmax-card.local; smime=pass\r\nFrom: a@example.jp\r\nSubject: s\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n";
        let dir = std::env::temp_dir().join(format!("ssmax-fuzz-imap-{}", std::process::id()));
        let shared = Shared::open(Settings {
            cfg: ImapConfig { upstream_tls: RelayTls::None, cache_dir: Some(dir), ..Default::default() },
            upstream: "127.0.0.1:9".into(),
            upstream_host: "127.0.0.1".into(),
            security: ssmax_card::imap::upstream::Security::Plain,
            upstream_user: "fuzz".into(),
            upstream_password: "x".to_string().into(),
            client_user: "fuzz".into(),
            client_secret: "fuzz-secret".to_string().into(),
            agent: "/nonexistent/ssmax-card-agent.sock".into(),
            cache_key: zeroize::Zeroizing::new([7; 32]),
            mark: Box::<ssmax_card::imap::cache::MemoryStore>::default(),
        })
        .expect("a private cache directory");
        {
            let inbox = shared.folder("INBOX").expect("INBOX");
            let mut m = inbox.lock();
            let uidvalidity = m.uidvalidity();
            inbox.cache.put_view(uidvalidity, 7, view).expect("a view stored");
            m.state.next_uid = 8;
            m.state.entries = vec![mirror::Entry {
                uid: 7,
                upstream: 3,
                size: view.len() as u32,
                digest: [0; 32],
                shown: mirror::Shown::View,
                used: 0,
                stored: true,
                lazy: false,
                plain: false,
                parts: Vec::new(),
            }];
        }
        shared
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
