//! Reading a server's `/server-status` page from a test, and waiting until
//! a gauge on it reaches a value.
//!
//! A test that needs the server to be in some state (a crowd of connections
//! open, a connection idle) waits for the page to say so instead of sleeping
//! and hoping. Every HTTP stage serves the same `common::stats` names; stage
//! 5 sums its workers' scoreboard slots into them and adds one line per
//! worker (`prefork_worker_connections{slot="0",…}`).
//!
//! The status request is itself a connection: while the page is rendered,
//! `http_connections_active` counts it too.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::client::Client;

/// Fetches the status page (`GET /server-status`) on a new connection.
/// An error if the connection fails or the answer is not a `200` (a server
/// at its connection limit answers `503`).
pub fn scrape(addr: SocketAddr) -> Result<String, String> {
    let mut c = Client::try_connect(addr).map_err(|e| format!("connect: {e}"))?;
    c.stream
        .write_all(b"GET /server-status HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("send: {e}"))?;
    let r = c.try_response(false).map_err(|e| format!("read: {e}"))?;
    if r.status != 200 {
        return Err(format!("status {}: {}", r.status, r.text()));
    }
    Ok(r.text())
}

/// Every sample of metric `name` on `page`: its labels (`""` if none, else
/// the text between the braces) and its value.
pub fn samples<'p>(page: &'p str, name: &str) -> Vec<(&'p str, u64)> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match key.split_once('{') {
                Some((m, rest)) => (m, rest.strip_suffix('}')?),
                None => (key, ""),
            };
            if metric != name {
                return None;
            }
            Some((labels, value.trim().parse().ok()?))
        })
        .collect()
}

/// The value of metric `name` on `page`, summed over its labels; `None` if
/// the page does not have it.
pub fn value(page: &str, name: &str) -> Option<u64> {
    let s = samples(page, name);
    (!s.is_empty()).then(|| s.iter().map(|(_, v)| v).sum())
}

/// Polls the status page until `ok` holds for it, and returns that page.
/// Panics after `timeout`, naming `what` and showing the last page (or the
/// last error), so a test that waits for a state that never comes says what
/// it waited for.
pub fn wait_for(
    addr: SocketAddr,
    what: &str,
    timeout: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match scrape(addr) {
            Ok(page) if ok(&page) => return page,
            Ok(page) => page,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what}; the last status page:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until metric `name` (summed over its labels) is at least `n`, and
/// returns the page that showed it.
pub fn wait_until_at_least(addr: SocketAddr, name: &str, n: u64, timeout: Duration) -> String {
    wait_for(addr, &format!("{name} >= {n}"), timeout, |page| {
        value(page, name).is_some_and(|v| v >= n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "# HELP http_connections_active Connections open now.\n\
        # TYPE http_connections_active gauge\n\
        http_connections_active 301\n\
        http_responses_total{class=\"2xx\"} 7\n\
        prefork_worker_connections{slot=\"0\",pid=\"10\",state=\"running\"} 150\n\
        prefork_worker_connections{slot=\"1\",pid=\"11\",state=\"running\"} 151\n";

    #[test]
    fn samples_and_sums_by_exact_name() {
        assert_eq!(value(PAGE, "http_connections_active"), Some(301));
        assert_eq!(value(PAGE, "prefork_worker_connections"), Some(301));
        assert_eq!(
            samples(PAGE, "prefork_worker_connections")[1],
            ("slot=\"1\",pid=\"11\",state=\"running\"", 151)
        );
        // A prefix of a name is not the name.
        assert_eq!(value(PAGE, "http_connections"), None);
        assert_eq!(value(PAGE, "http_responses_total"), Some(7));
    }
}
