//! Stage 5's command line: the shared HTTP settings plus the process model.

use clap::{Parser, ValueEnum};
use common::server::HttpConfig;
use serde::{Deserialize, Serialize};

/// How connections reach the workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcceptModel {
    /// The master accepts and passes each socket to a worker (SCM_RIGHTS).
    Pass,
    /// Every worker accepts on the inherited listener itself
    /// (`EPOLLEXCLUSIVE`, as nginx does).
    Shared,
}

/// Which worker the master gives a connection to (pass model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each worker in turn.
    RoundRobin,
    /// The worker with the fewest live connections (from the scoreboard).
    LeastConn,
}

/// An nginx-style prefork HTTP/1.1 static-file server: a master process
/// and forked worker processes running stage 4's event loop.
#[derive(Parser, Serialize, Deserialize, Debug, Clone)]
#[command(version, about, long_about = None)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub http: HttpConfig,

    /// Worker processes, a fixed pool; 0 means one per CPU. (With
    /// --max-workers the pool sizes itself instead.)
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub workers: usize,

    /// Let the pool size itself, up to this many workers, keeping between
    /// --min-spare and --max-spare workers spare (a worker is busy when its
    /// loop was busy half of the last second); 0 keeps a fixed pool.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_workers: usize,

    /// Self-sizing pool: never fewer workers than this.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_workers: usize,

    /// Self-sizing pool: fork workers (1, 2, 4, … a second) while fewer
    /// than this many are spare.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min_spare: usize,

    /// Self-sizing pool: retire a worker (one a second) while more than
    /// this many are spare.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub max_spare: usize,

    /// How connections reach the workers.
    #[arg(long, value_enum, value_name = "MODEL", default_value_t = AcceptModel::Pass)]
    pub accept: AcceptModel,

    /// How the master picks a worker (pass model).
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = Balance::RoundRobin)]
    pub balance: Balance,

    /// Replace a worker after it sent this many responses; 0 never does.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_requests_per_worker: u64,

    /// Connections one worker holds at most.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Pin worker i to the i-th CPU (modulo their number) of those the server may run on (its `taskset` mask).
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub cpu_affinity: bool,
}

/// The bounds of a self-sizing pool (`--max-workers` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizing {
    /// Never fewer workers.
    pub min_workers: usize,
    /// Never more workers.
    pub max_workers: usize,
    /// Fork while fewer are spare.
    pub min_spare: usize,
    /// Retire while more are spare.
    pub max_spare: usize,
}

impl Args {
    /// The pool's bounds, if it sizes itself.
    pub fn sizing(&self) -> Option<Sizing> {
        (self.max_workers > 0).then_some(Sizing {
            min_workers: self.min_workers,
            max_workers: self.max_workers,
            min_spare: self.min_spare,
            max_spare: self.max_spare,
        })
    }

    /// The number of workers to start with: the fixed pool's size, or as
    /// many as a self-sizing pool needs to have `--min-spare` spare.
    pub fn worker_count(&self) -> usize {
        if let Some(s) = self.sizing() {
            return s.min_workers.max(s.min_spare).min(s.max_workers);
        }
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }
}
