//! What machine the numbers come from, and CPU pinning.
//!
//! Every figure is labelled with the machine it was measured on: results
//! from a laptop and from a 64-core server are different facts.

use std::fs;
use std::io;

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;
use serde::Serialize;

/// The machine, as the report labels it.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPUs this process may run on (what `nproc` prints).
    pub cores: usize,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The CPU model, from `/proc/cpuinfo`.
    pub cpu: String,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// The date and time of the run, UTC (`2026-05-01 12:00 UTC`).
    pub date: String,
}

impl Machine {
    /// Reads the machine's description.
    pub fn detect() -> Machine {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".to_string());
        let memory_gib = fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<f64>().ok())
            })
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        let c = common::time::Civil::from_unix(common::time::unix_now());
        Machine {
            cores: cores(),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".to_string()),
            cpu,
            memory_gib,
            date: format!(
                "{:04}-{:02}-{:02} {:02}:{:02} UTC",
                c.year, c.month, c.day, c.hour, c.min
            ),
        }
    }

    /// A one-line label for figures: `2 cores (AMD EPYC), Linux 6.1, 2026-05-01 12:00 UTC`.
    pub fn label(&self) -> String {
        format!(
            "{} cores ({}), Linux {}, {}",
            self.cores, self.cpu, self.kernel, self.date
        )
    }
}

/// CPUs this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPUs this thread may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(_) => (0..cores()).collect(),
    }
}

/// Restricts the calling thread (and every thread or process it creates
/// afterwards) to `cpus`. Children inherit the mask at `fork`, which is how
/// a server ends up pinned: the bench pins itself to the server's CPUs,
/// spawns the server, then pins itself back to the load generator's.
pub fn pin_current_thread(cpus: &[usize]) -> io::Result<()> {
    let mut set = CpuSet::new();
    for &c in cpus {
        set.set(c).map_err(io::Error::from)?;
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Which CPUs go to the servers and which to the load generator.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Pinning {
    /// CPUs the server processes run on.
    pub server: Vec<usize>,
    /// CPUs the load generator runs on.
    pub loadgen: Vec<usize>,
}

impl Pinning {
    /// Splits `cpus` in two halves, the server taking the first; `None`
    /// with fewer than two CPUs (nothing to separate).
    pub fn split(cpus: &[usize]) -> Option<Pinning> {
        if cpus.len() < 2 {
            return None;
        }
        let half = cpus.len() / 2;
        Some(Pinning {
            server: cpus[..half].to_vec(),
            loadgen: cpus[half..].to_vec(),
        })
    }

    /// `server on CPU 0, load generator on CPU 1`.
    pub fn describe(&self) -> String {
        format!(
            "servers on CPU {}, load generator on CPU {}",
            list(&self.server),
            list(&self.loadgen)
        )
    }
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_cpus() {
        assert_eq!(Pinning::split(&[0]), None);
        let p = Pinning::split(&[0, 1]).unwrap();
        assert_eq!(
            (p.server.as_slice(), p.loadgen.as_slice()),
            (&[0][..], &[1][..])
        );
        let p = Pinning::split(&[0, 1, 2, 3, 4]).unwrap();
        assert_eq!(p.server, [0, 1]);
        assert_eq!(p.loadgen, [2, 3, 4]);
        assert_eq!(
            p.describe(),
            "servers on CPU 0,1, load generator on CPU 2,3,4"
        );
    }
}
