//! The stage 3 checks: concurrency, overload, and the shutdown every
//! rubric ends with.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::clients::*;
use super::*;
use crate::testkit::check::{CheckResult, Failure, fail, note};
use crate::testkit::client::Client;
use crate::testkit::procfs;

/// Half a request head on one connection; a whole request on another must
/// be answered meanwhile. A sequential server waits for the first client
/// (until its header timeout).
pub fn half_request_does_not_stop_others(ctx: &Ctx) -> CheckResult {
    let Scene { a, newcomer, .. } = Scene::of(ctx);
    with_scene(half_request_does_not_stop_others_here(ctx), || {
        format!("(printf '{HALF}'; sleep 60) | nc {a} &\n{newcomer}")
    })
}

fn half_request_does_not_stop_others_here(ctx: &Ctx) -> CheckResult {
    let mut holder = Client::open(ctx.addr)?;
    holder.send(b"GET /index.html HTTP/1.1\r\nHost: t\r\n");
    let took = new_client_is_served(
        ctx.addr,
        "while another connection holds half a request head",
    )?;
    note(format!(
        "answered in {took:.1?} while another client held half a request"
    ));
    drop(holder);
    Ok(())
}

/// [`HOLDERS`] clients ask once and keep their connections idle; a new
/// client must be answered within [`BOUND`]. A server may close idle
/// connections to make room (our stage 3's `--fair`), or hold them all
/// (stage 4); it may not make the newcomer wait for their timeouts.
pub fn keepalive_holders_do_not_stop_a_new_client(ctx: &Ctx) -> CheckResult {
    let Scene { a, newcomer, .. } = Scene::of(ctx);
    with_scene(keepalive_holders_do_not_stop_a_new_client_here(ctx), || {
        format!(
            "for i in $(seq {HOLDERS}); do (printf '{KEEP}'; sleep 60) | nc {a} > /dev/null & done\n{newcomer}"
        )
    })
}

fn keepalive_holders_do_not_stop_a_new_client_here(ctx: &Ctx) -> CheckResult {
    let request = get_request("/index.html", false);
    let mut conns = Vec::new();
    for _ in 0..HOLDERS {
        if let Ok(mut s) = TcpStream::connect_timeout(&ctx.addr, BOUND)
            && s.write_all(request.as_bytes()).is_ok()
        {
            conns.push(s);
        }
    }
    let opened = conns.len();
    let holders = Held::start(conns);
    // Their answers, for at most BOUND: a sequential server answers one and
    // then waits on it.
    wait_for(BOUND, || holders.answered() >= opened as u64);
    let took = new_client_is_served(
        ctx.addr,
        &format!(
            "while {opened} other clients hold idle keep-alive connections ({} of them were \
             answered)",
            holders.answered(),
        ),
    )?;
    note(format!(
        "answered in {took:.1?} beside {opened} keep-alive clients ({} answered, {} still open)",
        holders.answered(),
        holders.open()
    ));
    Ok(())
}

/// [`OVERLOAD`] clients connect and ask at once; each must get a whole
/// answer, 200 or 503, within [`OVERLOAD_WAIT`] (a wait in a queue is
/// fine), and the server must serve a new client afterwards.
pub fn overload_gets_503_or_a_queue_wait(ctx: &Ctx) -> CheckResult {
    let Scene { a, .. } = Scene::of(ctx);
    with_scene(overload_gets_503_or_a_queue_wait_here(ctx), || {
        format!(
            "for i in $(seq {OVERLOAD}); do printf '{CLOSE}' | nc {a} | head -1 & done | sort | uniq -c"
        )
    })
}

