//! The scoreboard: one slot of counters per worker, in memory that the
//! master and every worker share.
//!
//! The mapping is created by the master *before* it forks (an anonymous
//! `MAP_SHARED` mapping: after `fork` parent and children see the same
//! physical pages, where ordinary memory would be copied on write). Only
//! atomics live in it — no pointers, no locks: a worker that dies in the
//! middle of an update leaves a number a little stale, never a structure
//! half-written or a lock held forever. Apache's `mod_status` works the
//! same way.
//!
//! Workers write their own slot; the master reads all of them to balance
//! load (`--balance least-conn`) and to recycle workers, and any worker
//! reads all of them to answer `/server-status`.

#![allow(
    unsafe_code,
    reason = "mmap(2) of the shared scoreboard, and the slots' atomics read through its pointer"
)]

use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use common::stats::Counters;

use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous};

/// A slot's life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum State {
    /// No worker.
    Free = 0,
    /// Forked, setting up.
    Starting = 1,
    /// Serving.
    Running = 2,
    /// Asked to stop (reload, recycling, shutdown); finishing its work.
    Retiring = 3,
}

impl State {
    fn from_u32(v: u32) -> State {
        match v {
            1 => State::Starting,
            2 => State::Running,
            3 => State::Retiring,
            _ => State::Free,
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Free => "free",
            State::Starting => "starting",
            State::Running => "running",
            State::Retiring => "retiring",
        }
    }
}

// ANCHOR: slot
/// One worker's counters. `#[repr(C)]` and atomics only, so the layout is
/// the same in every process and all-zero bytes are a valid empty slot.
#[derive(Debug)]
#[repr(C)]
pub struct Slot {
    /// The worker's process id (0 when free).
    pub pid: AtomicI32,
    /// A [`State`] as `u32`.
    pub state: AtomicU32,
    /// The worker's counters: what `Conn` and the event loop record in a
    /// stage 2–4 process's `common::stats::PROCESS`, here per worker.
    pub counters: Counters,
    /// When it started, in seconds since the epoch.
    pub started_at: AtomicU64,
    /// Last sign of life, in seconds since the epoch.
    pub heartbeat: AtomicU64,
    /// Share of the last sizing interval (a second) the worker's event loop
    /// spent handling events, in percent: written by the master, which
    /// reads the loop's busy time from `counters.loop_busy_us`.
    pub busy_percent: AtomicU32,
}
// ANCHOR_END: slot

/// A worker whose loop was busy at least this share of the last interval
/// (percent) is *busy*; any other running worker is *spare*. The
/// self-sizing pool keeps the number of spare workers between
/// `--min-spare` and `--max-spare`.
pub const BUSY_PERCENT: u32 = 50;

impl Slot {
    /// The slot's state.
    pub fn state(&self) -> State {
        State::from_u32(self.state.load(Ordering::Acquire))
    }

    /// Sets the slot's state.
    pub fn set_state(&self, s: State) {
        self.state.store(s as u32, Ordering::Release);
    }

    /// Whether this slot's worker counts as spare: running, and busy less
    /// than [`BUSY_PERCENT`] of the last interval.
    pub fn is_spare(&self) -> bool {
        self.state() == State::Running && self.busy_percent.load(Ordering::Relaxed) < BUSY_PERCENT
    }

    /// Clears the slot for a new worker with `pid`.
    pub fn reset(&self, pid: i32, now: u64) {
        self.counters.reset();
        self.started_at.store(now, Ordering::Relaxed);
        self.heartbeat.store(now, Ordering::Relaxed);
        self.busy_percent.store(0, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Release);
        self.set_state(State::Starting);
    }
}

/// A per-worker metric: name, type, help, and how to read it from a slot
/// (given the time now).
type PerWorker = (
    &'static str,
    &'static str,
    &'static str,
    fn(&Slot, u64) -> u64,
);

/// The shared mapping: one slot per worker, mapped once and never unmapped
/// (the master and every worker keep it until they exit), so it is a plain
/// `&'static [Slot]`: every access after `new` is safe code.
#[derive(Debug)]
pub struct Scoreboard {
    slots: &'static [Slot],
    /// One more slot, after the workers': the master's own counters (its
    /// reloads, and the connections it answered `503`), added into the
    /// totals of the status page.
    master: &'static Slot,
}

