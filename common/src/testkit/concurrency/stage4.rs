//! The stage 4 checks: scale, threads, slow peers, timers.

use std::io::Read;
use std::time::{Duration, Instant};

use super::clients::*;
use super::*;
use crate::testkit::check::{self, CheckResult, Failure, fail, note};
use crate::testkit::client::Client;
use crate::testkit::procfs;

/// Opens [`Ctx::idle_connections`] keep-alive connections (each asks once)
/// and keeps them idle; at least 95% of them must be held open by the
/// server (read from `/proc`) while [`NORMAL`] new clients are served
/// within [`BOUND`]. Reports the server's memory per connection.
pub fn idle_connections_held_while_new_clients_are_served(ctx: &Ctx) -> CheckResult {
    let Scene {
        a, main, newcomer, ..
    } = Scene::of(ctx);
    with_scene(
        idle_connections_held_while_new_clients_are_served_here(ctx),
        || {
            format!(
                "ulimit -n 20000\nfor i in $(seq {n}); do (printf '{KEEP}'; sleep 120) | nc {a} > /dev/null & done\nls -l /proc/{main}/fd | grep -c socket; grep VmRSS /proc/{main}/status\n{newcomer}",
                n = ctx.idle_connections
            )
        },
    )
}

fn idle_connections_held_while_new_clients_are_served_here(ctx: &Ctx) -> CheckResult {
    let n = ctx.idle_connections;
    let port = ctx.addr.port();
    let limit = crate::limits::raise_fd_limit().unwrap_or(1024);
    if limit < n as u64 + 200 {
        return Err(Failure::new(format!(
            "room for {n} connections in the checker: its open-files limit is {limit} (the \
             hard limit, `ulimit -Hn`); raise it, or ask for fewer with --idle-connections"
        )));
    }
    let pids = procfs::server_pids(ctx.pid, port);
    let rss_before = sum_rss(pids.iter().copied());
    let started = Instant::now();
    let (idle, dropped) = open_idle(ctx.addr, n, n / 20)?;
    let opened_in = started.elapsed();
    let held: usize = procfs::holders(ctx.pid, port)
        .values()
        .map(|h| h.connections)
        .sum();
    let pids = procfs::server_pids(ctx.pid, port);
    let rss_after = sum_rss(pids.iter().copied());
    let want = n - n / 20;
    if held < want {
        return Err(Failure::new(format!(
            "{n} idle keep-alive connections held open; of the {} the checker opened, \
             the server holds {held} and closed {dropped} after their answer (or gave \
             none), so the checker stopped there. A thread or a process per connection \
             runs out long before 10,000; an event loop holds each in a few KiB. (If \
             your keep-alive timeout is shorter than the {:.1?} this took, raise it for \
             the check.) Its processes: {}",
            idle.open() as usize + dropped,
            opened_in,
            describe_holders(ctx)
        )));
    }
    let slowest = normal_clients_are_served(
        ctx.addr,
        &format!("while the server holds {held} idle keep-alive connections"),
    )?;
    let per = (rss_after.saturating_sub(rss_before) as f64) / (n as f64);
    note(format!(
        "{held} idle connections held ({} open on our side); memory (VmRSS) {:.1} MiB -> {:.1} MiB \
         across {} process(es): {per:.1} KiB per connection; new clients served in at most \
         {slowest:.1?}",
        idle.open(),
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        pids.len()
    ));
    drop(idle);
    Ok(())
}

/// Counts the server's threads with one connection and with
/// [`THREAD_PROBE`] (or the idle-connection count, if smaller) open: the
/// count may not grow by a tenth of the connections.
pub fn threads_do_not_grow_with_connections(ctx: &Ctx) -> CheckResult {
    let Scene { a, main, .. } = Scene::of(ctx);
    with_scene(threads_do_not_grow_with_connections_here(ctx), || {
        format!(
            "ls /proc/{main}/task | wc -l\nfor i in $(seq {THREAD_PROBE}); do (printf '{KEEP}'; sleep 30) | nc {a} > /dev/null & done\nsleep 2; ls /proc/{main}/task | wc -l"
        )
    })
}

