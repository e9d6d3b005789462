//! Stage 5's command line: the shared HTTP settings plus the process model.

use std::path::PathBuf;

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

    /// Worker processes; 0 means one per CPU.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub workers: usize,

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

    /// Pin worker i to CPU i (modulo the number of CPUs).
    #[arg(long, value_name = "BOOL", default_value_t = false, action = clap::ArgAction::Set)]
    pub cpu_affinity: bool,

    /// Run the workers as this user (the master must start as root; it
    /// binds first, so a port below 1024 works).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,

    /// Workers chroot(2) into this folder before dropping privileges; then
    /// --root is a path inside it.
    #[arg(long, value_name = "DIR")]
    pub chroot: Option<PathBuf>,
}

impl Args {
    /// The number of workers to run.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(1, usize::from)
        }
    }
}
