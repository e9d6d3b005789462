//! Stage 3 starter: a static-file HTTP/1.1 server on a thread pool.
//!
//! One thread, the acceptor, takes connections off the listener and
//! pushes them into a bounded queue; `--threads` workers take them out and
//! serve each one to its end. What to answer is decided by `http.rs`
//! (given, do not edit it): this stage is about who waits for what.
//!
//! ```text
//! listener ─▶ acceptor ─try_send─▶ [ bounded queue ] ─recv─▶ worker 0..N ─▶ serve_connection
//!                │ full
//!                └─▶ 503 and close
//! ```
//!
//! As it comes, the starter is stage 2's sequential server: the acceptor
//! serves each connection itself, to its end, before it accepts the next.
//! The `// STEP N:` comments say what each step of the chapter builds.

// Given, the same in the starters of stages 3, 4 and 5: keep it as it is.
mod http;

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::Receiver;

/// The command line.
struct Config {
    addr: String,
    root: PathBuf,
    #[allow(dead_code)] // read from STEP 1 on
    threads: usize,
    #[allow(dead_code)] // read from STEP 1 on
    queue_depth: usize,
    #[allow(dead_code)] // read from STEP 2 on
    header_timeout: Duration,
    #[allow(dead_code)] // read from STEP 3 on
    grace_period: Duration,
}

impl Config {
    fn from_args() -> Result<Config, String> {
        let mut config = Config {
            addr: "127.0.0.1:8080".into(),
            root: "www".into(),
            threads: 8,
            queue_depth: 64,
            header_timeout: Duration::from_secs(10),
            grace_period: Duration::from_secs(10),
        };
        let mut args = std::env::args().skip(1);
        while let Some(flag) = args.next() {
            let value = args.next().ok_or(format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--addr" => config.addr = value,
                "--root" => config.root = value.into(),
                "--threads" => config.threads = number(&flag, &value)?,
                "--queue-depth" => config.queue_depth = number(&flag, &value)?,
                "--header-timeout" => config.header_timeout = seconds(&flag, &value)?,
                "--grace-period" => config.grace_period = seconds(&flag, &value)?,
                _ => return Err(format!("unknown flag {flag}")),
            }
        }
        if config.threads == 0 || config.queue_depth == 0 {
            return Err("--threads and --queue-depth must be at least 1".into());
        }
        Ok(config)
    }
}

fn number(flag: &str, value: &str) -> Result<usize, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let secs: f64 = value
        .parse()
        .map_err(|_| format!("{flag}: not a number: {value}"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{flag}: not a duration: {value}"))
}

/// What the acceptor, the workers and the signal thread share.
struct Shared {
    root: PathBuf,
    // STEP 2: the header timeout.
    // STEP 3: a shutdown flag, an `AtomicBool` the signal thread sets.
}

fn main() {
    let config = Config::from_args().unwrap_or_else(|e| {
        eprintln!("stage3-starter: {e}");
        std::process::exit(2);
    });
    if let Err(e) = run(config) {
        eprintln!("stage3-starter: {e}");
        std::process::exit(1);
    }
}

fn run(config: Config) -> io::Result<()> {
    let listener = TcpListener::bind(&config.addr)?;
    let addr = listener.local_addr()?;
    println!("listening on {addr}");
    io::stdout().flush()?;
    let shared = Shared { root: config.root };

    // STEP 3: the signal thread. `signal_hook::iterator::Signals` for
    // SIGTERM and SIGINT; on the first one, raise the shutdown flag and
    // wake the acceptor, asleep in accept(): connect to `addr` once.

    // STEP 1: the pool. A bounded queue, `crossbeam_channel::bounded(
    // config.queue_depth)`, and `config.threads` threads that each run
    // `worker` on a clone of its receiving end (put `shared` in an `Arc`).
    // Give the sending end to `accept_loop`.

    accept_loop(&listener, &shared);

    // STEP 3: shut down. Drop the listener (new clients are refused) and
    // the sending end (the queue closes: a worker's `recv` fails once it
    // is empty), then wait for the workers (`JoinHandle::is_finished`)
    // for at most `config.grace_period`, and return.
    Ok(())
}

/// The acceptor. For now it serves each connection itself, to its end,
/// before it accepts the next one: one client at a time.
fn accept_loop(listener: &TcpListener, shared: &Shared) {
    for stream in listener.incoming() {
        // STEP 3: once the server is stopping, leave the loop.
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE), the same accept fails again
                // at once: pause instead of spinning at 100% CPU.
                eprintln!("accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
        };
        // STEP 1: hand the connection to the workers with `try_send`,
        // which never waits. When the queue is full, write
        // `http::error_response(503)` and close the connection.
        let _ = serve_connection(stream, shared);
    }
}

/// A worker: serves the connections from the queue one after the other,
/// until the queue is closed and empty.
#[allow(dead_code, unused_variables)] // until STEP 1
fn worker(jobs: &Receiver<TcpStream>, shared: &Shared) {
    // STEP 1: take each connection out of the queue and serve it with
    // `serve_connection` (a `&Receiver` is an iterator: `for stream in
    // jobs` ends when the queue is closed and empty). An error ends that
    // connection only.
}

/// Serves one connection to its end: reads requests and answers each one
/// as `http::decide` says, until the client closes or asks to close.
fn serve_connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match http::decide(&buf, &shared.root) {
            http::Decision::Respond {
                consumed,
                response,
                close,
            } => {
                stream.write_all(&response)?;
                buf.drain(..consumed);
                // STEP 3: return as well when the server is stopping: this
                // answer is whole, the next one is not started.
                if close {
                    return Ok(());
                }
            }
            http::Decision::NeedMore => {
                // STEP 2: never wait for ever (pass the worker's `jobs` in).
                // - Read with `set_read_timeout`, at most ~20 ms at a time,
                //   so that the worker looks up often; a timeout is
                //   `WouldBlock` or `TimedOut`: no error, read again.
                // - On a timeout, an idle keep-alive connection (answered at
                //   least once, nothing read since) gives its worker up if
                //   others wait in the queue (`!jobs.is_empty()`).
                // - The next request head must be whole within
                //   `--header-timeout` of the last answer (or of the start):
                //   past that, answer `http::error_response(408)` if part of
                //   one came, or close quietly if nothing came.
                // - And `set_write_timeout`, for a client that stops reading.
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}
