//! `--protocol line`: stage 1's line protocol (echo, or the chat room) on
//! the same acceptor, queue and workers as HTTP.
//!
//! This is the design of the curriculum's thread-pool server: the acceptor
//! queues each connection, and a worker that takes it runs a receive loop
//! for that one client until it says `QUIT` or goes away. The session is
//! stage 1's own [`stage1_echo::blocking::serve`], unchanged; what changes
//! is that the [`Room`] — every client's buffers, the chat room, the
//! counters of `STATS` — is shared by all the workers, behind a `Mutex`
//! that a session holds only between two system calls.
//!
//! Chat shows what sharing costs. A chat line from one client lands in the
//! output of every other member, and the other members' workers are asleep
//! waiting for *their* client's input. So in chat mode each waits at most
//! [`RELAY_RECHECK`] before it looks for output to write: a relayed line
//! arrives up to that much late, and every idle member's worker wakes that
//! often. Stage 1's event loop has neither cost: one thread owns every
//! socket and writes a relay the moment it exists.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use stage1_echo::blocking::{self, RoomAccess};
use stage1_echo::room::Room;

use crate::stats::Stats;
use crate::{Context, Incoming};

/// How often, in chat mode, a worker waiting for its client's input looks
/// for lines the other members relayed to it.
pub const RELAY_RECHECK: Duration = Duration::from_millis(20);

/// The room all the workers share, and whether it is a chat room.
#[derive(Debug)]
pub struct LineRoom {
    /// Every client's state, behind the lock.
    pub room: Mutex<Room>,
    /// Chat mode: other sessions write into this one's output.
    pub chat: bool,
}

// ANCHOR: serve
/// A worker's job in `--protocol line`: join the room, run stage 1's
/// session to its end, leave.
pub fn serve(incoming: Incoming, ctx: &Context, line: &LineRoom) {
    let Incoming { stream, peer } = incoming;
    let id = match line.room.with(|r| r.connect(Instant::now())) {
        Ok(id) => id,
        Err(refusal) => {
            // `--max-clients` reached: `ERR server full`, then the close.
            let _ = (&stream).write_all(&refusal);
            return;
        }
    };
    log::debug!("client {id}: connected from {peer}");
    // A client that stops reading holds its worker in a write for at most
    // the send timeout.
    let recheck = line.chat.then_some(RELAY_RECHECK);
    let result = stream
        .set_write_timeout(Some(ctx.timeouts().send))
        .and_then(|()| blocking::serve(&stream, id, &line.room, &ctx.signals, recheck));
    if let Err(e) = result {
        log::debug!("client {id}: {e}");
    }
    line.room.with(|r| r.remove(id));
    Stats::bump(&ctx.stats.served);
}
// ANCHOR_END: serve

/// What the acceptor tells a client when the queue is full: stage 1's
/// `ERR server full`, in the room's framing.
pub fn refusal(line: &LineRoom) -> Vec<u8> {
    line.room.with(|r| r.refusal())
}