fn overload_gets_503_or_a_queue_wait_here(ctx: &Ctx) -> CheckResult {
    let request = get_request("/index.html", true);
    let started = Instant::now();
    let mut conns = Vec::new();
    for i in 0..OVERLOAD {
        let mut c = Client::try_connect(ctx.addr).map_err(|e| {
            fail(format!(
                "{OVERLOAD} connections at once; connection {} was not accepted: {e}",
                i + 1
            ))
        })?;
        c.send(request.as_bytes());
        conns.push(c);
    }
    let deadline = started + OVERLOAD_WAIT;
    let (mut ok, mut busy) = (0, 0);
    // Each connection is closed once answered, as a client does (a server
    // that lingers after its answer waits for that).
    for (i, mut c) in conns.into_iter().enumerate() {
        set_timeouts(&c, deadline.saturating_duration_since(Instant::now()));
        match c.try_response(false) {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) if r.status == 503 => busy += 1,
            Ok(r) => {
                return Err(fail(format!(
                    "200 or 503 for each of {OVERLOAD} clients at once; client {} got {}",
                    i + 1,
                    r.status
                )));
            }
            Err(e) => {
                return Err(fail(format!(
                    "200 or 503 for each of {OVERLOAD} clients at once, within {OVERLOAD_WAIT:?}; \
                     client {} got no answer ({e}) after {ok} got 200 and {busy} got 503: an \
                     overloaded server answers 503 or lets the client wait, it does not drop \
                     or forget it",
                    i + 1
                )));
            }
        }
    }
    let slowest = started.elapsed();
    new_client_is_served(ctx.addr, "after the overload")?;
    note(format!(
        "{OVERLOAD} clients at once: {ok} got 200, {busy} got 503, the last answer after {slowest:.1?}"
    ));
    Ok(())
}

/// [`HUNDREDS`] keep-alive connections, [`ROUNDS`] rounds of one request
/// on each: every connection must get every answer, none closed and none
/// kept waiting longer than [`ROUND_BOUND`]. A classic pool serves as many
/// connections at once as it has threads: the others wait, or are closed
/// to make room.
pub fn hundreds_of_keepalive_connections_progress(ctx: &Ctx) -> CheckResult {
    let Scene { a, .. } = Scene::of(ctx);
    with_scene(hundreds_of_keepalive_connections_progress_here(ctx), || {
        format!(
            "for i in $(seq {HUNDREDS}); do (for r in 1 2 3; do printf '{KEEP}'; sleep 1; done; sleep 5) | nc {a} | grep -c '^HTTP/1.1 200' & done | sort | uniq -c   # each connection should count 3"
        )
    })
}

fn hundreds_of_keepalive_connections_progress_here(ctx: &Ctx) -> CheckResult {
    let request = get_request("/index.html", false);
    let mut conns = Vec::new();
    for i in 0..HUNDREDS {
        conns.push(Client::try_connect(ctx.addr).map_err(|e| {
            fail(format!(
                "{HUNDREDS} connections open at once; connection {} failed: {e}",
                i + 1
            ))
        })?);
    }
    let mut slowest = Duration::ZERO;
    for round in 1..=ROUNDS {
        let started = Instant::now();
        for c in &mut conns {
            c.send(request.as_bytes());
        }
        let deadline = started + ROUND_BOUND;
        let (mut closed, mut waiting) = (0, 0);
        for c in &mut conns {
            set_timeouts(c, deadline.saturating_duration_since(Instant::now()));
            match c.try_response(false) {
                Ok(r) if r.status == 200 && r.header("Connection") != Some("close") => {}
                Ok(_) => closed += 1,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    waiting += 1
                }
                Err(_) => closed += 1,
            }
        }
        slowest = slowest.max(started.elapsed());
        if closed + waiting > 0 {
            return Err(Failure::new(format!(
                "every one of {HUNDREDS} keep-alive connections answered in round {round} of \
                 {ROUNDS} (one GET each), and kept open; {closed} were closed (or answered \
                 `Connection: close`) and {waiting} got no answer within {ROUND_BOUND:?}. A \
                 server that gives each connection a thread for as long as it is open serves \
                 only as many connections as it has threads: the rest wait, or are closed to \
                 make room. An event loop (stage 4) holds them all"
            )));
        }
    }
    note(format!(
        "{HUNDREDS} connections x {ROUNDS} rounds, slowest round {slowest:.1?}"
    ));
    Ok(())
}

/// [`TRICKLERS`] connections trickle a request head a byte every 100 ms;
/// [`NORMAL`] normal clients must each be served within [`BOUND`]. A pool
/// whose threads each wait on a trickling head serves no one until the
/// header timeouts cut them off.
pub fn slowloris_leaves_clients_served(ctx: &Ctx) -> CheckResult {
    let Scene { a, newcomer, .. } = Scene::of(ctx);
    with_scene(slowloris_leaves_clients_served_here(ctx), || {
        format!(
            "for i in $(seq {TRICKLERS}); do (printf 'GET /index.html HTTP/1.1\\r\\nHost: t\\r\\nX-Slow: '; while sleep 0.1; do printf a; done) | nc {a} > /dev/null & done\n{newcomer}"
        )
    })
}

