//! The counters every HTTP stage keeps, and the status page that shows them.
//!
//! [`Counters`] is only atomics, `#[repr(C)]`, with all-zero bytes a valid
//! value: one instance can live in ordinary memory (stages 2–4 use the
//! process-wide [`PROCESS`]) or in memory shared between processes (stage 5
//! puts one in each worker's scoreboard slot and sums them).
//!
//! `Conn` records every response it produces; the stages record what only
//! they see: connections accepted and rejected, connections open and idle,
//! and timeouts by kind.
//!
//! The status page is the Prometheus text exposition format 0.0.4: `# HELP`
//! and `# TYPE` lines, then `name{labels} value`. Humans can read it too.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::http::StatusSource;

/// What kind of timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The request head did not arrive in time (`--header-timeout`).
    Header,
    /// An idle keep-alive connection was closed (`--keepalive-timeout`).
    KeepAlive,
    /// A send made no progress (`--send-timeout`).
    Send,
}

// ANCHOR: counters
/// Counters of one server process (or one stage-5 worker).
#[derive(Debug, Default)]
#[repr(C)]
pub struct Counters {
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub responses: [AtomicU64; 5],
    /// Response body bytes (what the access log records).
    pub bytes: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections refused at the door (503 when full).
    pub rejected: AtomicU64,
    /// Requests answered 429 by `--rate-limit`.
    pub rate_limited: AtomicU64,
    /// SIGHUP reloads applied.
    pub reloads_applied: AtomicU64,
    /// SIGHUP reloads refused (a file that does not parse, a bad value).
    pub reloads_failed: AtomicU64,
    /// Connections open now.
    pub active: AtomicU64,
    /// Of those, connections waiting for their next request.
    pub idle: AtomicU64,
    /// Header timeouts.
    pub timeouts_header: AtomicU64,
    /// Keep-alive idle timeouts.
    pub timeouts_keepalive: AtomicU64,
    /// Send timeouts.
    pub timeouts_send: AtomicU64,
    /// When the process started, in seconds since the epoch (0: unknown).
    pub started_at: AtomicU64,
    /// Microseconds an event loop spent handling events, outside
    /// `epoll_wait` (stages 4 and 5; stage 5's master sizes its pool from
    /// it). Not on the shared part of the status page: 0 in stages 2–3.
    pub loop_busy_us: AtomicU64,
    /// Non-zero when the server speaks TLS (`--tls-cert`): the handshake
    /// counters are shown only then.
    pub tls_enabled: AtomicU64,
    /// TLS handshakes completed.
    pub tls_ok: AtomicU64,
    /// TLS handshakes refused: a bad handshake, plaintext on the TLS port.
    pub tls_failed: AtomicU64,
    /// TLS handshakes cut off by the header timeout.
    pub tls_timeout: AtomicU64,
}
// ANCHOR_END: counters

/// The counters of this process, for stages with one site per process.
pub static PROCESS: Counters = Counters::new();

impl Counters {
    /// All zero.
    pub const fn new() -> Counters {
        Counters {
            responses: [const { AtomicU64::new(0) }; 5],
            bytes: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            reloads_applied: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            active: AtomicU64::new(0),
            idle: AtomicU64::new(0),
            timeouts_header: AtomicU64::new(0),
            timeouts_keepalive: AtomicU64::new(0),
            timeouts_send: AtomicU64::new(0),
            started_at: AtomicU64::new(0),
            loop_busy_us: AtomicU64::new(0),
            tls_enabled: AtomicU64::new(0),
            tls_ok: AtomicU64::new(0),
            tls_failed: AtomicU64::new(0),
            tls_timeout: AtomicU64::new(0),
        }
    }

    /// Sets every counter back to zero (a stage-5 slot for a new worker).
    pub fn reset(&self) {
        for a in &self.responses {
            a.store(0, Relaxed);
        }
        for a in [
            &self.bytes,
            &self.accepted,
            &self.rejected,
            &self.rate_limited,
            &self.reloads_applied,
            &self.reloads_failed,
            &self.active,
            &self.idle,
            &self.timeouts_header,
            &self.timeouts_keepalive,
            &self.timeouts_send,
            &self.started_at,
            &self.loop_busy_us,
            &self.tls_enabled,
            &self.tls_ok,
            &self.tls_failed,
            &self.tls_timeout,
        ] {
            a.store(0, Relaxed);
        }
    }

