//! `stage2-http-seq`: the sequential HTTP/1.1 server's binary. See the
//! library's docs for what the stage teaches; this file only wires the
//! command line, the listener and the shutdown together.

use clap::Parser;
use common::redirect::Redirect;
use common::server::{HttpConfig, announce, fatal};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use stage2_http_seq::{Exit, Options, run};

/// A sequential HTTP/1.1 static-file server: one connection at a time.
#[derive(Parser, Serialize, Deserialize, Debug)]
#[command(version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    http: HttpConfig,
}

fn main() {
    let args: Args = common::config::load_or_exit();
    // The status page shows the common counters; stage 2 has no others.
    let status = common::stats::page(None);
    // Bind first, while still root if --user is given: start_or_exit
    // drops privileges.
    let listener = common::server::listen(&args.http).unwrap_or_else(|e| fatal(&e));
    let addr = listener.local_addr().unwrap_or_else(|e| fatal(&e));
    let redirect = Redirect::bind(&args.http, addr).unwrap_or_else(|e| fatal(&e));
    let server = args.http.start_or_exit(env!("CARGO_PKG_NAME"), status);
    announce(addr);
    common::redirect::start_or_exit(redirect, server.timeouts.header);
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let logs = server.logs.control();
    let (mut args, mut site, mut timeouts) = (args, Arc::clone(&server.site), server.timeouts);
    loop {
        let opts = Options {
            site: &site,
            timeouts,
            signals: &server.signals,
            tls: server.tls.as_ref(),
        };
        match run(&listener, &opts) {
            Ok(Exit::Shutdown) => break,
            // SIGHUP: the next connection is served with what the file
            // says now (or, if it does not parse, with what runs).
            Ok(Exit::Reload) => {
                if let Some((new, fresh, t)) =
                    common::server::reload(&argv, &args, |a: &Args| &a.http, &site, &logs)
                {
                    (args, site, timeouts) = (new, Arc::new(fresh), t);
                }
            }
            Err(e) => {
                log::error!("accept loop: {e}");
                break;
            }
        }
    }
    log::info!("shut down");
    // Dropping the logs flushes the access log before the process exits.
    drop(server);
}
