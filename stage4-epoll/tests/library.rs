//! The library API stage 5 builds on: an [`EventLoop`] fed by a
//! [`ConnectionSource`] of its own, stopped through its `Handle` or by the
//! source's end.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use common::http::Site;
use common::logging::AccessLog;
use common::server::Timeouts;
use common::testkit::client::Client;
use common::testkit::files::{BIG, TempDir};
use stage4_epoll::{ConnectionSource, EventLoop, Flow, LoopConfig, bind_reuseport};

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
        tls: None,
    }
}

/// A source as a test builds one: connections come from a channel, and a
/// byte on a socket pair says "there is something" (a stand-in for stage
/// 5's `SCM_RIGHTS` channel, which carries the sockets themselves).
#[derive(Debug)]
struct Doorbell {
    bell: UnixStream,
    streams: mpsc::Receiver<std::net::TcpStream>,
}

impl ConnectionSource for Doorbell {
    fn fd(&self) -> BorrowedFd<'_> {
        self.bell.as_fd()
    }

    fn on_readable(&mut self, serve: &mut dyn FnMut(std::net::TcpStream)) -> Flow {
        let mut buf = [0u8; 64];
        loop {
            match io::Read::read(&mut &self.bell, &mut buf) {
                Ok(0) => return Flow::End,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return Flow::End,
            }
        }
        while let Ok(stream) = self.streams.try_recv() {
            serve(stream);
        }
        Flow::Open
    }
}

/// Starts a loop with no listener, fed by a [`Doorbell`]; returns the
/// ringing end, the sender, the loop's handle and thread.
fn loop_with_source(
    root: &TempDir,
) -> (
    UnixStream,
    mpsc::Sender<std::net::TcpStream>,
    stage4_epoll::Handle,
    std::thread::JoinHandle<io::Result<()>>,
) {
    let mut ev = EventLoop::new(config(root)).unwrap();
    let (ring, bell) = UnixStream::pair().unwrap();
    bell.set_nonblocking(true).unwrap();
    let (tx, rx) = mpsc::channel();
    ev.add_source(Box::new(Doorbell { bell, streams: rx }))
        .unwrap();
    let handle = ev.handle();
    (ring, tx, handle, std::thread::spawn(move || ev.run()))
}

/// A loop with no listener of its own serves the connections its source
/// gives it (as a stage 5 worker gets them over a Unix socket), and after
/// `Handle::shutdown`, once the source ends, `run` returns.
#[test]
fn connections_from_a_source_are_served_until_it_ends() {
    let root = TempDir::site("stage4-library", BIG);
    let (mut ring, tx, handle, thread) = loop_with_source(&root);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    for _ in 0..3 {
        let mut client = Client::connect(addr);
        let (accepted, _) = listener.accept().unwrap();
        tx.send(accepted).unwrap();
        io::Write::write_all(&mut ring, b"!").unwrap();
        assert_eq!(client.get("/index.html").status, 200);
        assert_eq!(client.get("/index.html").status, 200);
    }
    handle.shutdown();
    // A connection given after the stop, before the source ends, is still
    // served (stage 5: sockets already in the channel when a worker is
    // retired), with `Connection: close`.
    let mut late = Client::connect(addr);
    let (accepted, _) = listener.accept().unwrap();
    tx.send(accepted).unwrap();
    io::Write::write_all(&mut ring, b"!").unwrap();
    let response = late.get("/index.html");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Connection"), Some("close"));
    drop(ring);
    thread.join().unwrap().unwrap();
}

/// The source's end alone (the master closed the channel) stops the loop.
#[test]
fn a_source_that_ends_stops_the_loop() {
    let root = TempDir::site("stage4-library-end", BIG);
    let (ring, _tx, _handle, thread) = loop_with_source(&root);
    drop(ring);
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