    /// Responses sent, all classes.
    pub fn requests(&self) -> u64 {
        self.responses.iter().map(|a| a.load(Relaxed)).sum()
    }

    /// Records one response.
    pub fn response(&self, status: u16, body_bytes: u64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Relaxed);
        self.bytes.fetch_add(body_bytes, Relaxed);
    }

    /// Records a connection that was accepted and is now open.
    pub fn opened(&self) {
        self.accepted.fetch_add(1, Relaxed);
        self.active.fetch_add(1, Relaxed);
    }

    /// Records a connection that closed.
    pub fn closed(&self) {
        // Saturating: a stage-5 slot is reset while a worker may still close.
        let _ = self
            .active
            .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }

    /// Records a connection turned away at the door.
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// Records a request answered 429 by the rate limit.
    pub fn limited(&self) {
        self.rate_limited.fetch_add(1, Relaxed);
    }

    /// A connection became idle (`true`) or busy again (`false`).
    pub fn idle(&self, idle: bool) {
        if idle {
            self.idle.fetch_add(1, Relaxed);
        } else {
            let _ = self
                .idle
                .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
        }
    }

    /// Records a timeout.
    pub fn timeout(&self, kind: Timeout) {
        match kind {
            Timeout::Header => &self.timeouts_header,
            Timeout::KeepAlive => &self.timeouts_keepalive,
            Timeout::Send => &self.timeouts_send,
        }
        .fetch_add(1, Relaxed);
    }

    /// Sets the start time to now, if it is not set.
    pub fn mark_started(&self) {
        let _ = self
            .started_at
            .compare_exchange(0, crate::time::unix_now(), Relaxed, Relaxed);
    }

    /// Adds `other` into `self` (to sum workers).
    pub fn add(&self, other: &Counters) {
        for (a, b) in self.responses.iter().zip(&other.responses) {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
        for (a, b) in [
            (&self.bytes, &other.bytes),
            (&self.accepted, &other.accepted),
            (&self.rejected, &other.rejected),
            (&self.rate_limited, &other.rate_limited),
            (&self.reloads_applied, &other.reloads_applied),
            (&self.reloads_failed, &other.reloads_failed),
            (&self.active, &other.active),
            (&self.idle, &other.idle),
            (&self.timeouts_header, &other.timeouts_header),
            (&self.timeouts_keepalive, &other.timeouts_keepalive),
            (&self.timeouts_send, &other.timeouts_send),
            (&self.loop_busy_us, &other.loop_busy_us),
            (&self.tls_enabled, &other.tls_enabled),
            (&self.tls_ok, &other.tls_ok),
            (&self.tls_failed, &other.tls_failed),
            (&self.tls_timeout, &other.tls_timeout),
        ] {
            a.fetch_add(b.load(Relaxed), Relaxed);
        }
        let started = other.started_at.load(Relaxed);
        if started != 0 {
            let _ = self.started_at.fetch_update(Relaxed, Relaxed, |s| {
                Some(if s == 0 { started } else { s.min(started) })
            });
        }
    }

    /// Appends the counters in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let g = |a: &AtomicU64| a.load(Relaxed);
        let _ = writeln!(
            out,
            "# HELP http_responses_total Responses sent, by status class."
        );
        let _ = writeln!(out, "# TYPE http_responses_total counter");
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                g(c)
            );
        }
        let total: u64 = self.responses.iter().map(g).sum();
        metric(
            out,
            "http_requests_total",
            "counter",
            "Responses sent, all statuses.",
            total,
        );
        for (name, kind, help, value) in [
            (
                "http_response_bytes_total",
                "counter",
                "Response body bytes sent.",
                &self.bytes,
            ),
            (
                "http_connections_accepted_total",
                "counter",
                "Connections accepted.",
                &self.accepted,
            ),
            (
                "http_connections_rejected_total",
                "counter",
                "Connections refused at the door (503).",
                &self.rejected,
            ),
            (
                "http_requests_rate_limited_total",
                "counter",
                "Requests answered 429 by --rate-limit.",
                &self.rate_limited,
            ),
            (
                "http_connections_active",
                "gauge",
                "Connections open now.",
                &self.active,
            ),
            (
                "http_connections_idle",
                "gauge",
                "Connections waiting for their next request.",
                &self.idle,
            ),
        ] {
            metric(out, name, kind, help, g(value));
        }
        let _ = writeln!(
            out,
            "# HELP http_timeouts_total Connections closed by a timeout, by kind."
        );
        let _ = writeln!(out, "# TYPE http_timeouts_total counter");
        for (kind, value) in [
            ("header", &self.timeouts_header),
            ("keepalive", &self.timeouts_keepalive),
            ("send", &self.timeouts_send),
        ] {
            let _ = writeln!(out, "http_timeouts_total{{kind=\"{kind}\"}} {}", g(value));
        }
        let _ = writeln!(
            out,
            "# HELP http_config_reloads_total SIGHUP reloads, applied or refused."
        );
        let _ = writeln!(out, "# TYPE http_config_reloads_total counter");
        for (result, value) in [
            ("applied", &self.reloads_applied),
            ("failed", &self.reloads_failed),
        ] {
            let _ = writeln!(
                out,
                "http_config_reloads_total{{result=\"{result}\"}} {}",
                g(value)
            );
        }
        if g(&self.tls_enabled) > 0 {
            let _ = writeln!(
                out,
                "# HELP http_tls_handshakes_total TLS handshakes, by outcome.\n# TYPE http_tls_handshakes_total counter"
            );
            for (result, value) in [
                ("ok", &self.tls_ok),
                ("failed", &self.tls_failed),
                ("timeout", &self.tls_timeout),
            ] {
                let _ = writeln!(
                    out,
                    "http_tls_handshakes_total{{result=\"{result}\"}} {}",
                    g(value)
                );
            }
        }
        let started = g(&self.started_at);
        let uptime = if started == 0 {
            0
        } else {
            crate::time::unix_now().saturating_sub(started)
        };
        let _ = writeln!(
            out,
            "# HELP http_uptime_seconds Seconds since the server started.\n# TYPE http_uptime_seconds gauge\nhttp_uptime_seconds {uptime}"
        );
    }
}

