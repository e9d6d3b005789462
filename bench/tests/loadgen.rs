//! The load generator against a real server: stage 2, served in-process by
//! its library on port 0. These tests check that the generator counts what
//! happened; they never assert how fast anything was.

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bench::loadgen::{self, Control, Mode, Spec};
use common::http::Site;
use common::logging::AccessLog;
use common::server::{DEFAULT_ROOT, Timeouts};
use common::signals::Signals;
use stage2_http_seq::{Options, run};

/// One test function, because the server installs process-wide signal
/// handlers once. Each block is one behaviour.
#[test]
fn load_generator_against_stage2() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let addr = listener.local_addr().expect("local address");
    let signals = Signals::install().expect("signal handlers");
    let site = Site::new(
        Path::new(DEFAULT_ROOT),
        "stage2-http-seq",
        None,
        AccessLog::disabled(),
    )
    .expect("the bundled site");
    let timeouts = Timeouts {
        header: Duration::from_secs(10),
        keepalive: Duration::from_secs(5),
        send: Duration::from_secs(10),
        grace: Duration::from_secs(1),
        last_request: Duration::from_secs(1),
    };
    std::thread::scope(|s| {
        let opts = Options {
            site: &site,
            timeouts,
            signals: &signals,
            tls: None,
        };
        let server = s.spawn(move || run(&listener, &opts));

        // Closed loop, one keep-alive connection, about a second: requests
        // complete, none fails, every latency is recorded.
        let spec = Spec::get(addr, "/index.html", 1, Duration::from_secs(1));
        let o = loadgen::run(&spec, &Arc::new(Control::default())).expect("closed loop");
        assert!(o.requests > 0, "no request completed");
        assert_eq!(o.errors.total(), 0, "{:?}", o.errors);
        assert_eq!(o.non_2xx, 0);
        assert_eq!(o.latency.len(), o.requests);
        assert_eq!(o.body_bytes, o.requests * 1520, "index.html is 1520 bytes");

        // One connection per request: each response ends with a close by
        // the client, and still nothing is counted as an error.
        let mut spec = Spec::get(addr, "/index.html", 2, Duration::from_millis(300));
        spec.mode = Mode::ConnPerRequest;
        let o = loadgen::run(&spec, &Arc::new(Control::default())).expect("conn per request");
        assert!(o.requests > 0);
        assert_eq!(o.errors.total(), 0, "{:?}", o.errors);

        // Pipelining: four requests in flight on one connection, answered
        // in order.
        let mut spec = Spec::get(addr, "/index.html", 1, Duration::from_millis(300));
        spec.mode = Mode::Closed { pipeline: 4 };
        let o = loadgen::run(&spec, &Arc::new(Control::default())).expect("pipelined");
        assert!(o.requests > 0);
        assert_eq!(o.errors.total(), 0, "{:?}", o.errors);

        // A missing file is counted as non-2xx, not as an error.
        let spec = Spec::get(addr, "/no-such-file", 1, Duration::from_millis(200));
        let o = loadgen::run(&spec, &Arc::new(Control::default())).expect("404s");
        assert!(o.requests > 0);
        assert_eq!(o.non_2xx, o.requests);

        // Stage 2 serves one connection at a time: with four keep-alive
        // connections, one is served and three starve. The per-connection
        // counts show it.
        let mut spec = Spec::get(addr, "/index.html", 4, Duration::from_millis(500));
        spec.mode = Mode::Closed { pipeline: 1 };
        let o = loadgen::run(&spec, &Arc::new(Control::default())).expect("starvation");
        assert_eq!(o.fairness().starved, 3, "{:?}", o.per_conn);

        signals.trigger_shutdown();
        server
            .join()
            .expect("the server thread panicked")
            .expect("the accept loop failed");
    });
}
