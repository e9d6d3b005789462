//! Stage 5 starter: a prefork server. A master process binds the port,
//! forks worker processes, accepts every connection and passes it to a
//! worker over a Unix socket pair (`SCM_RIGHTS`); it replaces a worker that
//! dies, replaces them all on SIGHUP without losing a request, and drains
//! them on SIGTERM. Each worker runs the event loop of `worker.rs`.
//!
//! ```text
//! stage5-starter --addr 127.0.0.1:8080 --root www [--workers 2]
//!     [--header-timeout 10] [--grace-period 10] [--max-connections N]
//! ```

mod fdpass;
// Given, byte for byte the same in the stage 3, 4 and 5 starters.
mod http;
#[allow(dead_code)] // the master's skeleton: STEP 1 puts it to work
mod master;
mod worker;

use std::io::{self, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use worker::Feed;

/// The command line.
struct Args {
    addr: String,
    root: PathBuf,
    /// Worker processes; 0 runs no master (one process serves the port).
    workers: usize,
    header_timeout: Duration,
    grace_period: Duration,
    /// Connections one worker holds at most; more get 503.
    max_connections: usize,
}

/// The soft limit on open files (`ulimit -n`), from `/proc/self/limits`.
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: "127.0.0.1:8080".into(),
        root: ".".into(),
        workers: 2,
        header_timeout: Duration::from_secs(10),
        grace_period: Duration::from_secs(10),
        // A connection is a descriptor: leave a few for everything else.
        max_connections: open_files_limit().map_or(1000, |n| n.saturating_sub(64)),
    };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => args.addr = value()?,
            "--root" => args.root = value()?.into(),
            "--workers" => args.workers = number(&flag, value()?)?,
            "--header-timeout" => args.header_timeout = seconds(&flag, value()?)?,
            "--grace-period" => args.grace_period = seconds(&flag, value()?)?,
            "--max-connections" => args.max_connections = number(&flag, value()?)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    Ok(args)
}

fn number(flag: &str, value: String) -> Result<usize, String> {
    value.parse().map_err(|e| format!("{flag} {value}: {e}"))
}

fn seconds(flag: &str, value: String) -> Result<Duration, String> {
    Ok(Duration::from_secs(number(flag, value)? as u64))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(&args.addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: binding {}: {e}", args.addr);
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => println!("listening on {addr}"),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    // Before any fork: a child would inherit unwritten output, and print it again.
    let _ = io::stdout().flush();
    match serve(listener, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn serve(listener: TcpListener, args: Args) -> io::Result<()> {
    let cfg = worker::Config {
        root: args.root,
        header_timeout: args.header_timeout,
        grace_period: args.grace_period,
        max_connections: args.max_connections,
    };
    // STEP 1: with --workers N (N > 0), become the master of N workers:
    //     return master::Master::start(listener, args.workers, cfg)?.serve();
    // Keep what follows for --workers 0: no master, like nginx's
    // `master_process off` (handy to debug the worker's loop).
    if args.workers > 0 {
        eprintln!(
            "--workers {}: not yet (STEP 1); this one process serves the port",
            args.workers
        );
    }
    let stop = master::stop_on_sigterm()?;
    worker::run(Feed::Listener(listener), &cfg, &stop)
}
