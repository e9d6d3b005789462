//! `stage4-epoll`: the event-loop HTTP/1.1 server's binary. See the
//! library's docs for what the stage teaches; this file only wires the
//! command line, the listeners, the loops and the shutdown together.

use clap::Parser;
use common::limits::set_fd_limit;
use common::server::{HttpConfig, announce, fatal};
use serde::{Deserialize, Serialize};
use stage4_epoll::{LoopConfig, bind_reuseport, serve};

/// An HTTP/1.1 static-file server on mio event loops (epoll): one thread
/// serves many connections.
#[derive(Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    http: HttpConfig,

    /// Event loops (threads), each with its own SO_REUSEPORT listener.
    #[arg(long, value_name = "N", default_value_t = 1)]
    loops: usize,

    /// Connections one event loop holds at most; at the limit it stops
    /// accepting until one closes (new clients wait in the kernel's queue).
    #[arg(long, value_name = "N", default_value_t = 65536)]
    max_connections: usize,
}

fn main() {
    let args: Args = common::config::load_or_exit();
    if args.loops == 0 || args.max_connections == 0 {
        fatal(&"--loops and --max-connections must be at least 1");
    }
    let want = (args.http.max_fds > 0).then_some(args.http.max_fds);
    let fd_limit = set_fd_limit(want).unwrap_or_else(|e| fatal(&format!("RLIMIT_NOFILE: {e}")));
    // Bind first, while still root if --user is given: start_or_exit
    // drops privileges.
    let listeners = bind_reuseport(args.http.addr, args.loops, args.http.backlog)
        .unwrap_or_else(|e| fatal(&format!("cannot listen on {}: {e}", args.http.addr)));
    let addr = listeners[0].local_addr().unwrap_or_else(|e| fatal(&e));
    let status = common::stats::page(Some(Box::new(stage4_epoll::render_stats)));
    let server = args.http.start_or_exit(env!("CARGO_PKG_NAME"), status);
    log::info!(
        "{} event loop(s), up to {} connections each, {fd_limit} file descriptors",
        args.loops,
        args.max_connections
    );
    let config = LoopConfig {
        site: server.site.clone(),
        timeouts: server.timeouts,
        max_connections: args.max_connections,
    };
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let logs = server.logs.control();
    let (mut running, mut site) = (args.clone(), server.site.clone());
    let reload = || {
        let (new, fresh, timeouts) =
            common::server::reload(&argv, &running, |a: &Args| &a.http, &site, &logs)?;
        (running, site) = (new, std::sync::Arc::new(fresh));
        Some((std::sync::Arc::clone(&site), timeouts))
    };
    if let Err(e) = serve(
        listeners,
        &config,
        &server.signals,
        || announce(addr),
        reload,
    ) {
        log::error!("{e}");
    }
    log::info!("shut down");
    // Dropping the logs flushes the access log before the process exits.
    drop(server);
}
