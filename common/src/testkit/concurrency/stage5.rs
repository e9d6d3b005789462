//! The stage 5 checks: processes, supervision, reload.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::clients::*;
use super::*;
use crate::testkit::check::{CheckResult, Failure, note};
use crate::testkit::procfs;

/// With [`LOAD`] keep-alive connections open (each answered once), more
/// than one process of the command's tree must hold a socket of the port:
/// the listener, or accepted connections.
pub fn several_processes_serve_the_port(ctx: &Ctx) -> CheckResult {
    let Scene { port, .. } = Scene::of(ctx);
    with_scene(several_processes_serve_the_port_here(ctx), || {
        format!("ss -tanp '( sport = :{port} )'")
    })
}

fn several_processes_serve_the_port_here(ctx: &Ctx) -> CheckResult {
    let (open, _) = open_idle(ctx.addr, 2 * LOAD, 2 * LOAD)?;
    let held = procfs::holders(ctx.pid, ctx.addr.port());
    let who = describe_holders(ctx);
    drop(open);
    if held.len() < 2 {
        return Err(Failure::new(format!(
            "more than one process holding the port's sockets (read from /proc/PID/fd and \
             /proc/net/tcp) with {} connections open; found {}: {who}",
            2 * LOAD,
            held.len()
        )));
    }
    note(who);
    Ok(())
}

/// Under a [`LOAD`] of keep-alive clients, `kill -9` of the worker that
/// holds the most connections (not the shallowest process that holds the
/// port: that is the master): a new process must appear in the tree within
/// 10 s, the load must go on, and no more requests may fail than the
/// connections that worker held.
pub fn killed_worker_is_replaced(ctx: &Ctx) -> CheckResult {
    let Scene { a_url, main, .. } = Scene::of(ctx);
    with_scene(killed_worker_is_replaced_here(ctx), || {
        format!(
            "ab -k -c {LOAD} -t 30 http://{a_url}/index.html &\nsleep 2; ps -o pid,cmd --ppid {main}; kill -9 WORKER; sleep 1; ps -o pid,cmd --ppid {main}; wait"
        )
    })
}

fn killed_worker_is_replaced_here(ctx: &Ctx) -> CheckResult {
    let port = ctx.addr.port();
    let load = Load::start(ctx.addr, LOAD, "/index.html");
    if !load.progresses(50, Duration::from_secs(10)) {
        load.finish();
        return Err(Failure::new("the load to be answered before the kill"));
    }
    let before: Vec<u32> = procfs::tree(ctx.pid).iter().map(|p| p.pid).collect();
    let main = procfs::main_pid(ctx.pid, port);
    let held = procfs::holders(ctx.pid, port);
    let victim = held
        .iter()
        .filter(|(pid, h)| **pid != main && h.connections > 0)
        .max_by_key(|(_, h)| h.connections)
        .map(|(pid, h)| (*pid, h.connections));
    let Some((victim, holding)) = victim else {
        let who = describe_holders(ctx);
        load.finish();
        return Err(Failure::new(format!(
            "a worker to kill: a process below the one holding the listener that holds \
             connections; found none ({who})"
        )));
    };
    let _ = kill(Pid::from_raw(victim as i32), Signal::SIGKILL);
    let killed = Instant::now();
    let replaced = wait_for(Duration::from_secs(10), || {
        let now: Vec<u32> = procfs::tree(ctx.pid).iter().map(|p| p.pid).collect();
        now.len() >= before.len() && now.iter().any(|p| !before.contains(p))
    });
    let replaced_in = killed.elapsed();
    if !replaced {
        load.finish();
        return Err(Failure::new(format!(
            "a new process in place of worker {victim}, killed with SIGKILL, within 10 s; \
             the server's processes are now: {}. A master must notice a dead worker \
             (SIGCHLD, waitpid) and fork another",
            describe_holders(ctx)
        )));
    }
    let went_on = load.progresses(50, Duration::from_secs(10));
    let seen = load.finish();
    if !went_on {
        return Err(Failure::new(format!(
            "the load to go on after the replacement; it stopped ({seen:?})"
        )));
    }
    if seen.lost() > holding as u64 {
        return Err(Failure::new(format!(
            "no more failed requests than the {holding} connection(s) the killed worker \
             held; {} failed ({seen:?})",
            seen.lost()
        )));
    }
    note(format!(
        "killed worker {victim} (it held {holding} connection(s)); a new process after \
         {replaced_in:.1?}; {} requests failed, {} answered",
        seen.lost(),
        seen.ok
    ));
    Ok(())
}