fn threads_do_not_grow_with_connections_here(ctx: &Ctx) -> CheckResult {
    let port = ctx.addr.port();
    let n = THREAD_PROBE.min(ctx.idle_connections).max(50);
    let (one, _) = open_idle(ctx.addr, 1, 1)?;
    let before = sum_threads(procfs::server_pids(ctx.pid, port));
    drop(one);
    let (many, _) = open_idle(ctx.addr, n, n)?;
    let pids = procfs::server_pids(ctx.pid, port);
    let after = sum_threads(pids.iter().copied());
    drop(many);
    let grew = after.saturating_sub(before);
    if grew >= n / 10 {
        return Err(Failure::new(format!(
            "the same threads for {n} connections as for one; the server's {} process(es) \
             had {before} threads with one connection and {after} with {n}: a thread per \
             connection (an event loop serves them all from one thread)",
            pids.len()
        )));
    }
    note(format!(
        "{before} thread(s) with 1 connection, {after} with {n} (in {} process(es))",
        pids.len()
    ));
    Ok(())
}

/// A client with a 4 KiB window starts downloading the 64 MiB
/// [`LARGE`] file and stops reading; another client must be served within
/// [`BOUND`] meanwhile.
pub fn slow_reader_does_not_stop_others(ctx: &Ctx) -> CheckResult {
    let Scene { a, newcomer, .. } = Scene::of(ctx);
    with_scene(slow_reader_does_not_stop_others_here(ctx), || {
        format!(
            "(printf 'GET /{LARGE} HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n'; sleep 60) | nc {a} | sleep 60 &   # a reader that never reads\n{newcomer}"
        )
    })
}

fn slow_reader_does_not_stop_others_here(ctx: &Ctx) -> CheckResult {
    let mut slow = Client::connect_small_window(ctx.addr);
    slow.send(get_request(&format!("/{LARGE}"), false).as_bytes());
    let mut first = [0u8; 1024];
    let got = slow
        .stream
        .read(&mut first)
        .map_err(|e| fail(format!("the start of /{LARGE}: {e}")))?;
    if got == 0 {
        return Err(fail(format!(
            "the start of /{LARGE}; the connection closed"
        )));
    }
    let took = new_client_is_served(
        ctx.addr,
        &format!(
            "while another client has stopped reading /{LARGE} (64 MiB): a server that \
             blocks in write() on that client serves no one else"
        ),
    )?;
    note(format!("answered in {took:.1?} beside a stalled download"));
    drop(slow);
    Ok(())
}

/// Half a request head, then silence: the server must answer 408 or close
/// within its header timeout (the checker's `--header-timeout`), with half
/// again and two seconds of slack.
pub fn stalled_head_gets_408_or_close(ctx: &Ctx) -> CheckResult {
    let Scene { a, .. } = Scene::of(ctx);
    with_scene(stalled_head_gets_408_or_close_here(ctx), || {
        format!("time (printf '{HALF}'; sleep 60) | nc {a}")
    })
}

fn stalled_head_gets_408_or_close_here(ctx: &Ctx) -> CheckResult {
    let limit = ctx.header_timeout.mul_f64(1.5) + Duration::from_secs(2);
    let mut c = Client::open(ctx.addr)?;
    c.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\n");
    set_timeouts(&c, limit);
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let answer = c.stream.read(&mut buf);
    let took = started.elapsed();
    match answer {
        Ok(0) => note(format!("closed after {took:.1?}")),
        Ok(n) => {
            check::record_received(&buf[..n]);
            let head = String::from_utf8_lossy(&buf[..n]);
            if !(head.starts_with("HTTP/1.1 408") || head.starts_with("HTTP/1.0 408")) {
                return Err(fail("408 (or a close) for a stalled request head"));
            }
            note(format!("408 after {took:.1?}"));
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            return Err(fail(format!(
                "408 or a close within {limit:.1?} of a request head that stalled (the \
                 server's header timeout is {:?}, says --header-timeout); nothing came: a \
                 connection that never finishes its head holds the server's memory, or a \
                 thread, for ever",
                ctx.header_timeout
            )));
        }
        Err(_) => note(format!("reset after {took:.1?}")),
    }
    Ok(())
}
