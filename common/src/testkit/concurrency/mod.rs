//! The stage 3, 4 and 5 rubrics: what the concurrency stages add, graded
//! from outside the server, for a server written in any language
//! (`bench check --stage 3|4|5 -- COMMAND`).
//!
//! Stage 2's rubric grades *what* a server answers; these grade *how many
//! at once, and for how long*: a client that stalls, a crowd of idle or
//! trickling connections, an overload, a signal under load. Each check is a
//! [`Check`] on a [`Ctx`] like the stage 2 checks, with a milestone and a
//! [`Level`]; [`rubric`] gives a stage's list:
//!
//! - **Stage 3** ([`STAGE3`]): half a request does not stop others; idle
//!   keep-alive clients do not stop a new one for longer than [`BOUND`];
//!   an overload gets 503 or a wait in a queue; SIGTERM under load answers
//!   whole and exits within the grace period. Extra credit: hundreds of
//!   keep-alive connections all progress, and trickling connections leave
//!   normal clients served — a classic pool, a thread per connection for
//!   as long as it lives, cannot do either, and that is the lesson that
//!   leads to stage 4.
//! - **Stage 4** ([`STAGE4`]): stage 3's checks with its extra credit
//!   required, and 10,000 idle connections held (memory per connection
//!   reported), threads that do not grow with connections, a stalled head
//!   timed out, a slow reader that stops no one.
//! - **Stage 5** ([`STAGE5`]): stage 4's, and several processes serve the
//!   port, a worker killed with `kill -9` is replaced, SIGHUP keeps
//!   serving.
//!
//! The server's processes, threads, sockets and memory are read from
//! `/proc` ([`super::procfs`]), starting from the pid the checker spawned.
//! Every figure a check measures is reported as a note ([`note`](super::check::note)), never
//! compared with a speed: the bounds are generous upper limits that only a
//! server that stops serving exceeds.
//!
//! # Layout
//!
//! - `mod.rs`: the context, the milestones and the three rubrics.
//! - `clients.rs`: the clients the checks are made of (a timed newcomer,
//!   held idle connections, a load, a slowloris crowd) and the scripts a
//!   failure prints.
//! - `stage3.rs`, `stage4.rs`, `stage5.rs`: the checks, by the stage that
//!   introduces them.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::check::{Check, Level};

mod clients;
mod stage3;
mod stage4;
mod stage5;

pub use clients::Seen;
pub use stage3::*;
pub use stage4::*;
pub use stage5::*;

/// How long a new client may wait for its answer while others hold, stall
/// or trickle: far more than any server that serves it takes, far less
/// than the timeouts a server that does not serve it waits out.
pub const BOUND: Duration = Duration::from_secs(3);
/// Idle keep-alive clients held while a new one asks (more than a small
/// pool has threads).
pub const HOLDERS: usize = 64;
/// Clients that arrive at once in the overload check.
pub const OVERLOAD: usize = 256;
/// How long the overload check waits for all of them.
pub const OVERLOAD_WAIT: Duration = Duration::from_secs(20);
/// Keep-alive connections that must all progress.
pub const HUNDREDS: usize = 300;
/// Rounds of one request on each of them.
pub const ROUNDS: usize = 3;
/// How long one round may take.
pub const ROUND_BOUND: Duration = Duration::from_secs(5);
/// Trickling (slowloris) connections.
pub const TRICKLERS: usize = 128;
/// Normal clients asked to be served alongside a crowd.
pub const NORMAL: usize = 20;
/// Connections of the load in the signal checks.
pub const LOAD: usize = 8;
/// Connections opened to see whether threads grow (at most).
pub const THREAD_PROBE: usize = 500;
/// The large file the checker adds to the fixture for the slow reader.
pub const LARGE: &str = "large.bin";
/// Its size: more than any socket buffers hold.
const LARGE_SIZE: u64 = 64 << 20;