/// Appends a stage's own metrics to the status page.
pub type Extra = Box<dyn Fn(&mut String) + Send + Sync>;

/// A status page made of a [`Counters`] plus a stage's own figures.
pub struct Status {
    /// The counters shown.
    pub counters: &'static Counters,
    /// Appends the stage's own metrics (queue depth, loop iterations...).
    pub extra: Option<Extra>,
}

impl std::fmt::Debug for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Status")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl StatusSource for Status {
    fn render(&self, out: &mut String) {
        self.counters.render(out);
        if let Some(extra) = &self.extra {
            extra(out);
        }
    }
}

/// A stage's status page: this process's [`PROCESS`] counters plus the
/// stage's own figures, appended by `extra`.
pub fn page(extra: Option<Extra>) -> std::sync::Arc<dyn StatusSource> {
    std::sync::Arc::new(Status {
        counters: &PROCESS,
        extra,
    })
}

/// Appends one gauge or counter with its `# HELP` and `# TYPE` lines.
pub fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_by_class_and_sums() {
        let c = Counters::new();
        c.response(200, 10);
        c.response(206, 5);
        c.response(404, 7);
        c.response(503, 0);
        c.opened();
        c.opened();
        c.closed();
        c.timeout(Timeout::Header);
        let total = Counters::new();
        total.add(&c);
        total.add(&c);
        let mut text = String::new();
        total.render(&mut text);
        assert!(
            text.contains("http_responses_total{class=\"2xx\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("http_responses_total{class=\"4xx\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("http_requests_total 8\n"), "{text}");
        assert!(text.contains("http_response_bytes_total 44\n"), "{text}");
        assert!(text.contains("http_connections_active 2\n"), "{text}");
        assert!(
            text.contains("http_timeouts_total{kind=\"header\"} 2\n"),
            "{text}"
        );
    }

    /// The TLS handshake counters are on the page only when TLS is on.
    #[test]
    fn tls_counters_show_only_with_tls() {
        let c = Counters::new();
        let mut text = String::new();
        c.render(&mut text);
        assert!(!text.contains("http_tls_handshakes_total"), "{text}");
        c.tls_enabled.store(1, Relaxed);
        c.tls_failed.fetch_add(1, Relaxed);
        text.clear();
        c.render(&mut text);
        assert!(
            text.contains("http_tls_handshakes_total{result=\"failed\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("http_tls_handshakes_total{result=\"ok\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn gauges_never_go_below_zero() {
        let c = Counters::new();
        c.closed();
        c.idle(false);
        assert_eq!(c.active.load(Relaxed), 0);
        assert_eq!(c.idle.load(Relaxed), 0);
    }
}