fn slowloris_leaves_clients_served_here(ctx: &Ctx) -> CheckResult {
    let (crowd, opened) = Trickle::start(ctx.addr, TRICKLERS);
    let slowest = normal_clients_are_served(
        ctx.addr,
        &format!(
            "while {opened} connections trickle a request head one byte every 100 ms (a \
             slowloris attack): a thread that waits for a head is lost to everyone else \
             until the header timeout; an event loop waits for none"
        ),
    )?;
    drop(crowd);
    note(format!(
        "{NORMAL} normal clients beside {opened} trickling connections, slowest {slowest:.1?}"
    ));
    Ok(())
}

/// SIGTERM while [`LOAD`] keep-alive clients download `/big.bin`: every
/// answer that had started must arrive whole, and every process of the
/// server must be gone within its grace period (plus a second). A server
/// that does not handle SIGTERM and dies of it fails too.
pub fn sigterm_drains_under_load(ctx: &Ctx) -> CheckResult {
    let Scene { a_url, main, .. } = Scene::of(ctx);
    with_scene(sigterm_drains_under_load_here(ctx), || {
        format!(
            "ab -k -c {LOAD} -t 30 http://{a_url}/big.bin &   # or any load generator\nsleep 2; kill -TERM {main}; time wait"
        )
    })
}

fn sigterm_drains_under_load_here(ctx: &Ctx) -> CheckResult {
    let port = ctx.addr.port();
    let load = Load::start(ctx.addr, LOAD, "/big.bin");
    if !load.progresses(2 * LOAD as u64, Duration::from_secs(20)) {
        let seen = load.finish();
        return Err(Failure::new(format!(
            "{LOAD} clients downloading /big.bin to be answered before the SIGTERM: {seen:?}"
        )));
    }
    let main = procfs::main_pid(ctx.pid, port);
    let mut pids = procfs::server_pids(ctx.pid, port);
    pids.extend(procfs::tree(ctx.pid).iter().map(|p| p.pid));
    let _ = kill(Pid::from_raw(main as i32), Signal::SIGTERM);
    let signalled = Instant::now();
    let limit = ctx.grace_period + Duration::from_secs(1);
    let gone = wait_for(limit, || pids.iter().all(|&p| !procfs::alive(p)));
    let took = signalled.elapsed();
    let seen = load.finish();
    let left: Vec<u32> = pids.iter().copied().filter(|&p| procfs::alive(p)).collect();
    if !gone {
        return Err(Failure::new(format!(
            "every process of the server gone within its grace period of {:?} (+1 s) after \
             SIGTERM to pid {main}; still running: {left:?} (a server stops accepting, \
             finishes what is in flight, and exits; tell the checker a longer \
             --grace-period if yours is)",
            ctx.grace_period
        )));
    }
    if seen.cut > 0 {
        return Err(Failure::new(format!(
            "every answer that had started before the close arrives whole; {} of {} were \
             cut short (the server closed connections in the middle of a response instead \
             of finishing it)",
            seen.cut,
            seen.cut + seen.ok + seen.other
        )));
    }
    if main == ctx.pid
        && let Some(code) = exit_code(main)
        && code & 0x7f == Signal::SIGTERM as i32
    {
        return Err(Failure::new(
            "a graceful exit on SIGTERM; the server died of the signal (its default action): \
             catch it, stop accepting, finish what is in flight, then exit",
        ));
    }
    note(format!(
        "SIGTERM to pid {main} under {LOAD} downloads: all gone after {took:.1?}; {} whole \
         answers, none cut",
        seen.ok + seen.other
    ));
    Ok(())
}

/// The wait status of a zombie child (`exit_code` of `/proc/PID/stat`,
/// before it is reaped).
fn exit_code(pid: u32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    // exit_code is field 52 of the line; the fields here start at 3.
    rest.split_whitespace().nth(49)?.parse().ok()
}