/// What a stage 3 to 5 check gets.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Where the server accepts connections.
    pub addr: SocketAddr,
    /// The pid of the process the checker spawned (a wrapper or the
    /// server itself): the root of the tree read from `/proc`.
    pub pid: u32,
    /// The server's header timeout (`--header-timeout`), for the stalled
    /// head check.
    pub header_timeout: Duration,
    /// The server's grace period after SIGTERM (`--grace-period`).
    pub grace_period: Duration,
    /// Idle connections to hold in the stage 4 check (`--idle-connections`).
    pub idle_connections: usize,
}

/// The milestones of the concurrency stages, as the course names them.
pub mod milestone {
    /// Stage 3: serving clients concurrently.
    pub const THREADS: &str = "Thread pool for handling multiple connections";
    /// Stage 3: overload.
    pub const QUEUING: &str = "Connection queuing during high load";
    /// Stage 4: one loop, many connections.
    pub const EVENT_LOOP: &str = "Working epoll/kqueue-based event loop";
    /// Stage 4: nobody waits for a slow peer.
    pub const NON_BLOCKING: &str = "Non-blocking socket I/O";
    /// Stage 4: timers.
    pub const TIMEOUTS: &str = "Connection timeout handling";
    /// Stage 5: processes.
    pub const PREFORK: &str = "Pre-fork worker process model";
    /// Stage 5: supervision.
    pub const MONITORING: &str = "Process monitoring and management";
    /// Stage 5: reload.
    pub const RECYCLING: &str = "Graceful worker process recycling";
    /// Every stage: the last check, which stops the server.
    pub const SHUTDOWN: &str = "Graceful shutdown under load";
}

macro_rules! stage3_checks {
    ($extra:ident, $extra_milestone:ident) => {
        [
            check!(
                half_request_does_not_stop_others,
                THREADS,
                Required,
                "a client that sends half a request head does not stop another from being served"
            ),
            check!(
                keepalive_holders_do_not_stop_a_new_client,
                THREADS,
                Required,
                "64 idle keep-alive clients do not keep a new client waiting longer than 3 s"
            ),
            check!(
                overload_gets_503_or_a_queue_wait,
                QUEUING,
                Required,
                "256 clients at once each get 200 or 503, none a reset or a hang, and the server lives"
            ),
            check!(
                hundreds_of_keepalive_connections_progress,
                $extra_milestone,
                $extra,
                "300 keep-alive connections each get 3 answers in turn, none closed or left waiting"
            ),
            check!(
                slowloris_leaves_clients_served,
                $extra_milestone,
                $extra,
                "128 connections trickling a header byte at a time leave normal clients served within 3 s"
            ),
        ]
    };
}

const SIGTERM_CHECK: Check<Ctx> = check!(
    sigterm_drains_under_load,
    SHUTDOWN,
    Required,
    "SIGTERM under load: every answer already started is whole, and the server exits within its grace period"
);

const STAGE3_LIST: [Check<Ctx>; 5] = stage3_checks!(Extra, THREADS);
const STAGE4_FROM3: [Check<Ctx>; 5] = stage3_checks!(Required, EVENT_LOOP);

macro_rules! stage4_checks {
    () => {
        [
            check!(
                idle_connections_held_while_new_clients_are_served,
                EVENT_LOOP,
                Required,
                "10,000 idle keep-alive connections stay open while new clients are served (memory per connection reported)"
            ),
            check!(
                threads_do_not_grow_with_connections,
                EVENT_LOOP,
                Required,
                "the server's thread count does not grow with its connections (a runtime's fixed set is fine)"
            ),
            check!(
                slow_reader_does_not_stop_others,
                NON_BLOCKING,
                Required,
                "a client that stops reading a large file does not stop another from being served"
            ),
            check!(
                stalled_head_gets_408_or_close,
                TIMEOUTS,
                Required,
                "a request head that stalls gets 408 or a close within the header timeout"
            ),
        ]
    };
}

const STAGE5_OWN: [Check<Ctx>; 4] = [
    check!(
        several_processes_serve_the_port,
        PREFORK,
        Required,
        "more than one process started by the command holds the port's sockets"
    ),
    check!(
        killed_worker_is_replaced,
        MONITORING,
        Required,
        "kill -9 of a worker under load: a replacement appears, the load goes on, and no more requests fail than the worker held"
    ),
    check!(
        sighup_keeps_serving,
        RECYCLING,
        Required,
        "SIGHUP under load: the server keeps serving, with no more errors than connections open"
    ),
    check!(
        sighup_loses_nothing,
        RECYCLING,
        Extra,
        "SIGHUP under load loses no request at all"
    ),
];

