//! What one wait costs when a poller holds N idle descriptors: `poll(2)`
//! against `epoll_wait(2)`, the measurement behind the chapter's choice of
//! epoll (through mio) for the poller.
//!
//! ```text
//! cargo run --release -p stage3-threadpool --example pollcost -- [N] [ROUNDS]
//! ```
//!
//! N descriptors (default 10,000) that all refer to one idle socket (one
//! `socketpair`, then `dup`: the kernel still looks at each descriptor on
//! its own), plus one more that is readable — the connection whose request
//! just arrived. Each round asks "which are readable?" with a zero timeout:
//! `poll` is handed all N + 1 descriptors and the kernel walks every one;
//! `epoll_wait` reads the one ready entry off the epoll instance's ready
//! list. Prints the median time per call of each.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let rounds: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let _ = common::limits::raise_fd_limit();

    let (idle, _idle_peer) = UnixStream::pair().expect("a socket pair");
    let held: Vec<OwnedFd> = (0..n)
        .map(|_| nix::unistd::dup(&idle).expect("dup (is the open-files limit high enough?)"))
        .collect();
    let (ready, mut ready_peer) = UnixStream::pair().expect("a socket pair");
    ready_peer
        .write_all(b"GET / HTTP/1.1\r\n\r\n")
        .expect("a request");

    let mut fds: Vec<PollFd<'_>> = held
        .iter()
        .map(|fd| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
        .collect();
    fds.push(PollFd::new(ready.as_fd(), PollFlags::POLLIN));
    let poll_median = median(rounds, || {
        let n = poll(&mut fds, PollTimeout::ZERO).expect("poll");
        assert_eq!(n, 1);
    });

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll_create");
    for (i, fd) in held.iter().enumerate() {
        epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, i as u64))
            .expect("epoll_ctl");
    }
    epoll
        .add(&ready, EpollEvent::new(EpollFlags::EPOLLIN, n as u64))
        .expect("epoll_ctl");
    let mut events = [EpollEvent::empty(); 64];
    let epoll_median = median(rounds, || {
        let got = epoll
            .wait(&mut events, EpollTimeout::ZERO)
            .expect("epoll_wait");
        assert_eq!(got, 1);
    });

    println!(
        "{n} idle descriptors + 1 ready, median of {rounds} calls: poll {poll_median:?}, epoll_wait {epoll_median:?} ({:.0}x)",
        poll_median.as_secs_f64() / epoll_median.as_secs_f64().max(1e-9)
    );
}

/// The median duration of `rounds` calls of `f`.
fn median(rounds: usize, mut f: impl FnMut()) -> Duration {
    let mut samples: Vec<Duration> = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}
