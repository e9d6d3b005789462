//! Three ways to wait for many sockets at once: `select(2)`, `poll(2)` and
//! `epoll(7)`, behind one small interface so that the event loop
//! (`event_loop.rs`) is the same for all three and only the waiting differs.
//!
//! | mechanism | what the kernel is told, and when | what a wait costs |
//! |---|---|---|
//! | `select` | three bit sets of at most `FD_SETSIZE` (1024) descriptors, rebuilt before *every* call | the kernel scans every bit up to the highest descriptor; we scan them again after |
//! | `poll` | an array of `pollfd`, rebuilt before every call; no limit on descriptor numbers | the kernel walks the whole array; we walk it again |
//! | `epoll` | a kernel object holding the interest list: `epoll_ctl` adds, changes or removes one descriptor when *that* descriptor's interest changes | the kernel hands back only the ready descriptors |
//!
//! `epoll` also offers **edge-triggered** notification (`EPOLLET`): an
//! event is reported once, when a socket *becomes* ready, not on every
//! wait while it *is* ready. That saves the `epoll_ctl` calls that
//! level-triggered interest changes need, and it moves a duty to the
//! program: it must remember which sockets are ready and keep reading
//! (or writing) each until the call fails with `EAGAIN`. The loop keeps
//! those rules; [`Waiter::edge`] tells it which ones apply.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::select::{FD_SETSIZE, FdSet};
use nix::sys::time::{TimeVal, TimeValLike};

use crate::net::poll_timeout;

/// What the loop wants to know about one descriptor this turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Interest {
    /// Tell me when reading would not block.
    pub read: bool,
    /// Tell me when writing would not block.
    pub write: bool,
}

/// What the kernel said about one descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ready {
    /// Reading will not block (data, an end of file, or an error to read).
    pub read: bool,
    /// Writing will not block (room in the send buffer, or an error).
    pub write: bool,
}

impl Ready {
    /// Nothing to report.
    pub fn is_empty(self) -> bool {
        !self.read && !self.write
    }
}

/// One entry of the loop's interest list: a key the loop chose (a client
/// id, or one of its own keys for the listener and the signal pipe), the
/// descriptor, and what it wants to know.
pub type Entry<'fd> = (usize, BorrowedFd<'fd>, Interest);

/// A way of waiting for many descriptors at once.
pub trait Waiter {
    /// True if readiness is reported once per change (`EPOLLET`): the loop
    /// must then remember it, and read or write until `EAGAIN`.
    fn edge(&self) -> bool {
        false
    }

    /// False if this descriptor number cannot be watched at all (`select`:
    /// `FD_SETSIZE` and above). The loop refuses such a client.
    fn admits(&self, _fd: RawFd) -> bool {
        true
    }