impl Scoreboard {
    // ANCHOR: mmap
    /// Maps `len` zeroed worker slots (and the master's) shared with every
    /// process forked later.
    pub fn new(len: usize) -> std::io::Result<Scoreboard> {
        let len = len.max(1) + 1;
        let bytes = size_of::<Slot>() * len;
        let size =
            NonZeroUsize::new(bytes).ok_or_else(|| std::io::Error::other("empty scoreboard"))?;
        // SAFETY: we ask for a fresh anonymous mapping (no address hint, no
        // file), so it cannot alias any memory Rust already manages.
        let ptr = unsafe {
            mmap_anonymous(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }?;
        // SAFETY: `ptr` points at `len` slots of a mapping that is never
        // unmapped, so the slice may live for the whole program; the kernel
        // zero-fills anonymous pages and zero is a valid value of every
        // field; `Slot` is `repr(C)` of atomics, so shared references from
        // several threads and processes are sound.
        let all = unsafe { std::slice::from_raw_parts(ptr.cast::<Slot>().as_ptr(), len) };
        let (master, slots) = all.split_last().expect("at least two slots");
        Ok(Scoreboard { slots, master })
    }
    // ANCHOR_END: mmap

    /// Every slot.
    pub fn slots(&self) -> &'static [Slot] {
        self.slots
    }

    /// One slot.
    pub fn slot(&self, i: usize) -> &'static Slot {
        &self.slots[i]
    }

    /// The master's counters: its reloads, and the `503`s it sends when
    /// every worker is full.
    pub fn master(&self) -> &'static Counters {
        &self.master.counters
    }

    /// Appends the Prometheus text exposition: the common counters summed
    /// over every worker, then each worker's own line.
    pub fn render(&self, out: &mut String) {
        let now = common::time::unix_now();
        let slots: Vec<(usize, &Slot)> = self
            .slots()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state() != State::Free)
            .collect();
        let total = Counters::new();
        for (_, s) in &slots {
            total.add(&s.counters);
        }
        total.add(&self.master.counters);
        total.render(out);
        common::stats::metric(
            out,
            "prefork_workers",
            "gauge",
            "Worker processes alive.",
            slots.len() as u64,
        );
        common::stats::metric(
            out,
            "prefork_workers_spare",
            "gauge",
            "Running workers whose loop was busy less than half of the last second.",
            slots.iter().filter(|(_, s)| s.is_spare()).count() as u64,
        );
        let per_worker: [PerWorker; 7] = [
            (
                "prefork_worker_connections",
                "gauge",
                "Open connections per worker.",
                |s, _| s.counters.active.load(Ordering::Relaxed),
            ),
            (
                "prefork_worker_connections_total",
                "counter",
                "Connections each worker was given.",
                |s, _| s.counters.accepted.load(Ordering::Relaxed),
            ),
            (
                "prefork_worker_requests_total",
                "counter",
                "Responses sent by each worker.",
                |s, _| s.counters.requests(),
            ),
            (
                "prefork_worker_bytes_total",
                "counter",
                "Body bytes sent by each worker.",
                |s, _| s.counters.bytes.load(Ordering::Relaxed),
            ),
            (
                "prefork_worker_busy_percent",
                "gauge",
                "Share of the last second each worker's event loop was busy.",
                |s, _| u64::from(s.busy_percent.load(Ordering::Relaxed)),
            ),
            (
                "prefork_worker_uptime_seconds",
                "gauge",
                "Seconds since each worker started.",
                |s, now| now.saturating_sub(s.started_at.load(Ordering::Relaxed)),
            ),
            (
                "prefork_worker_heartbeat_age_seconds",
                "gauge",
                "Seconds since each worker's last heartbeat.",
                |s, now| now.saturating_sub(s.heartbeat.load(Ordering::Relaxed)),
            ),
        ];
        for (name, kind, help, value) in per_worker {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (i, s) in &slots {
                let _ = writeln!(
                    out,
                    "{name}{{slot=\"{i}\",pid=\"{}\",state=\"{}\"}} {}",
                    s.pid.load(Ordering::Relaxed),
                    s.state().name(),
                    value(s, now)
                );
            }
        }
    }
}

/// The scoreboard as the status page's source of figures.
#[derive(Debug)]
pub struct Status(pub std::sync::Arc<Scoreboard>);

impl common::http::StatusSource for Status {
    fn render(&self, out: &mut String) {
        self.0.render(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes by a forked child are seen by the parent: the mapping really
    /// is shared, not copied on write.
    #[test]
    fn a_child_writes_and_the_parent_reads() {
        let board = Scoreboard::new(4).unwrap();
        assert!(board.slots().iter().all(|s| s.state() == State::Free));
        // SAFETY: the test process may have other threads (the test
        // harness); the child only touches atomics and calls `_exit`, which
        // is async-signal-safe, so it cannot deadlock on a lock another
        // thread held at fork time.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                for _ in 0..42 {
                    board.slot(2).counters.response(200, 1);
                }
                board.slot(2).set_state(State::Running);
                // SAFETY: `_exit` ends the child without running the
                // parent's atexit handlers or destructors twice.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        assert_eq!(board.slot(2).counters.requests(), 42);
        let mut text = String::new();
        board.render(&mut text);
        assert!(text.contains("http_requests_total 42\n"), "{text}");
        assert!(
            text.contains(
                "prefork_worker_requests_total{slot=\"2\",pid=\"0\",state=\"running\"} 42"
            ),
            "{text}"
        );
    }
}
