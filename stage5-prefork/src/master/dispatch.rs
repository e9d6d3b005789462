//! Passing sockets: the pass model's accept loop, the choice of a worker
//! for each connection, and the `503` when none can take it.

use super::*;

/// What became of a connection the master tried to pass on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dispatch {
    /// A worker has it.
    Sent,
    /// Every worker is at `--max-connections` (or none can take any).
    AtCapacity,
    /// Every worker's channel is full for the moment.
    ChannelsFull,
}

impl Master {
    // ANCHOR: dispatch
    /// Accepts every pending connection and passes each to a worker.
    pub(super) fn accept_all(&mut self) {
        loop {
            let Some(listener) = &self.listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    if !self.hand_out(stream, peer) {
                        // Every channel is full: leave the rest of the burst
                        // in the kernel's accept queue until the workers
                        // catch up.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued and the
                    // listener readable. Stop polling it for a moment
                    // instead of spinning on it.
                    log::error!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    /// Passes `stream` to a worker, answers 503 if every worker is at
    /// `--max-connections`, or keeps it as `stalled` if every worker's
    /// channel is full for now (returns false then).
    pub(super) fn hand_out(
        &mut self,
        stream: std::net::TcpStream,
        peer: std::net::SocketAddr,
    ) -> bool {
        match self.dispatch(&stream) {
            // `stream` is dropped here: the master's copy closes and the
            // connection lives on in the worker.
            Dispatch::Sent => true,
            Dispatch::AtCapacity => {
                // Say so with a 503 rather than a reset.
                log::warn!("every worker is full; answering {peer} 503");
                self.reject(stream, peer);
                true
            }
            Dispatch::ChannelsFull => {
                self.stalled = Some((stream, peer));
                false
            }
        }
    }

    /// Sends one connection to a worker chosen by the balance policy.
    pub(super) fn dispatch(&mut self, stream: &std::net::TcpStream) -> Dispatch {
        // Workers at --max-connections take no more (nginx's
        // worker_connections).
        let max = self.args.max_connections as u64;
        let board = &self.board;
        let mut order: Vec<usize> = self
            .active()
            .filter(|(i, c)| {
                c.channel.is_some() && board.slot(*i).counters.active.load(Ordering::Relaxed) < max
            })
            .map(|(i, _)| i)
            .collect();
        if order.is_empty() {
            return Dispatch::AtCapacity;
        }
        match self.args.balance {
            Balance::RoundRobin => {
                let start = order.iter().position(|&i| i >= self.next).unwrap_or(0);
                order.rotate_left(start);
            }
            Balance::LeastConn => {
                let live = |i: usize| self.board.slot(i).counters.active.load(Ordering::Relaxed);
                // Ties go round-robin, so a burst faster than the workers
                // update their counts still spreads out.
                let start = order.iter().position(|&i| i >= self.next).unwrap_or(0);
                order.rotate_left(start);
                order.sort_by_key(|&i| live(i));
            }
        }
        let mut busy = false;
        for i in order {
            let Some(child) = self.children[i].as_mut() else {
                continue;
            };
            let Some(channel) = &child.channel else {
                continue;
            };
            match send_fd(channel, stream.as_fd()) {
                Ok(()) => {
                    self.next = i + 1;
                    return Dispatch::Sent;
                }
                // Its channel is full (a burst faster than the worker
                // receives; a Unix socket holds a few hundred passed
                // descriptors): try another.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => busy = true,
                Err(e) => {
                    log::warn!(
                        "worker {i} (pid {}) cannot take connections: {e}",
                        child.pid
                    );
                    child.channel = None;
                }
            }
        }
        if busy {
            Dispatch::ChannelsFull
        } else {
            Dispatch::AtCapacity
        }
    }
    // ANCHOR_END: dispatch

    /// Answers `503 Service Unavailable` with `Retry-After` and closes: the
    /// same answer stage 3 gives when its queue is full (`common`'s function).
    pub(super) fn reject(&mut self, stream: std::net::TcpStream, peer: std::net::SocketAddr) {
        if self.busy_site.is_none() {
            let site =
                self.args
                    .http
                    .site(crate::NAME, common::logging::AccessLog::disabled(), None);
            match site {
                Ok(mut site) => {
                    // Counted in the master's own slot, which the status
                    // page adds to the workers' totals.
                    site.counters = self.board.master();
                    self.busy_site = Some(site);
                }
                Err(e) => {
                    log::error!("cannot build the 503 page: {e}");
                    return;
                }
            }
        }
        if let Some(site) = &self.busy_site {
            site.counters.rejected();
            common::server::reject_busy(stream, peer, site, 1);
        }
    }
}
