//! Passing sockets: the pass model's accept loop, the choice of a worker
//! for each connection, and the `503` when none can take it.
//!
//! A burst is passed in batches: the master accepts until the queue is
//! empty (or a batch holds [`MAX_FDS`]), deals the batch out to the
//! workers, and sends each worker its share in one `SCM_RIGHTS` message.

use super::*;

/// A connection the master accepted, with its peer for the logs.
pub(super) type Accepted = (std::net::TcpStream, std::net::SocketAddr);

impl Master {
    // ANCHOR: dispatch
    /// Accepts every pending connection, in batches of at most
    /// [`MAX_FDS`], and passes each batch on.
    pub(super) fn accept_all(&mut self) {
        loop {
            let mut batch = Vec::new();
            let more = self.accept_batch(&mut batch);
            if batch.is_empty() || !self.hand_out(batch) || !more {
                // Nothing came, or every channel is full (the rest of the
                // burst waits in the kernel's accept queue until the
                // workers catch up), or the queue is empty.
                return;
            }
        }
    }

    /// Accepts until `WouldBlock` or until `batch` holds [`MAX_FDS`];
    /// true in the second case (more may be waiting).
    fn accept_batch(&mut self, batch: &mut Vec<Accepted>) -> bool {
        let Some(listener) = &self.listener else {
            return false;
        };
        while batch.len() < MAX_FDS {
            match listener.accept() {
                Ok(conn) => batch.push(conn),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // EMFILE/ENFILE: the connection stays queued and the
                    // listener readable. Stop polling it for a moment
                    // instead of spinning on it.
                    log::error!("accept: {e}; pausing accepts for {ACCEPT_PAUSE:?}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_PAUSE);
                    return false;
                }
            }
        }
        true
    }

    /// Deals `conns` out to the workers the balance policy picks, and sends
    /// each worker its share in one `sendmsg`; answers 503 for what no
    /// worker has room for (every one at `--max-connections`). If channels
    /// are full, the other workers are tried; what none of them can take
    /// now is kept in `stalled` and false returned.
    pub(super) fn hand_out(&mut self, mut conns: Vec<Accepted>) -> bool {
        let mut full: Vec<usize> = Vec::new();
        loop {
            let (workers, mut room) = self.eligible(&full);
            if workers.is_empty() {
                if !full.is_empty() {
                    self.stalled = conns;
                    return false;
                }
                for (stream, peer) in conns {
                    log::warn!("every worker is full; answering {peer} 503");
                    self.reject(stream, peer);
                }
                return true;
            }
            let mut shares: Vec<Vec<Accepted>> = workers.iter().map(|_| Vec::new()).collect();
            let mut next = 0;
            for (stream, peer) in conns {
                let Some(k) = self.pick(&room, next) else {
                    // Workers at --max-connections take no more (nginx's
                    // worker_connections). Say so with a 503, not a reset.
                    log::warn!("every worker is full; answering {peer} 503");
                    self.reject(stream, peer);
                    continue;
                };
                room[k].1 -= 1;
                room[k].0 += 1;
                shares[k].push((stream, peer));
                next = k + 1;
                self.next = workers[k] + 1;
            }
            let mut left = Vec::new();
            for (k, share) in shares.into_iter().enumerate() {
                if share.is_empty() {
                    continue;
                }
                let i = workers[k];
                match self.send_share(i, &share) {
                    // `share` is dropped here: the master's copies close
                    // and the connections live on in the worker.
                    Ok(()) => {}
                    // Its channel is full (a burst faster than the worker
                    // receives): the other workers get a try.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        full.push(i);
                        left.extend(share);
                    }
                    Err(e) => {
                        if let Some(child) = self.children[i].as_mut() {
                            log::warn!(
                                "worker {i} (pid {}) cannot take connections: {e}",
                                child.pid
                            );
                            child.channel = None;
                        }
                        left.extend(share);
                    }
                }
            }
            if left.is_empty() {
                return true;
            }
            conns = left;
        }
    }

    /// The workers that can take connections now (a channel, not retiring,
    /// not in `full`), in the balance policy's order, each with its
    /// (open connections, room left under `--max-connections`).
    fn eligible(&self, full: &[usize]) -> (Vec<usize>, Vec<(u64, u64)>) {
        let max = self.args.max_connections as u64;
        let live = |i: usize| self.board.slot(i).counters.active.load(Ordering::Relaxed);
        let mut order: Vec<usize> = self
            .active()
            .filter(|(i, c)| c.channel.is_some() && !full.contains(i) && live(*i) < max)
            .map(|(i, _)| i)
            .collect();
        // Round-robin: start after the worker that got the last one.
        let start = order.iter().position(|&i| i >= self.next).unwrap_or(0);
        order.rotate_left(start);
        let room = order
            .iter()
            .map(|&i| (live(i), max.saturating_sub(live(i))))
            .collect();
        (order, room)
    }

    /// The share (index into `room`) the next connection goes to, or None
    /// if no worker has room. Round-robin deals like cards, from `next` on;
    /// least-connections takes the worker with the fewest open plus
    /// already dealt (ties in round-robin order, so a burst faster than
    /// the workers update their counts still spreads out).
    fn pick(&self, room: &[(u64, u64)], next: usize) -> Option<usize> {
        let n = room.len();
        let mut ring = (0..n).map(|d| (next + d) % n).filter(|&k| room[k].1 > 0);
        match self.args.balance {
            Balance::RoundRobin => ring.next(),
            Balance::LeastConn => ring.min_by_key(|&k| room[k].0),
        }
    }

    /// One `sendmsg` to worker `i` with every descriptor of `share`.
    fn send_share(&self, i: usize, share: &[Accepted]) -> io::Result<()> {
        let channel = self.children[i]
            .as_ref()
            .and_then(|c| c.channel.as_ref())
            .ok_or_else(|| io::Error::other("no channel"))?;
        let fds: Vec<_> = share.iter().map(|(s, _)| s.as_fd()).collect();
        send_fds(channel, &fds)
    }
    // ANCHOR_END: dispatch

    /// Answers `503 Service Unavailable` with `Retry-After` and closes: the
    /// same answer stage 3 gives when its queue is full (`common`'s function).
    pub(super) fn reject(&mut self, stream: std::net::TcpStream, peer: std::net::SocketAddr) {
        if self.args.http.tls_cert.is_some() {
            // A 503 in plaintext on a TLS port would be a protocol error
            // to the client; the master holds no TLS state to encrypt it.
            // Closing at once is the answer a TLS client understands.
            self.board.master().rejected();
            log::debug!("{peer}: no room, closed (TLS: no plaintext 503)");
            drop(stream);
            return;
        }
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
