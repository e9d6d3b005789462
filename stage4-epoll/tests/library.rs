//! The library API stage 5 builds on: an [`EventLoop`] given streams from
//! outside, stopped through its [`Handle`].

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use common::http::Site;
use common::logging::AccessLog;
use common::server::Timeouts;
use common::testkit::client::Client;
use common::testkit::files::{BIG, TempDir};
use stage4_epoll::{EventLoop, LoopConfig, bind_reuseport};

fn config(root: &TempDir) -> LoopConfig {
    let site = Site::new(&root.path, "stage4-epoll", None, AccessLog::disabled()).unwrap();
    LoopConfig {
        site: Arc::new(site),
        timeouts: Timeouts {
            header: Duration::from_secs(5),
            keepalive: Duration::from_secs(5),
            send: Duration::from_secs(5),
            grace: Duration::from_secs(5),
            last_request: Duration::from_secs(1),
        },
        max_connections: 100,
    }
}

/// A loop with no listener of its own serves connections handed to it by
/// another thread (as a stage 5 worker gets them over a Unix socket), and
/// `Handle::shutdown` makes `run` return.
#[test]
fn handed_over_connections_are_served_until_shutdown() {
    let root = TempDir::site("stage4-library", BIG);
    let mut ev = EventLoop::new(config(&root)).unwrap();
    let handle = ev.handle();
    let thread = std::thread::spawn(move || ev.run());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for _ in 0..3 {
        let mut client = Client::connect(addr);
        let (accepted, _) = listener.accept().unwrap();
        handle.hand_over(accepted).unwrap();
        assert_eq!(client.get("/index.html").status, 200);
        assert_eq!(client.get("/index.html").status, 200);
    }
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

/// `bind_reuseport` binds N sockets to one port (port 0 picks it once).
#[test]
fn reuseport_listeners_share_one_port() {
    let listeners = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, 128).unwrap();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    assert_eq!(ports.len(), 3);
    assert!(ports.iter().all(|&p| p == ports[0] && p != 0), "{ports:?}");
}
