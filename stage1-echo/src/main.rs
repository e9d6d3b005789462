//! Stage 1: a TCP echo and chat server — first blocking, then `select(2)`,
//! `poll(2)` and `epoll(7)`.
//!
//! The first program of the course, before any HTTP. It teaches what every
//! later stage takes for granted:
//!
//! - the socket API: `socket`, `setsockopt(SO_REUSEADDR)`, `bind`, `listen`,
//!   `accept`, `read`, `write`, `shutdown`, `close`;
//! - robust I/O: a `read` returns *some* bytes — half a line, or three lines —
//!   and a `write` may take only part of what it is given;
//! - I/O multiplexing: one thread serving many clients with `select(2)`,
//!   `poll(2)` or `epoll(7)` (level- or edge-triggered), where no client that
//!   stops reading can stall the others;
//! - framing: text lines versus length-prefixed protobuf frames;
//! - clean shutdown: SIGINT/SIGTERM send everyone a `BYE` line, exit 0.
//!
//! Start it with `cargo run -p stage1-echo` and talk to it with
//! `nc 127.0.0.1 7878`; `--model blocking` shows the first version,
//! `--mode chat` turns it into a chat room, `--framing protobuf` switches
//! the wire format (try it with `stage1-echo client`).
//!
//! # Layout
//!
//! - `cli.rs`: the flags (and `--config` file keys), with their defaults.
//! - `protocol.rs`: sans-IO line splitting, command parsing, text replies.
//! - `framing.rs`: sans-IO protobuf frames: varint length, `prost` messages.
//! - `room.rs`: sans-IO server state: each client's input and output
//!   buffers, the chat room, backpressure, counters.
//! - `net.rs`: opening the listening socket, one system call at a time.
//! - `blocking.rs`: model 1, one client at a time.
//! - `event_loop.rs`: models 2–4, one thread, every client, non-blocking;
//!   `readiness.rs`: the three ways it waits (`select`, `poll`, `epoll`).
//! - `client.rs`: `stage1-echo client`, to talk protobuf.
//!
//! The models only move bytes between sockets and a `Room`; everything that
//! decides what to answer is in the sans-IO modules and unit-tested there.
//!
//! # What it cannot do
//!
//! Not for production. `select` and `poll` hand the kernel the whole list of
//! sockets on every call and the loop walks all of them after each wake-up:
//! O(clients) work per event, fine for hundreds, not for tens of thousands;
//! `select` cannot watch a descriptor numbered 1024 or more at all. `epoll`
//! removes the kernel's share of that work, but this loop still builds its
//! interest list every turn (stage 4 keeps per-connection state instead).
//! One thread means one core. The blocking model serves one
//! client at a time and a client that never reads stalls it. There is no
//! TLS, no authentication, and chat names are first come, first served.

mod blocking;
mod cli;
mod client;
mod event_loop;
mod framing;
mod net;
mod protocol;
mod readiness;
mod room;

use std::io::Write;
use std::process::ExitCode;

use cli::{Config, LogLevel, Model};
use common::signals::Signals;
use event_loop::EdgeRules;
use readiness::{EpollWaiter, Poll, Select};
use room::Limits;

fn main() -> ExitCode {
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some("client") {
        let rest = std::iter::once("stage1-echo client".to_string()).chain(args);
        return match client::main(rest) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("client: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config: Config = common::config::load_or_exit();
    if let Err(e) = config.validate() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    StderrLogger::install(config.log_level);
    match serve(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

// ANCHOR: serve
/// Opens the listener, announces it, and runs the chosen model until a
/// signal stops it.
fn serve(config: &Config) -> std::io::Result<()> {
    // Handlers first, so that a signal during startup is not lost.
    let signals = Signals::install()?;
    let listener = net::open_listener(config.addr).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.addr))
    })?;
    let limits = Limits {
        mode: config.mode,
        framing: config.framing,
        max_line: config.max_line,
        max_clients: config.max_clients,
        max_pending: config.max_pending,
        idle_timeout: config.idle_timeout().map_err(std::io::Error::other)?,
    };
    // The contract: exactly this line on stdout, flushed, once accepting.
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    let name = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
    log::info!(
        "model={}{} mode={} framing={}",
        name(&config.model),
        if config.edge { " (edge-triggered)" } else { "" },
        name(&config.mode),
        name(&config.framing)
    );
    let rules = if config.edge_read_once {
        EdgeRules::Ignore
    } else {
        EdgeRules::Keep
    };
    match config.model {
        Model::Blocking => blocking::run(listener, limits, &signals)?,
        Model::Select => event_loop::run(listener, limits, &signals, &mut Select, rules)?,
        Model::Poll => event_loop::run(listener, limits, &signals, &mut Poll, rules)?,
        Model::Epoll => {
            let mut epoll = EpollWaiter::new(config.edge, event_loop::OWN_KEYS)?;
            event_loop::run(listener, limits, &signals, &mut epoll, rules)?;
        }
    }
    log::info!("shut down cleanly");
    Ok(())
}
// ANCHOR_END: serve

/// The smallest useful `log` backend: one line per record on stderr.
struct StderrLogger;

impl StderrLogger {
    /// Routes the `log` macros to stderr at `level` and above.
    fn install(level: LogLevel) {
        static LOGGER: StderrLogger = StderrLogger;
        // Fails only if a logger is already set, and main sets it once.
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(match level {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
        });
    }
}

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("stage1-echo: {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}
