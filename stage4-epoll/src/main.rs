//! `stage4-epoll`: the event-loop HTTP/1.1 server's binary. See the
//! library's docs for what the stage teaches; this file only wires the
//! command line, the listeners, the loops and the shutdown together.

use clap::Parser;
use common::limits::set_fd_limit;
use common::server::{HttpConfig, announce, fatal};
use serde::{Deserialize, Serialize};
use stage4_epoll::proxy::ProxyConfig;
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

    /// Forward requests to this upstream server (a reverse proxy on the
    /// same event loops), as http://HOST:PORT.
    #[arg(long, value_name = "URL")]
    proxy_pass: Option<String>,

    /// With --proxy-pass, forward only paths that start with PREFIX (e.g.
    /// /app/) and serve the rest from --root; without it, forward everything.
    #[arg(long, value_name = "PREFIX", requires = "proxy_pass")]
    proxy_prefix: Option<String>,

    /// Seconds the upstream may take to answer, or pause in an answer:
    /// then the client gets 504 Gateway Timeout (or, mid-answer, a close).
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    proxy_timeout: f64,

    /// Idle upstream connections each event loop keeps open for reuse.
    #[arg(long, value_name = "N", default_value_t = 16)]
    proxy_keepalive: usize,
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
    let redirect = common::redirect::Redirect::bind(&args.http, addr).unwrap_or_else(|e| fatal(&e));
    let proxying = args.proxy_pass.is_some();
    let status = common::stats::page(Some(Box::new(move |out: &mut String| {
        stage4_epoll::render_stats(out);
        if proxying {
            stage4_epoll::proxy::render_stats(out);
        }
    })));
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
        tls: server.tls.clone(),
    };
    if server.tls.is_some() && args.proxy_pass.is_some() {
        // The exchange relays the client's socket directly; through TLS it
        // would need the same adapter on both of its sides.
        fatal(&"--proxy-pass does not go with --tls-cert yet");
    }
    let proxy = args.proxy_pass.as_deref().map(|pass| {
        let timeout = std::time::Duration::try_from_secs_f64(args.proxy_timeout)
            .unwrap_or_else(|e| fatal(&format!("--proxy-timeout: {e}")));
        let config = ProxyConfig::new(
            pass,
            args.proxy_prefix.as_deref(),
            timeout,
            args.proxy_keepalive,
        )
        .unwrap_or_else(|e| fatal(&e));
        log::info!(
            "proxying {} to http://{} ({})",
            config.prefix.as_deref().unwrap_or("every request"),
            config.upstream,
            config.authority
        );
        std::sync::Arc::new(config)
    });
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
        proxy,
        &server.signals,
        || {
            announce(addr);
            common::redirect::start_or_exit(redirect, server.timeouts.header);
        },
        reload,
    ) {
        log::error!("{e}");
    }
    log::info!("shut down");
    // Dropping the logs flushes the access log before the process exits.
    drop(server);
}
