//! What a server costs, read from `/proc` while it is under load.
//!
//! A server may be one process (stages 2–4), or a master with workers
//! (stage 5, nginx): every figure is summed over the process tree, and the
//! per-process figures are kept for the per-worker distribution.

use std::collections::HashMap;
use std::fs;
use std::io;

use serde::Serialize;

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat`. Linux
/// reports `USER_HZ`, which is 100 on every architecture it runs on.
const TICKS_PER_SEC: f64 = 100.0;

/// One process at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// The process id.
    pub pid: u32,
    /// CPU time used so far, user plus system, all threads, in seconds.
    pub cpu_secs: f64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Proportional set size (shared pages divided among their users), KiB:
    /// the honest figure for forked workers that share their parent's pages.
    pub pss_kib: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Of those, sockets (listeners and connections).
    pub sockets: u64,
}

/// A process tree at one moment: the root first, then its descendants.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TreeSample {
    /// One sample per live process.
    pub procs: Vec<ProcSample>,
}

impl TreeSample {
    /// Sums over the tree.
    pub fn total(&self) -> ProcSample {
        let mut t = ProcSample {
            pid: self.procs.first().map_or(0, |p| p.pid),
            ..ProcSample::default()
        };
        for p in &self.procs {
            t.cpu_secs += p.cpu_secs;
            t.rss_kib += p.rss_kib;
            t.pss_kib += p.pss_kib;
            t.fds += p.fds;
            t.sockets += p.sockets;
        }
        t
    }

    /// The descendants only (a master's workers).
    pub fn workers(&self) -> &[ProcSample] {
        self.procs.get(1..).unwrap_or(&[])
    }
}

/// Samples `pid` and all its descendants. Processes that exit while being
/// read are skipped.
pub fn sample_tree(pid: u32) -> TreeSample {
    let mut procs = Vec::new();
    for p in tree(pid) {
        if let Ok(s) = sample(p) {
            procs.push(s);
        }
    }
    TreeSample { procs }
}

/// `pid` and its descendants, `pid` first, children in pid order.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat"))
                && let Some(ppid) = stat_fields(&stat).and_then(|f| f.get(1)?.parse().ok())
            {
                children.entry(ppid).or_default().push(p);
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get_mut(&out[i]) {
            kids.sort_unstable();
            out.extend(kids.iter().copied());
        }
        i += 1;
    }
    out
}

/// The fields of `/proc/PID/stat` after the command name (which may
/// contain spaces and parentheses, so it is skipped up to the last `)`):
/// index 0 is the state, 1 the parent pid, 11 `utime`, 12 `stime`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let rest = &stat[stat.rfind(')')? + 1..];
    Some(rest.split_whitespace().collect())
}

/// CPU seconds (user + system) of one process from its `stat` text.
pub fn parse_cpu_secs(stat: &str) -> Option<f64> {
    let f = stat_fields(stat)?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SEC)
}

/// `(Rss, Pss)` in KiB from `smaps_rollup` text.
pub fn parse_rss_pss(rollup: &str) -> (u64, u64) {
    let mut rss = 0;
    let mut pss = 0;
    for line in rollup.lines() {
        let mut it = line.split_whitespace();
        let key = it.next();
        let val = it.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        match key {
            Some("Rss:") => rss = val,
            Some("Pss:") => pss = val,
            _ => {}
        }
    }
    (rss, pss)
}

/// Samples one process.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let cpu_secs = parse_cpu_secs(&stat).unwrap_or(0.0);
    let (rss_kib, pss_kib) = fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .map(|s| parse_rss_pss(&s))
        .unwrap_or((0, 0));
    let mut fds = 0;
    let mut sockets = 0;
    if let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) {
        for e in dir.flatten() {
            fds += 1;
            if fs::read_link(e.path())
                .map(|l| l.to_string_lossy().starts_with("socket:"))
                .unwrap_or(false)
            {
                sockets += 1;
            }
        }
    }
    Ok(ProcSample {
        pid,
        cpu_secs,
        rss_kib,
        pss_kib,
        fds,
        sockets,
    })
}

/// CPU seconds this process (the bench itself, all threads) has used.
pub fn self_cpu_secs() -> f64 {
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_cpu_secs(&s))
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command name with spaces and parentheses does not shift the fields.
    #[test]
    fn stat_with_awkward_command_name() {
        let stat = "1234 (a (weird) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 0 0";
        assert_eq!(parse_cpu_secs(stat), Some(3.0));
        assert_eq!(stat_fields(stat).unwrap()[1], "1");
    }

    #[test]
    fn smaps_rollup_figures() {
        let text = "55d0-7ffd ---p 00000000 00:00 0 [rollup]\nRss:     2048 kB\nPss:     1024 kB\nPss_Anon: 512 kB\n";
        assert_eq!(parse_rss_pss(text), (2048, 1024));
    }

    /// The bench can read itself: one process, some CPU, some memory.
    #[test]
    fn sampling_this_process() {
        let me = std::process::id();
        let t = sample_tree(me);
        assert_eq!(t.procs[0].pid, me);
        assert!(t.total().rss_kib > 0);
        assert!(t.total().fds > 0);
    }
}
