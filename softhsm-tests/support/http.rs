//! A loopback HTTP server for the tests' CRL distribution points: serves what the test puts at a
//! path, counts the requests, and can be told to answer slowly or with a huge body.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct Server {
    pub port: u16,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub requests: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    slow: Arc<AtomicBool>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut s = Server { port: listener.local_addr().unwrap().port(), ..Default::default() };
        s.files = Arc::default();
        let server = s.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.answer(conn));
            }
        });
        s
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    pub fn put(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(format!("/{path}"), body);
    }

    /// From now on, every answer waits 3 s before its first byte.
    pub fn go_slow(&self) {
        self.slow.store(true, Ordering::SeqCst);
    }

    /// From now on, every request is answered 503.
    pub fn go_down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    fn answer(&self, conn: TcpStream) {
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).map(|n| n == 0).unwrap_or(true) || h == "\r\n" {
                break;
            }
        }
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.slow.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_secs(3));
        }
        let mut conn = conn;
        let body = self.files.lock().unwrap().get(&path).cloned();
        let _ = match body {
            _ if self.down.load(Ordering::SeqCst) => conn.write_all(b"HTTP/1.1 503 Down\r\nContent-Length: 0\r\n\r\n"),
            Some(b) => conn
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/pkix-crl\r\nContent-Length: {}\r\n\r\n",
                        b.len()
                    )
                    .as_bytes(),
                )
                .and_then(|()| conn.write_all(&b)),
            None => conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
        };
    }
}