/// The stage 3 rubric.
pub static STAGE3: [Check<Ctx>; 6] = {
    let [a, b, c, d, e] = STAGE3_LIST;
    [a, b, c, d, e, SIGTERM_CHECK]
};

/// The stage 4 rubric: stage 3's with its extra credit required, and its
/// own.
pub static STAGE4: [Check<Ctx>; 10] = {
    let [a, b, c, d, e] = STAGE4_FROM3;
    let [f, g, h, i] = stage4_checks!();
    [a, b, c, d, e, f, g, h, i, SIGTERM_CHECK]
};

/// The stage 5 rubric: stage 4's and its own.
pub static STAGE5: [Check<Ctx>; 14] = {
    let [a, b, c, d, e] = STAGE4_FROM3;
    let [f, g, h, i] = stage4_checks!();
    let [j, k, l, m] = STAGE5_OWN;
    [a, b, c, d, e, f, g, h, i, j, k, l, m, SIGTERM_CHECK]
};

/// The rubric of `stage` (3, 4 or 5).
pub fn rubric(stage: u8) -> &'static [Check<Ctx>] {
    match stage {
        3 => &STAGE3,
        4 => &STAGE4,
        _ => &STAGE5,
    }
}

/// The milestones of `stage`'s rubric in the order the course teaches
/// them; the shutdown is last, because its check stops the server.
pub fn milestones(stage: u8) -> Vec<&'static str> {
    use milestone::*;
    match stage {
        3 => vec![THREADS, QUEUING, SHUTDOWN],
        4 => vec![
            THREADS,
            QUEUING,
            EVENT_LOOP,
            NON_BLOCKING,
            TIMEOUTS,
            SHUTDOWN,
        ],
        _ => vec![
            THREADS,
            QUEUING,
            EVENT_LOOP,
            NON_BLOCKING,
            TIMEOUTS,
            PREFORK,
            MONITORING,
            RECYCLING,
            SHUTDOWN,
        ],
    }
}

/// Whether the check called `name` stops the server (the checker expects
/// it to exit then, and runs it last).
pub fn ends_the_server(name: &str) -> bool {
    name == SIGTERM_CHECK.name
}

/// How long a check of these rubrics may take, for a server with `ctx`'s
/// timeouts: the signal checks wait out a grace period, the stalled head
/// a header timeout.
pub fn time_limit(ctx: &Ctx) -> Duration {
    Duration::from_secs(60)
        .max(ctx.grace_period + Duration::from_secs(30))
        .max(ctx.header_timeout * 2 + Duration::from_secs(10))
}

/// Adds what these rubrics need to the fixture root: [`LARGE`], a 64 MiB
/// file (sparse: it costs no disk) for the slow reader.
pub fn add_fixture_files(root: &Path) -> std::io::Result<()> {
    let f = std::fs::File::create(root.join(LARGE))?;
    f.set_len(LARGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rubrics build on each other: stage 4 holds every stage 3 check,
    /// its extra credit required; stage 5 holds every stage 4 check; the
    /// shutdown comes last everywhere, and names are unique.
    #[test]
    fn the_rubrics_build_on_each_other() {
        for stage in 3..=5u8 {
            let r = rubric(stage);
            assert!(ends_the_server(r[r.len() - 1].name));
            let mut names: Vec<&str> = r.iter().map(|c| c.name).collect();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), r.len());
            for c in r {
                assert!(milestones(stage).contains(&c.milestone), "{}", c.name);
            }
        }
        for c in rubric(3) {
            let in4 = rubric(4).iter().find(|d| d.name == c.name).unwrap();
            assert_eq!(in4.level, Level::Required, "{}", c.name);
        }
        for c in rubric(4) {
            assert!(rubric(5).iter().any(|d| d.name == c.name), "{}", c.name);
        }
    }
}