/// SIGHUP to the server under a [`LOAD`]; returns the failures and the
/// load's totals, or a failure if it stopped serving.
fn sighup_under_load(ctx: &Ctx) -> Result<(u32, Seen), Failure> {
    let port = ctx.addr.port();
    let load = Load::start(ctx.addr, LOAD, "/index.html");
    if !load.progresses(50, Duration::from_secs(10)) {
        load.finish();
        return Err(Failure::new("the load to be answered before the SIGHUP"));
    }
    let main = procfs::main_pid(ctx.pid, port);
    let _ = kill(Pid::from_raw(main as i32), Signal::SIGHUP);
    let went_on = load.progresses(200, Duration::from_secs(15));
    let seen = load.finish();
    if !went_on || !procfs::alive(main) {
        return Err(Failure::new(format!(
            "the server to keep serving after SIGHUP to pid {main} (re-read the \
             configuration, replace the workers); it stopped ({seen:?}; {})",
            describe_holders(ctx)
        )));
    }
    new_client_is_served(ctx.addr, "after the SIGHUP")?;
    Ok((main, seen))
}

/// SIGHUP under load: the server keeps serving, and no more requests fail
/// than the [`LOAD`] connections open when it came.
pub fn sighup_keeps_serving(ctx: &Ctx) -> CheckResult {
    let Scene { a_url, main, .. } = Scene::of(ctx);
    with_scene(sighup_keeps_serving_here(ctx), || {
        format!(
            "ab -k -c {LOAD} -t 20 http://{a_url}/index.html &\nsleep 2; kill -HUP {main}; wait"
        )
    })
}

fn sighup_keeps_serving_here(ctx: &Ctx) -> CheckResult {
    let (main, seen) = sighup_under_load(ctx)?;
    let errors = seen.lost() + seen.other;
    if errors > LOAD as u64 {
        return Err(Failure::new(format!(
            "no more errors than the {LOAD} connections open at the SIGHUP; {errors} \
             ({seen:?})"
        )));
    }
    note(format!(
        "SIGHUP to pid {main} under {LOAD} connections: {} answered, {errors} errors",
        seen.ok
    ));
    Ok(())
}

/// SIGHUP under load loses no request (extra credit: the old workers
/// finish what they hold while the new ones take the new connections).
pub fn sighup_loses_nothing(ctx: &Ctx) -> CheckResult {
    let Scene { a_url, main, .. } = Scene::of(ctx);
    with_scene(sighup_loses_nothing_here(ctx), || {
        format!(
            "ab -k -c {LOAD} -t 20 http://{a_url}/index.html &\nsleep 2; kill -HUP {main}; wait"
        )
    })
}

fn sighup_loses_nothing_here(ctx: &Ctx) -> CheckResult {
    let (main, seen) = sighup_under_load(ctx)?;
    let errors = seen.lost() + seen.other;
    if errors > 0 {
        return Err(Failure::new(format!(
            "no request lost to the SIGHUP; {errors} were ({seen:?}): a worker retired by a \
             reload finishes what it holds before it exits"
        )));
    }
    note(format!(
        "SIGHUP to pid {main}: {} answered, none lost",
        seen.ok
    ));
    Ok(())
}
