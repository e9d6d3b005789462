//! `stage3-threadpool`: the thread-pool HTTP/1.1 server's binary. See the
//! library's docs for what the stage teaches; this file wires the command
//! line, the pool, the poller (or the classic acceptor) and the shutdown
//! together.
//!
//! The shutdown order is the lesson of `Drop` in miniature: stop accepting
//! (the poller or acceptor loop returns), close the queue (drop its
//! producer), let the workers drain it within the grace period, log the
//! stats, flush the logs.

use std::sync::Arc;

use clap::{ArgAction, Parser, ValueEnum};
use common::server::{HttpConfig, Server, announce, fatal};
use serde::{Deserialize, Serialize};
use stage1_echo::cli::{Mode, RoomConfig};
use stage1_echo::room::Room;
use stage3_threadpool::line::LineRoom;
use stage3_threadpool::poller::{Parked, Poller, resume};
use stage3_threadpool::pool::{PoolConfig, ThreadPool};
use stage3_threadpool::queue::QueueKind;
use stage3_threadpool::stats::Stats;
use stage3_threadpool::{Context, IdleModel, run, serve};

/// What the workers speak.
#[derive(ValueEnum, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Protocol {
    /// HTTP/1.1, the static-file server.
    Http,
    /// Stage 1's line protocol (and chat), one client per worker.
    Line,
}

/// Workers per core when `--threads` is 0.
const THREADS_PER_CORE: usize = 4;

/// An HTTP/1.1 static-file server: a poller thread that holds every
/// connection with nothing to read, and a self-sizing pool of worker
/// threads fed through a bounded queue.
#[derive(Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    http: HttpConfig,

    /// Where connections with nothing to read wait: in one poller thread
    /// (workers only serve bytes that are there), or classic: on their
    /// worker, which owns a connection from accept to close. With
    /// --tls-cert (and --protocol line) always classic.
    #[arg(long, value_enum, value_name = "MODEL", default_value_t = IdleModel::Poller)]
    idle: IdleModel,

    /// Worker threads, both the minimum and the maximum unless
    /// --min-threads or --max-threads say otherwise. 0 picks 4 per core
    /// (workers mostly wait on sockets, not on the CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    threads: usize,

    /// Workers kept however idle the pool is (unset: the --threads value,
    /// or --max-threads if lower).
    #[arg(long, value_name = "N")]
    min_threads: Option<usize>,

    /// Workers never exceeded: one is added when connections wait in the
    /// queue longer than 10 ms (unset: the --threads value, or
    /// --min-threads if higher).
    #[arg(long, value_name = "N")]
    max_threads: Option<usize>,

    /// Seconds (fractions allowed) a worker waits for work before it
    /// exits, while the pool is above --min-threads.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    thread_idle_timeout: f64,

    /// Poller model: seconds (fractions allowed) a worker waits for a
    /// keep-alive connection's next request before handing it back to the
    /// poller; it does not wait while others wait for a worker. 0: never.
    #[arg(long, value_name = "SECS", default_value_t = 0.002)]
    worker_wait: f64,

    /// The queue between the acceptor and the workers: the hand-written
    /// Mutex<VecDeque> + Condvar one, or crossbeam-channel.
    #[arg(long, value_enum, value_name = "KIND", default_value_t = QueueKind::Mutex)]
    queue: QueueKind,

    /// Accepted connections that may wait for a worker; when that many
    /// wait, the next one is answered 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    queue_depth: usize,

    /// Seconds in the Retry-After header of a 503.
    #[arg(long, value_name = "SECS", default_value_t = 1)]
    retry_after: u32,

    /// Classic model: while connections wait for a worker, end keep-alive
    /// after the current response and close idle keep-alive connections.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = ArgAction::Set)]
    fair: bool,

    /// What the workers speak: HTTP/1.1, or stage 1's line protocol
    /// (PING, ECHO, ADD, STATS, QUIT; --mode chat for the chat room), with
    /// stage 1's settings below.
    #[arg(long, value_enum, value_name = "PROTOCOL", default_value_t = Protocol::Http)]
    protocol: Protocol,

    #[command(flatten)]
    #[serde(flatten)]
    line: RoomConfig,

    /// Testing only: a worker panics when this path is requested.
    #[arg(long, value_name = "PATH", hide = true)]
    panic_path: Option<String>,
}

