//! A pool of I/O buffers, so that an idle connection holds none.
//!
//! Stages 2 and 3 give every connection its own input and output `Vec`s for
//! its whole life. With 10,000 keep-alive connections that are idle almost
//! all the time, that is 10,000 × 8 KiB of memory doing nothing. Here a
//! connection *borrows* a [`Buffers`] when bytes arrive and gives it back
//! once its input is used up and its response is out: an idle connection
//! owns an empty `Option` (8 bytes) instead.
//!
//! The pool is per event loop (no locking) and bounded: it keeps at most
//! [`BufferPool::MAX_FREE`] spare buffers, and a buffer that grew very large
//! (a big pipelined batch) is shrunk before it is kept, so one burst does
//! not pin memory forever. On the keep-alive hot path a request borrows a
//! buffer that was returned a moment ago: no allocation.

use common::http::FileRegion;

use crate::proxy::Exchange;

/// Initial capacity of each of the two vectors, in bytes: enough for a
/// typical request head, and for a typical response head plus a small body.
pub const INITIAL_CAPACITY: usize = 4096;
/// A returned vector larger than this is shrunk back to
/// [`INITIAL_CAPACITY`] before it goes back into the pool.
pub const SHRINK_ABOVE: usize = 256 * 1024;

/// What a busy connection needs and an idle one does not.
#[derive(Debug)]
pub struct Buffers {
    /// Bytes received and not yet consumed by the parser: a partial request
    /// head, or the next pipelined requests.
    pub input: Vec<u8>,
    /// Response bytes not yet written: heads, in-memory bodies, and small
    /// files read into memory, for every response of a pipelined batch.
    pub out: Vec<u8>,
    /// How much of `out` has been written already.
    pub written: usize,
    /// A file region to send with `sendfile(2)` once `out` is written.
    pub file: Option<FileRegion>,
    /// The request being forwarded upstream and its response, while the
    /// connection is in `Phase::Proxying` (`--proxy-pass`); boxed, and
    /// here rather than in the connection, so that it costs an idle
    /// connection nothing.
    pub exchange: Option<Box<Exchange>>,
}

impl Buffers {
    fn new() -> Buffers {
        Buffers {
            input: Vec::with_capacity(INITIAL_CAPACITY),
            out: Vec::with_capacity(INITIAL_CAPACITY),
            written: 0,
            file: None,
            exchange: None,
        }
    }

    /// True when nothing is buffered in either direction: the connection
    /// can give the buffers back.
    pub fn is_idle(&self) -> bool {
        self.input.is_empty()
            && self.out.len() == self.written
            && self.file.is_none()
            && self.exchange.is_none()
    }
}

/// The spare buffers of one event loop.
#[derive(Debug, Default)]
pub struct BufferPool {
    /// Spare buffers, boxed because connections hold them boxed: an idle
    /// connection's `Option<Box<Buffers>>` is one pointer, not 80 bytes.
    #[allow(
        clippy::vec_box,
        reason = "the boxes move to and from connections unchanged"
    )]
    free: Vec<Box<Buffers>>,
    /// Buffers ever allocated (for the tests and the statistics line).
    allocated: usize,
}

// ANCHOR: pool
impl BufferPool {
    /// Spare buffers kept at most; more are freed when returned.
    pub const MAX_FREE: usize = 1024;

    /// An empty pool.
    pub fn new() -> BufferPool {
        BufferPool::default()
    }

    /// A clean buffer pair: a spare one if there is one, else a new one.
    pub fn take(&mut self) -> Box<Buffers> {
        match self.free.pop() {
            Some(b) => b,
            None => {
                self.allocated += 1;
                Box::new(Buffers::new())
            }
        }
    }

    /// Takes a buffer pair back, cleared (and shrunk if it grew large).
    pub fn give(&mut self, mut b: Box<Buffers>) {
        if self.free.len() >= Self::MAX_FREE {
            return;
        }
        b.input.clear();
        b.out.clear();
        b.written = 0;
        b.file = None;
        b.exchange = None;
        for v in [&mut b.input, &mut b.out] {
            if v.capacity() > SHRINK_ABOVE {
                v.shrink_to(INITIAL_CAPACITY);
            }
        }
        self.free.push(b);
    }

    /// Buffer pairs allocated since the pool was created.
    pub fn allocated(&self) -> usize {
        self.allocated
    }

    /// Spare buffer pairs in the pool.
    pub fn spare(&self) -> usize {
        self.free.len()
    }
}
// ANCHOR_END: pool

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_reused_without_allocating() {
        let mut pool = BufferPool::new();
        for _ in 0..100 {
            let mut b = pool.take();
            b.out.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
            pool.give(b);
        }
        assert_eq!(pool.allocated(), 1);
        let b = pool.take();
        assert!(b.is_idle(), "a taken buffer comes back clean");
    }

    #[test]
    fn a_large_buffer_is_shrunk_and_the_pool_is_bounded() {
        let mut pool = BufferPool::new();
        let mut b = pool.take();
        b.out.resize(SHRINK_ABOVE + 1, 0);
        pool.give(b);
        assert!(pool.take().out.capacity() <= SHRINK_ABOVE);
        let many: Vec<_> = (0..BufferPool::MAX_FREE + 10)
            .map(|_| pool.take())
            .collect();
        for b in many {
            pool.give(b);
        }
        assert_eq!(pool.spare(), BufferPool::MAX_FREE);
    }
}
