//! The TLS comparison (`--scenario tls`): stages 4 and 5 against nginx,
//! serving HTTPS with one certificate (ECDSA P-256, made by rcgen for the
//! run), measured by wrk, which speaks TLS through OpenSSL.
//!
//! Each round, each server in turn: keep-alive requests per second on the
//! small page in plain HTTP, then over TLS, then over TLS with
//! `Connection: close`, so that every request is a new connection and a
//! full handshake (wrk does not resume sessions): handshakes per second.
//! The ratios (TLS / plain, and each stage / nginx) pair runs of the same
//! round, as everywhere in the bench.

use std::io;
use std::path::Path;
use std::process::Command;

use serde::Serialize;

use crate::machine::Pinning;
use crate::stats::{Spread, paired_ratio};
use crate::targets::{self, SMALL_PATH, StartOptions, Target};

/// The servers the comparison runs, when they are among the selected.
pub const SERVERS: [&str; 3] = ["stage4-epoll", "stage5-prefork", "nginx"];

/// Connections wrk keeps open.
pub const CONNECTIONS: usize = 16;

/// One way of asking, measured on every server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Way {
    /// Keep-alive, plain HTTP.
    Plain,
    /// Keep-alive over TLS.
    Tls,
    /// Over TLS, a new connection (and handshake) per request.
    Handshakes,
}

impl Way {
    const ALL: [Way; 3] = [Way::Plain, Way::Tls, Way::Handshakes];
}

/// One server's figures, one value per round (`None`: the run failed).
#[derive(Debug, Clone, Serialize)]
pub struct TlsRow {
    /// The server.
    pub server: String,
    /// Keep-alive requests/s, plain HTTP.
    pub plain_rps: Vec<Option<f64>>,
    /// Keep-alive requests/s over TLS.
    pub tls_rps: Vec<Option<f64>>,
    /// Requests/s with a new TLS connection each: handshakes per second.
    pub handshakes: Vec<Option<f64>>,
    /// Socket errors and non-2xx answers wrk counted, all runs together.
    pub errors: u64,
    /// Why a run failed, if one did.
    pub failures: Vec<String>,
}

impl TlsRow {
    fn values(&self, way: Way) -> &[Option<f64>] {
        match way {
            Way::Plain => &self.plain_rps,
            Way::Tls => &self.tls_rps,
            Way::Handshakes => &self.handshakes,
        }
    }

    /// The median over rounds of `way`.
    pub fn median(&self, way: Way) -> Option<Spread> {
        let v: Vec<f64> = self.values(way).iter().flatten().copied().collect();
        Spread::of(&v)
    }

    /// TLS keep-alive over plain keep-alive, paired by round.
    pub fn tls_over_plain(&self) -> Option<Spread> {
        paired_ratio(&self.tls_rps, &self.plain_rps)
    }

    /// This server's `way` over `other`'s, paired by round.
    pub fn over(&self, other: &TlsRow, way: Way) -> Option<Spread> {
        paired_ratio(self.values(way), other.values(way))
    }
}

/// The comparison, as `results.json` and `summary.md` hold it.
#[derive(Debug, Clone, Serialize)]
pub struct TlsComparison {
    /// The certificate every server presented.
    pub certificate: String,
    /// One wrk command line of each kind (keep-alive TLS, handshakes).
    pub commands: Vec<String>,
    /// wrk's connections.
    pub connections: usize,
    /// wrk's threads.
    pub threads: usize,
    /// Seconds per run.
    pub duration_secs: u64,
    /// Seconds of unmeasured load before each run.
    pub warmup_secs: u64,
    /// Rounds.
    pub rounds: usize,
    /// One row per server.
    pub rows: Vec<TlsRow>,
}

/// What the comparison needs from the run.
#[derive(Debug)]
pub struct TlsRun<'a> {
    /// The selected servers (those in [`SERVERS`] are measured).
    pub targets: &'a [Target],
    /// The site.
    pub site: &'a Path,
    /// The servers' logs and scratch space.
    pub logs: &'a Path,
    /// CPU pinning.
    pub pinning: Option<&'a Pinning>,
    /// wrk's threads.
    pub threads: usize,
    /// Seconds per run (wrk counts in whole seconds).
    pub duration_secs: u64,
    /// Seconds of warm-up load before each run (0: none).
    pub warmup_secs: u64,
    /// Rounds.
    pub rounds: usize,
}

