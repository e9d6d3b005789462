//! Helpers shared by the integration tests: start the server, talk lines.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;

use common::testkit::ServerProcess;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_stage1-echo");

/// Starts the server with `args` on a free port; only warnings are logged,
/// so a failing test shows what matters.
pub fn start(args: &[&str]) -> ServerProcess {
    let mut all = vec!["--log-level", "warn"];
    all.extend_from_slice(args);
    ServerProcess::start(BIN, &all)
}

/// A connection that speaks lines.
pub struct Client {
    /// Buffered reads; writes go to `reader.get_ref()`.
    reader: BufReader<TcpStream>,
}

impl Client {
    /// Connects to `server` (10 s read timeout).
    pub fn connect(server: &ServerProcess) -> Client {
        Client {
            reader: BufReader::new(server.connect()),
        }
    }

    /// The socket, for raw writes and options.
    pub fn stream(&self) -> &TcpStream {
        self.reader.get_ref()
    }

    /// Writes raw bytes.
    pub fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream()
            .write_all(bytes.as_ref())
            .expect("write to the server");
    }

    /// Reads one line, without its `\n`; panics on EOF or time-out.
    pub fn line_bytes(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        let n = self
            .reader
            .read_until(b'\n', &mut line)
            .expect("read a line");
        assert!(
            n > 0,
            "the server closed the connection instead of answering"
        );
        assert_eq!(line.pop(), Some(b'\n'), "a reply must end in \\n: {line:?}");
        line
    }

    /// Reads one line as text.
    pub fn line(&mut self) -> String {
        String::from_utf8(self.line_bytes()).expect("a UTF-8 reply")
    }

    /// Sends `cmd` plus `\n` and returns the one-line answer.
    pub fn ask(&mut self, cmd: &str) -> String {
        self.send(format!("{cmd}\n"));
        self.line()
    }

    /// Reads lines until one satisfies `pred`, returning it.
    pub fn line_until(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let l = self.line();
            if pred(&l) {
                return l;
            }
        }
    }

    /// Asserts that the server closed the connection (EOF or reset) with
    /// nothing more to say.
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "unexpected bytes before EOF: {rest:?}"),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {}
            Err(e) => panic!("expected EOF, got {e}"),
        }
    }

    /// Closes with `RST` instead of `FIN`, as a crashed peer would.
    pub fn reset(self) {
        common::testkit::reset_on_close(self.stream());
    }
}

/// Parses `clients=3 messages=5 ...` into the value of `key`.
pub fn stat(line: &str, key: &str) -> u64 {
    line.split(' ')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .parse()
        .unwrap()
}

/// Every model, as the flags that choose it: a test that holds for all of
/// them runs on each.
pub const MODELS: [&[&str]; 5] = [
    &["--model", "blocking"],
    &["--model", "select"],
    &["--model", "poll"],
    &["--model", "epoll"],
    &["--model", "epoll", "--edge"],
];

/// `model`'s flags followed by `more`.
pub fn with<'a>(model: &[&'a str], more: &[&'a str]) -> Vec<&'a str> {
    model.iter().chain(more).copied().collect()
}
