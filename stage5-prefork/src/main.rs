//! Stage 5: the prefork server — an nginx-style master and worker processes.
//!
//! **What this stage demonstrates.** Processes instead of threads. The
//! master parses the configuration, binds the listening socket (as root if
//! the port needs it), installs its signal handlers and maps a shared-memory
//! scoreboard — and only then forks `--workers N` worker processes, before
//! it has started any thread. It then accepts connections itself and hands
//! each one to a worker over a Unix socket pair with `SCM_RIGHTS`
//! (`--accept pass`), or lets the workers accept on the inherited listener
//! themselves (`--accept shared`, what nginx does). Each worker runs stage
//! 4's event loop. The master supervises: a worker that dies is replaced,
//! SIGHUP re-reads the configuration and rolls the workers one by one,
//! `--max-requests-per-worker` recycles them, SIGUSR1 reopens the logs,
//! SIGTERM stops everything gracefully.
//!
//! **What changed since stage 4.** The event loop is the same library;
//! what is new is everything around it: `fork`, descriptor passing, memory
//! shared between processes, supervision and a signal protocol. A crash in
//! one worker costs the connections that worker held, never the server.
//!
//! **What it cannot do.** Share anything between workers except the
//! scoreboard: each worker has its own file descriptors and its own logs
//! buffer. There is no zero-downtime binary upgrade (nginx's `USR2`), and a
//! reload cannot change the address, the accept model, `--user` or
//! `--chroot` (the master holds them).
//!
//! # Layout
//! - `master/`: the master, by concern: `mod.rs` (the loop, signals, stop),
//!   `dispatch.rs` (accept and pass, or 503), `supervise.rs` (fork, reap
//!   and respawn, reload, recycle), `pool.rs` (the self-sizing pool).
//! - `worker.rs`: what a forked child does: stage 4's event loop, fed by
//!   the channel its connections arrive on (a `ConnectionSource`).
//! - `fdpass.rs`: `SCM_RIGHTS` send and receive.
//! - `scoreboard.rs`: the `MAP_SHARED` scoreboard and `/server-status`.
//! - `cli.rs`: the flags.

mod cli;
mod fdpass;
mod master;
mod scoreboard;
mod worker;

use common::server::{announce, fatal};

use crate::cli::{AcceptModel, Args};
use crate::master::Master;

/// The `Server` header and the log name.
pub const NAME: &str = env!("CARGO_PKG_NAME");

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let args: Args = common::config::load_or_exit();
    // The master logs without a writer thread: it must stay single-threaded
    // to fork safely.
    let log_settings = args.http.log_settings().unwrap_or_else(|e| fatal(&e));
    common::logging::init_error_log(&log_settings).unwrap_or_else(|e| fatal(&e));
    master::check(&args).unwrap_or_else(|e| fatal(&e));
    // An unknown --user stops the start now, not later in every worker
    // (each worker drops privileges itself, in start_with_status).
    let target = common::privs::resolve(args.http.user.as_deref(), args.http.group.as_deref())
        .unwrap_or_else(|e| fatal(&e));
    if target.is_none() && nix::unistd::geteuid().is_root() {
        log::warn!("running as root without --user: the workers will run as root too");
    }
    // Bind first, while we may still be root (and raise the open-files
    // limit, which the workers inherit).
    let listener = common::server::listen(&args.http).unwrap_or_else(|e| fatal(&e));
    let addr = listener.local_addr().unwrap_or_else(|e| fatal(&e));
    // The redirect port, bound here too; the workers serve it.
    let redirect = common::redirect::Redirect::bind(&args.http, addr).unwrap_or_else(|e| fatal(&e));
    let signals = common::signals::Signals::install().unwrap_or_else(|e| fatal(&e));
    let mut master =
        Master::new(argv, args.clone(), listener, redirect, signals).unwrap_or_else(|e| fatal(&e));
    if let Err(e) = master.start_workers() {
        fatal(&format!("starting the workers: {e}"));
    }
    let model = match args.accept {
        AcceptModel::Pass => "pass",
        AcceptModel::Shared => "shared",
    };
    let pool = match args.sizing() {
        Some(s) => format!(
            "{} workers (self-sizing: {}–{}, {}–{} spare)",
            args.worker_count(),
            s.min_workers,
            s.max_workers,
            s.min_spare,
            s.max_spare
        ),
        None => format!("{} workers", args.worker_count()),
    };
    log::info!(
        "{NAME}: {pool}, accept model {model}, serving {}",
        args.http.root.display()
    );
    if args.accept == AcceptModel::Shared && args.balance != cli::Balance::RoundRobin {
        log::warn!("--balance applies to --accept pass only; the kernel balances --accept shared");
    }
    announce(addr);
    master.announce_redirect();
    match master.run() {
        Ok(()) => log::info!("shut down"),
        Err(e) => {
            log::error!("{e}");
            std::process::exit(1);
        }
    }
}