fn main() {
    let mut args: Args = common::config::load_or_exit();
    // As parsed, before the defaults below are filled in: what a reload
    // compares the re-read file with.
    let as_parsed = args.clone();
    if args.threads == 0 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        args.threads = THREADS_PER_CORE * cores;
    }
    if args.queue_depth == 0 {
        fatal(&"--queue-depth must be at least 1");
    }
    let (min_threads, max_threads) = pool_size(&args).unwrap_or_else(|e| fatal(&e));
    let idle_timeout =
        common::server::secs_or_zero("--thread-idle-timeout", args.thread_idle_timeout)
            .unwrap_or_else(|e| fatal(&e));
    let worker_wait = common::server::secs_or_zero("--worker-wait", args.worker_wait)
        .unwrap_or_else(|e| fatal(&e));
    // The line protocol's sessions are stateful conversations: they keep
    // the classic model.
    // So does TLS: the poller parks plain sockets, and a TLS session's
    // state would have to be parked with it; a worker keeps it on its stack.
    let idle = match args.protocol {
        Protocol::Http if args.http.tls_cert.is_some() => IdleModel::Classic,
        Protocol::Http => args.idle,
        Protocol::Line => IdleModel::Classic,
    };
    let line = match args.protocol {
        Protocol::Http => None,
        Protocol::Line => {
            let limits = args.line.limits().unwrap_or_else(|e| fatal(&e));
            Some(LineRoom {
                room: std::sync::Mutex::new(Room::new(limits, std::time::Instant::now())),
                chat: args.line.mode == Mode::Chat,
            })
        }
    };
    let stats = Arc::new(Stats::default());
    let status = {
        let stats = Arc::clone(&stats);
        common::stats::page(Some(Box::new(move |out: &mut String| stats.render(out))))
    };
    // Raises the open-files limit, binds, and sets --backlog: first, while
    // still root if --user is given (start_or_exit drops privileges).
    let listener = common::server::listen(&args.http).unwrap_or_else(|e| fatal(&e));
    let addr = listener.local_addr().unwrap_or_else(|e| fatal(&e));
    let redirect = common::redirect::Redirect::bind(&args.http, addr).unwrap_or_else(|e| fatal(&e));
    let Server {
        site,
        signals,
        logs,
        timeouts,
        tls,
    } = args.http.start_or_exit(env!("CARGO_PKG_NAME"), status);
    if tls.is_some() && line.is_some() {
        fatal(&"--tls-cert: stage 3 serves TLS for HTTP, not --protocol line");
    }

    // SIGHUP: the acceptor (or the poller) re-reads the command line and
    // its --config file, and the next connections get what it says now.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let running = std::sync::Mutex::new((as_parsed, Arc::clone(&site)));
    let log_control = logs.control();
    let reload = move || {
        let mut now = running.lock().unwrap_or_else(|e| e.into_inner());
        let (new, fresh, timeouts) =
            common::server::reload(&argv, &now.0, |a: &Args| &a.http, &now.1, &log_control)?;
        let fresh = Arc::new(fresh);
        *now = (new, Arc::clone(&fresh));
        Some((fresh, timeouts))
    };
    let ctx = Arc::new(Context {
        live: common::server::Live::new(site, timeouts),
        reload: Box::new(reload),
        signals: Arc::new(signals),
        stats: Arc::clone(&stats),
        fair: args.fair,
        worker_wait,
        retry_after: args.retry_after,
        panic_path: args.panic_path,
        line,
        tls,
    });
    let config = PoolConfig {
        min_threads,
        max_threads,
        idle_timeout,
        queue: args.queue,
        depth: args.queue_depth,
    };
    log::info!(
        "{} model, {min_threads}..={max_threads} workers, {} queue of {}",
        match idle {
            IdleModel::Poller => "poller",
            IdleModel::Classic => "classic",
        },
        args.queue.name(),
        args.queue_depth
    );
    let finished = match idle {
        IdleModel::Classic => {
            let worker_ctx = Arc::clone(&ctx);
            let pool = ThreadPool::new(config, Arc::clone(&stats), move |c| serve(c, &worker_ctx))
                .unwrap_or_else(|e| fatal(&format!("cannot start the workers: {e}")));
            if ctx.line.is_some() {
                // Not a URL: the line protocol is spoken with `nc`, not a browser.
                println!("listening on {addr}");
            } else {
                announce(addr);
                common::redirect::start_or_exit(redirect, timeouts.header);
            }
            if let Err(e) = run(&listener, &pool, &ctx) {
                log::error!("accept loop: {e}");
            }
            // Stop accepting: connections not yet accepted are refused from now on.
            drop(listener);
            pool.shutdown(timeouts.grace)
        }
        IdleModel::Poller => {
            let poller = Poller::new(listener, &ctx)
                .unwrap_or_else(|e| fatal(&format!("cannot start the poller: {e}")));
            let inbox = poller.inbox();
            let worker_ctx = Arc::clone(&ctx);
            let pool: ThreadPool<Box<Parked>> =
                ThreadPool::new(config, Arc::clone(&stats), move |p| {
                    resume(p, &worker_ctx, &inbox);
                })
                .unwrap_or_else(|e| fatal(&format!("cannot start the workers: {e}")));
            announce(addr);
            // (--tls-redirect needs --tls-cert, which is classic only.)
            drop(redirect);
            // Returns once the shutdown is over: the listener closed, and
            // every connection finished (or the grace period passed).
            if let Err(e) = poller.run(&pool, &ctx) {
                log::error!("poller: {e}");
            }
            pool.shutdown(timeouts.grace)
        }
    };
    if !finished {
        log::warn!("exiting with work unfinished");
    }
    log::info!("stats: {stats}");
    log::info!("shut down");
    // Dropping the logs flushes the access log before the process exits.
    drop(logs);
}

/// `--min-threads` and `--max-threads`, each defaulting to `--threads`.
fn pool_size(args: &Args) -> Result<(usize, usize), String> {
    let min = args.min_threads.unwrap_or_else(|| {
        args.max_threads
            .map_or(args.threads, |max| args.threads.min(max))
    });
    let max = args.max_threads.unwrap_or(args.threads.max(min));
    if min == 0 {
        return Err("--min-threads must be at least 1".into());
    }
    if max < min {
        return Err(format!(
            "--max-threads ({max}) must be at least --min-threads ({min})"
        ));
    }
    Ok((min, max))
}