impl TlsRun<'_> {
    /// Runs the comparison; an error if wrk is missing or no server of
    /// [`SERVERS`] is selected.
    pub fn run(&self) -> io::Result<TlsComparison> {
        if !crate::wrk::installed() {
            return Err(io::Error::other(
                "--scenario tls needs wrk (Debian package wrk)",
            ));
        }
        let servers: Vec<&Target> = self
            .targets
            .iter()
            .filter(|t| SERVERS.contains(&t.name.as_str()))
            .collect();
        if servers.is_empty() {
            return Err(io::Error::other(format!(
                "--scenario tls measures {}; none is selected",
                SERVERS.join(", ")
            )));
        }
        let certs = common::testkit::tls::Certs::new("bench-tls");
        let mut rows: Vec<TlsRow> = servers
            .iter()
            .map(|t| TlsRow {
                server: t.name.clone(),
                plain_rps: Vec::new(),
                tls_rps: Vec::new(),
                handshakes: Vec::new(),
                errors: 0,
                failures: Vec::new(),
            })
            .collect();
        let mut commands = Vec::new();
        for round in 0..self.rounds {
            for (target, row) in servers.iter().zip(rows.iter_mut()) {
                for way in Way::ALL {
                    let tls = (way != Way::Plain).then_some((&*certs.cert, &*certs.key));
                    let got = self.measure(target, tls, way);
                    let value = match got {
                        Ok((rps, errors, command)) => {
                            eprintln!(
                                "bench: tls round {}: {} {way:?}: {rps:.0} req/s, {errors} error(s)",
                                round + 1,
                                target.name
                            );
                            row.errors += errors;
                            if round == 0 && commands.len() < 2 && way != Way::Plain {
                                commands.push(command);
                            }
                            Some(rps)
                        }
                        Err(e) => {
                            row.failures.push(format!("{way:?}: {e}"));
                            None
                        }
                    };
                    match way {
                        Way::Plain => row.plain_rps.push(value),
                        Way::Tls => row.tls_rps.push(value),
                        Way::Handshakes => row.handshakes.push(value),
                    }
                }
            }
        }
        Ok(TlsComparison {
            certificate: "ECDSA P-256, self-signed for 127.0.0.1 (rcgen)".into(),
            commands,
            connections: CONNECTIONS,
            threads: self.threads,
            duration_secs: self.duration_secs,
            warmup_secs: self.warmup_secs,
            rounds: self.rounds,
            rows,
        })
    }

    /// Starts `target` (with TLS if `tls`), runs wrk once, stops it:
    /// requests/s, errors, the command line.
    fn measure(
        &self,
        target: &Target,
        tls: Option<(&Path, &Path)>,
        way: Way,
    ) -> io::Result<(f64, u64, String)> {
        let opts = StartOptions {
            tls,
            ..StartOptions::new(self.site, self.logs, self.pinning)
        };
        let mut server = targets::start(target, &opts)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut args = vec![
            "-t".to_string(),
            self.threads.to_string(),
            "-c".into(),
            CONNECTIONS.to_string(),
            "-d".into(),
            format!("{}s", self.duration_secs),
        ];
        if way == Way::Handshakes {
            args.extend(["-H".into(), "Connection: close".into()]);
        }
        args.push(format!("{scheme}://{}{SMALL_PATH}", server.addr));
        if self.warmup_secs > 0 {
            // The same load, unmeasured: the server's caches and pools warm.
            let mut warm = args.clone();
            warm[5] = format!("{}s", self.warmup_secs);
            Command::new("wrk").args(&warm).output()?;
        }
        let out = Command::new("wrk").args(&args).output()?;
        let alive = server.alive();
        server.stop();
        let text = String::from_utf8_lossy(&out.stdout);
        let (rps, errors) = parse_wrk(&text)
            .ok_or_else(|| io::Error::other(format!("unexpected wrk output:\n{text}")))?;
        if !alive {
            return Err(io::Error::other(format!(
                "{} was not running at the end of the run",
                target.name
            )));
        }
        let quoted: Vec<String> = args
            .iter()
            .map(|a| {
                if a.contains(' ') {
                    format!("'{a}'")
                } else {
                    a.clone()
                }
            })
            .collect();
        Ok((rps, errors, format!("wrk {}", quoted.join(" "))))
    }
}

/// Requests/s and the errors (socket errors plus non-2xx/3xx answers)
/// from wrk's report.
pub fn parse_wrk(text: &str) -> Option<(f64, u64)> {
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())?;
    let mut errors = 0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Socket errors:") {
            // `connect 0, read 0, write 0, timeout 0`
            errors += rest
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Some((rps, errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrks_report() {
        let text = "Running 1s test @ https://127.0.0.1:1/\n  1 threads and 16 connections\n  \
                    3021 requests in 1.00s, 4.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n  \
                    Non-2xx or 3xx responses: 4\nRequests/sec:   3017.52\nTransfer/sec:      3.99MB\n";
        assert_eq!(parse_wrk(text), Some((3017.52, 7)));
        assert_eq!(
            parse_wrk("Requests/sec: 10.5\n"),
            Some((10.5, 0)),
            "no error lines: none"
        );
        assert_eq!(parse_wrk("wrk: unable to connect\n"), None);
    }
}
