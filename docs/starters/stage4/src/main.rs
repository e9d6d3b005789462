//! Stage 4 starter: an HTTP/1.1 static-file server on one thread. A mio
//! `Poll` (epoll, on Linux) says which sockets can make progress; the loop
//! makes that progress without ever blocking, and keeps each connection's
//! state between events in a slab. What to answer is decided by `http.rs`
//! (given); this file is about the waiting.

// Given, and kept byte for byte as it came.
#[allow(dead_code)] // until step 3 uses `error_response`
mod http;

use std::io::{self, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

/// The listener's token. A connection's token is its key in the slab.
const LISTENER: Token = Token(usize::MAX);
// STEP 4: a token for the socket the signal handler writes a byte to.

/// The command line: `--addr`, `--root`, `--header-timeout SECS`,
/// `--grace-period SECS`.
struct Config {
    addr: String,
    root: PathBuf,
    /// How long a request head may take to arrive, from its first byte.
    #[allow(dead_code)] // until step 3
    header_timeout: Duration,
    /// How long the answers in flight may take after SIGTERM.
    #[allow(dead_code)] // until step 4
    grace_period: Duration,
    // STEP 4: `max_connections`, below the open-files limit (`ulimit -n`).
}

impl Config {
    fn from_args() -> Result<Config, String> {
        let mut config = Config {
            addr: "127.0.0.1:8080".into(),
            root: PathBuf::from("www"),
            header_timeout: Duration::from_secs(10),
            grace_period: Duration::from_secs(10),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            let number = || value.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
            match flag.as_str() {
                "--addr" => config.addr = value.clone(),
                "--root" => config.root = PathBuf::from(&value),
                "--header-timeout" => config.header_timeout = Duration::from_secs(number()?),
                "--grace-period" => config.grace_period = Duration::from_secs(number()?),
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        Ok(config)
    }
}

/// One client's connection: all the loop remembers about it between
/// events.
struct Connection {
    stream: TcpStream,
    // STEP 1: the bytes received and not answered yet.
    // STEP 2: the answer being sent and how many of its bytes are out,
    //         whether to close after it, and the interest the stream is
    //         registered for.
    // STEP 3: when the request head being read must be complete.
}

/// What a connection waits for after its turn.
enum Next {
    Read,
    // STEP 2: `Write`: room in the send buffer.
    Close,
}

impl Connection {
    fn new(stream: TcpStream) -> Connection {
        Connection { stream }
    }

    /// Makes all the progress the socket allows: sends what is pending,
    /// answers the requests already received, reads more. mio's readiness
    /// is edge-triggered, so each step goes on until `WouldBlock`: no new
    /// event comes for readiness left unused.
    fn advance(&mut self, root: &Path) -> io::Result<Next> {
        // STEP 1: keep what arrives in the input, read until WouldBlock,
        //         answer each whole request the input holds, and keep the
        //         connection open unless an answer says close. For now
        //         each read is decided alone (a head split across reads is
        //         never answered), and one answer ends the connection.
        // STEP 2: at the top of that loop, send what is pending first; on
        //         WouldBlock, wait for WRITABLE (and read nothing meanwhile).
        let mut buf = [0; 16 * 1024];
        let n = match self.stream.read(&mut buf) {
            Ok(0) => return Ok(Next::Close),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Next::Read),
            Err(e) => return Err(e),
        };
        match http::decide(&buf[..n], root) {
            http::Decision::NeedMore => Ok(Next::Read),
            http::Decision::Respond { response, .. } => {
                write_all_spinning(&mut self.stream, &response)?;
                Ok(Next::Close)
            }
        }
    }
}

/// Writes all of `bytes` the way a blocking server does: on `WouldBlock`
/// it waits a moment and tries again. While one client does not read, the
/// whole loop waits here (step 2 replaces it).
fn write_all_spinning(stream: &mut TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.write(bytes) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The event loop and everything it owns.
struct Server {
    poll: Poll,
    // STEP 4: an `Option`, `None` once shutting down.
    listener: TcpListener,
    conns: Slab<Connection>,
    config: Config,
    // STEP 4: after SIGTERM, when the grace period ends.
}

impl Server {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            // STEP 3: sleep no longer than until the nearest deadline.
            let timeout = None;
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    // STEP 4: the signal's token: shut down.
                    Token(key) => self.drive(key),
                }
            }
            // STEP 3: answer 408 to the connections whose head is late.
            // STEP 4: once shutting down, return when the last connection
            //         is gone or the grace period is over.
        }
    }

    /// Accepts every pending connection: the listener's readiness is an
    /// edge too.
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    // STEP 4: beyond `max_connections`, answer 503 and close.
                    let entry = self.conns.vacant_entry();
                    let token = Token(entry.key());
                    let registry = self.poll.registry();
                    if let Err(e) = registry.register(&mut stream, token, Interest::READABLE) {
                        eprintln!("register: {e}");
                        continue;
                    }
                    entry.insert(Connection::new(stream));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EMFILE (out of descriptors) and the like: the client waits
                // in the kernel's queue until the next connection arrives.
                Err(e) => {
                    eprintln!("accept: {e}");
                    return;
                }
            }
        }
    }

    /// Gives connection `key` its turn, then registers it for what it
    /// waits for.
    fn drive(&mut self, key: usize) {
        // An event for a connection closed earlier in this round: skip it.
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        match conn.advance(&self.config.root) {
            Ok(Next::Read) => {
                // STEP 3: a request has begun: its head must be complete
                //         in time.
            }
            // STEP 2: `Next::Write`: wait for WRITABLE instead.
            Ok(Next::Close) | Err(_) => {
                // Dropping the stream closes it, which takes it out of epoll.
                self.conns.remove(key);
            }
        }
        // STEP 2: reregister the stream when what it waits for changed.
    }

    // STEP 3: `next_deadline` (for `poll`) and `expire` (408 and a close).
    // STEP 4: `shut_down`, on the signal: stop accepting, close the idle
    //         connections, let the answers already started finish.
}

fn serve(config: Config) -> io::Result<()> {
    let addr = config
        .addr
        .parse()
        .map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("--addr: {e}")))?;
    let mut listener = TcpListener::bind(addr)?;
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    // STEP 4: make SIGTERM and SIGINT an event: signal-hook's handler
    //         writes a byte to one end of a socket pair, and the poll
    //         watches the other.
    println!("listening on {}", listener.local_addr()?);
    io::stdout().flush()?;
    let mut server = Server {
        poll,
        listener,
        conns: Slab::new(),
        config,
    };
    server.run()
}

fn main() {
    let config = Config::from_args().unwrap_or_else(|e| {
        eprintln!("stage4-starter: {e}");
        std::process::exit(2);
    });
    if let Err(e) = serve(config) {
        eprintln!("stage4-starter: {e}");
        std::process::exit(1);
    }
}