    /// Waits until a descriptor of `list` is ready or `timeout` passes
    /// (`None`: no time limit), and appends what is ready to `ready`.
    /// `list` is the whole interest list of this turn.
    fn wait(
        &mut self,
        list: &[Entry<'_>],
        timeout: Option<Duration>,
        ready: &mut Vec<(usize, Ready)>,
    ) -> io::Result<()>;

    /// `key`'s descriptor is about to be closed.
    fn forget(&mut self, _key: usize, _fd: BorrowedFd<'_>) {}
}

// ANCHOR: select
/// `select(2)`: three bit sets (read, write, error), rebuilt every call.
#[derive(Debug, Default)]
pub struct Select;

impl Waiter for Select {
    fn admits(&self, fd: RawFd) -> bool {
        // FD_SET on a descriptor >= FD_SETSIZE writes past the end of the
        // set: memory corruption in C. nix's `FdSet::insert` panics instead.
        // Either way the client cannot be watched, so it is refused.
        usize::try_from(fd).is_ok_and(|fd| fd < FD_SETSIZE)
    }

    fn wait(
        &mut self,
        list: &[Entry<'_>],
        timeout: Option<Duration>,
        ready: &mut Vec<(usize, Ready)>,
    ) -> io::Result<()> {
        // The sets are both the question and the answer (select overwrites
        // them), so they are built again on every call: O(descriptors).
        let mut reads = FdSet::new();
        let mut writes = FdSet::new();
        for &(_, fd, want) in list {
            if want.read {
                reads.insert(fd);
            }
            if want.write {
                writes.insert(fd);
            }
        }
        // select may change the timeout it is given (Linux writes back the
        // time left), so it gets a fresh one too.
        let mut tv = timeout.map(|d| TimeVal::microseconds(d.as_nanos().div_ceil(1000) as i64));
        if waited(nix::sys::select::select(
            None,
            &mut reads,
            &mut writes,
            None,
            tv.as_mut(),
        ))? == 0
        {
            return Ok(());
        }
        // And the answer is found by testing every descriptor again.
        for &(key, fd, _) in list {
            let r = Ready {
                read: reads.contains(fd),
                write: writes.contains(fd),
            };
            if !r.is_empty() {
                ready.push((key, r));
            }
        }
        Ok(())
    }
}
// ANCHOR_END: select

// ANCHOR: poll
/// `poll(2)`: an array of `pollfd` (descriptor, events asked, events
/// returned), rebuilt every call, with no limit on descriptor numbers.
#[derive(Debug, Default)]
pub struct Poll;

impl Waiter for Poll {
    fn wait(
        &mut self,
        list: &[Entry<'_>],
        timeout: Option<Duration>,
        ready: &mut Vec<(usize, Ready)>,
    ) -> io::Result<()> {
        let mut fds: Vec<PollFd<'_>> = list
            .iter()
            .map(|&(_, fd, want)| {
                let mut events = PollFlags::empty();
                if want.read {
                    events |= PollFlags::POLLIN;
                }
                if want.write {
                    events |= PollFlags::POLLOUT;
                }
                // POLLERR and POLLHUP are always reported, asked for or not.
                PollFd::new(fd, events)
            })
            .collect();
        if waited(nix::poll::poll(&mut fds, poll_timeout(timeout)))? == 0 {
            return Ok(());
        }
        for (&(key, _, _), fd) in list.iter().zip(&fds) {
            let got = fd.revents().unwrap_or(PollFlags::empty());
            // An error or a hang-up is for the next read or write to report.
            let broken = got.intersects(PollFlags::POLLERR | PollFlags::POLLHUP);
            let r = Ready {
                read: got.contains(PollFlags::POLLIN) || broken,
                write: got.contains(PollFlags::POLLOUT) || broken,
            };
            if !r.is_empty() {
                ready.push((key, r));
            }
        }
        Ok(())
    }
}
// ANCHOR_END: poll

// ANCHOR: epoll
/// `epoll(7)`: the interest list lives in the kernel. A descriptor is added
/// once (`EPOLL_CTL_ADD`), changed only when its interest changes
/// (`EPOLL_CTL_MOD`), removed before it is closed (`EPOLL_CTL_DEL`), and a
/// wait returns only what is ready.
#[derive(Debug)]
pub struct EpollWaiter {
    epoll: Epoll,
    /// Client sockets edge-triggered (`--edge`). The listener and the
    /// signal pipe stay level-triggered: the loop stops watching the
    /// listener while accepting is paused, and must hear it again after.
    edge: bool,
    /// What each registered key asked for last, so that `epoll_ctl` is
    /// called only when that changes.
    registered: HashMap<usize, Interest>,
    /// Keys that are not clients (listener, signal pipe).
    own_keys: std::ops::RangeFrom<usize>,
    events: Vec<EpollEvent>,
}

impl EpollWaiter {
    /// A new epoll instance. Keys from `own_keys` on are the loop's own
    /// descriptors, never edge-triggered.
    pub fn new(edge: bool, own_keys: std::ops::RangeFrom<usize>) -> io::Result<EpollWaiter> {
        Ok(EpollWaiter {
            epoll: Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?,
            edge,
            registered: HashMap::new(),
            own_keys,
            events: vec![EpollEvent::empty(); 1024],
        })
    }

    /// True for a client socket registered edge-triggered: its
    /// registration never changes.
    fn edge_triggered(&self, key: usize) -> bool {
        self.edge && !self.own_keys.contains(&key)
    }

    fn flags(&self, key: usize, want: Interest) -> EpollFlags {
        if self.edge_triggered(key) {
            // Registered once for everything; the loop remembers readiness.
            return EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT | EpollFlags::EPOLLET;
        }
        let mut flags = EpollFlags::empty();
        if want.read {
            flags |= EpollFlags::EPOLLIN;
        }
        if want.write {
            flags |= EpollFlags::EPOLLOUT;
        }
        flags
    }
}

impl Waiter for EpollWaiter {
    fn edge(&self) -> bool {
        self.edge
    }

    fn wait(
        &mut self,
        list: &[Entry<'_>],
        timeout: Option<Duration>,
        ready: &mut Vec<(usize, Ready)>,
    ) -> io::Result<()> {
        // Tell the kernel only what changed since the last turn. With
        // edge-triggered clients, that is each client once, when it is new.
        for &(key, fd, want) in list {
            match self.registered.get(&key) {
                None => {
                    let event = EpollEvent::new(self.flags(key, want), key as u64);
                    self.epoll.add(fd, event)?;
                }
                Some(&had) if had != want && !self.edge_triggered(key) => {
                    let mut event = EpollEvent::new(self.flags(key, want), key as u64);
                    self.epoll.modify(fd, &mut event)?;
                }
                Some(_) => {}
            }
            self.registered.insert(key, want);
        }
        let n = waited(self.epoll.wait(&mut self.events, poll_timeout(timeout)))?;
        for event in &self.events[..n] {
            let got = event.events();
            let broken = got.intersects(EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP);
            let r = Ready {
                read: got.contains(EpollFlags::EPOLLIN) || broken,
                write: got.contains(EpollFlags::EPOLLOUT) || broken,
            };
            ready.push((event.data() as usize, r));
        }
        Ok(())
    }

    fn forget(&mut self, key: usize, fd: BorrowedFd<'_>) {
        // Closing the last descriptor of a socket removes it from the set
        // anyway; saying so first keeps `registered` true, since a key (and
        // a descriptor number) is soon reused by the next client.
        if self.registered.remove(&key).is_some() {
            let _ = self.epoll.delete(fd);
        }
    }
}
// ANCHOR_END: epoll

/// How many descriptors a wait found ready. A wait that a signal
/// interrupted (`EINTR`) found none: the loop looks at the signal flags
/// at the top of its next turn.
fn waited<N: Default>(result: nix::Result<N>) -> io::Result<N> {
    match result {
        Ok(n) => Ok(n),
        Err(Errno::EINTR) => Ok(N::default()),
        Err(e) => Err(e.into()),
    }
}

/// The descriptor number of a socket, for [`Waiter::admits`].
pub fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}
