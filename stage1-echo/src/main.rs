//! `stage1-echo`: the binary. The server is the library (`src/lib.rs`,
//! where the course's reading order starts); this file wires the command
//! line, the logger and the chosen model together, and `stage1-echo
//! client` runs the bundled client.

use std::io::Write;
use std::process::ExitCode;

use common::signals::Signals;
use stage1_echo::cli::{Config, LogLevel, Model};
use stage1_echo::event_loop::{self, EdgeRules};
use stage1_echo::readiness::{EpollWaiter, Poll, Select, Waiter};
use stage1_echo::{blocking, client, net};

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
    let limits = config.room.limits().map_err(std::io::Error::other)?;
    // The same TLS layer as the HTTP stages' (common::tls), with no ALPN.
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(common::tls::server_config(cert, key, &[])?),
        _ => None,
    };
    // Everything that needs a descriptor exists before the announcement:
    // from then on a test may take the rest away (`prlimit`), and an epoll
    // instance created after it could fail with EMFILE.
    let mut waiter: Option<Box<dyn Waiter>> = match config.model {
        Model::Blocking => None,
        Model::Select => Some(Box::new(Select)),
        Model::Poll => Some(Box::new(Poll)),
        Model::Epoll => Some(Box::new(EpollWaiter::new(
            config.edge,
            event_loop::OWN_KEYS,
        )?)),
    };
    // The contract: exactly this line on stdout, flushed, once accepting.
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    let name = |v: &dyn std::fmt::Debug| format!("{v:?}").to_lowercase();
    log::info!(
        "model={}{} mode={} framing={}{}",
        name(&config.model),
        if config.edge { " (edge-triggered)" } else { "" },
        name(&config.room.mode),
        name(&config.room.framing),
        if tls.is_some() { " tls" } else { "" }
    );
    let rules = if config.edge_read_once {
        EdgeRules::Ignore
    } else {
        EdgeRules::Keep
    };
    match waiter.as_deref_mut() {
        None => blocking::run(listener, limits, &signals)?,
        Some(waiter) => event_loop::run(listener, limits, &signals, waiter, rules, tls.as_ref())?,
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
