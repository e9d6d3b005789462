//! Stage 1: a TCP echo and chat server — first blocking, then `select(2)`,
//! `poll(2)` and `epoll(7)`.
//!
//! The first program of the course, before any HTTP. It teaches what every
//! later stage takes for granted:
//!
//! - the socket API: `socket`, `setsockopt(SO_REUSEADDR)`, `bind`, `listen`,
//!   `accept`, `read`, `write`, `shutdown`, `close`;
//! - robust I/O: a `read` returns *some* bytes — half a line, or three lines —
//!   and a `write` may take only part of what it is given;
//! - I/O multiplexing: one thread serving many clients with `select(2)`,
//!   `poll(2)` or `epoll(7)` (level- or edge-triggered), where no client that
//!   stops reading can stall the others;
//! - framing: text lines versus length-prefixed protobuf frames;
//! - clean shutdown: SIGINT/SIGTERM send everyone a `BYE` line, exit 0.
//!
//! Start it with `cargo run -p stage1-echo` and talk to it with
//! `nc 127.0.0.1 7878`; `--model blocking` shows the first version,
//! `--mode chat` turns it into a chat room, `--framing protobuf` switches
//! the wire format (try it with `stage1-echo client`).
//!
//! # Layout
//!
//! - `cli.rs`: the flags (and `--config` file keys), with their defaults.
//! - `protocol.rs`: sans-IO line splitting, command parsing, text replies.
//! - `framing.rs`: sans-IO protobuf frames: varint length, `prost` messages.
//! - `room.rs`: sans-IO server state: each client's input and output
//!   buffers, the chat room, backpressure, counters.
//! - `net.rs`: opening the listening socket, one system call at a time.
//! - `blocking.rs`: model 1, one client at a time.
//! - `event_loop.rs`: models 2–4, one thread, every client, non-blocking;
//!   `readiness.rs`: the three ways it waits (`select`, `poll`, `epoll`).
//! - `client.rs`: `stage1-echo client`, to talk protobuf.
//!
//! A library, so that a later stage can serve the same protocol: stage 3's
//! `--protocol line` runs [`blocking::serve`] on its pool's workers, with
//! one [`room::Room`] shared behind a lock.
//!
//! The models only move bytes between sockets and a `Room`; everything that
//! decides what to answer is in the sans-IO modules and unit-tested there.
//!
//! # What it cannot do
//!
//! Not for production. `select` and `poll` hand the kernel the whole list of
//! sockets on every call and the loop walks all of them after each wake-up:
//! O(clients) work per event, fine for hundreds, not for tens of thousands;
//! `select` cannot watch a descriptor numbered 1024 or more at all. `epoll`
//! removes the kernel's share of that work, but this loop still builds its
//! interest list every turn (stage 4 keeps per-connection state instead).
//! One thread means one core. The blocking model serves one
//! client at a time and a client that never reads stalls it. There is no
//! TLS, no authentication, and chat names are first come, first served.

pub mod blocking;
pub mod cli;
pub mod client;
pub mod event_loop;
pub mod framing;
pub mod net;
pub mod protocol;
pub mod readiness;
pub mod room;
