//! The SIGHUP test every HTTP stage runs: a live setting changes, and a
//! configuration that does not parse leaves the running one in place.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::ServerProcess;
use super::client::get;
use super::files::TempDir;

fn status(server: &ServerProcess, path: &str) -> u16 {
    get(
        server.addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
    .status
}

/// Starts `bin` with `args` and a `--config` file, then:
///
/// 1. `autoindex = true`: a folder without an index file is listed (200);
/// 2. the file says `autoindex = false`, SIGHUP: the same request is
///    refused (403 or 404), while other files are still served;
/// 3. the file is broken (`root = 42`) and says `autoindex = true` again,
///    SIGHUP: nothing changes (still refused, still serving), since a
///    configuration that does not parse is not applied, in part or whole;
/// 4. fixed again with `autoindex = true`, SIGHUP: listed again;
/// 5. the file names an access log and an error log (the access log was
///    off, the error log stderr), SIGHUP: the next request's line is in
///    the new access log, and the reload's own log line in the new error
///    log;
/// 6. the file turns the listing off and changes the listen backlog,
///    SIGHUP: the listing is refused again, and the error log names what
///    was applied (`applied autoindex`) and what needs a restart (`a
///    restart is needed to change backlog`), on every stage alike.
pub fn check(bin: &str, args: &[&str]) {
    let dir = TempDir::new("reload");
    dir.write("index.html", "<p>home</p>\n");
    dir.write("list/a.txt", "a\n");
    let config = dir.join("server.toml");
    let root = dir.arg().to_string();
    let write = |body: &str| std::fs::write(&config, body).unwrap();
    let good = |autoindex: bool| {
        format!(
            "root = {root:?}\naccess_log = \"off\"\nautoindex = {autoindex}\nerror_pages = \"none\"\n"
        )
    };
    write(&good(true));
    let mut with: Vec<&str> = args.to_vec();
    let config_arg = config.to_str().expect("a UTF-8 path").to_string();
    with.extend(["--config", &config_arg]);
    let server = ServerProcess::start(bin, &with);
    let wait = Duration::from_secs(15);
    assert_eq!(status(&server, "/list/"), 200, "autoindex on: listed");

    write(&good(false));
    server.signal(Signal::SIGHUP);
    super::eventually("the reload turns the listing off", wait, || {
        matches!(status(&server, "/list/"), 403 | 404)
    });
    assert_eq!(status(&server, "/index.html"), 200);

    write("root = 42\nautoindex = true\n");
    server.signal(Signal::SIGHUP);
    // The refusal is counted on the status page (stage 2 re-reads between
    // two connections: each status request is one).
    super::eventually("the broken file is refused", wait, || {
        super::status::scrape(server.addr).is_ok_and(|page| {
            super::status::samples(&page, "http_config_reloads_total")
                .contains(&("result=\"failed\"", 1))
        })
    });
    assert!(
        matches!(status(&server, "/list/"), 403 | 404),
        "a broken configuration was applied"
    );
    assert_eq!(status(&server, "/index.html"), 200, "still serving");

    write(&good(true));
    server.signal(Signal::SIGHUP);
    super::eventually("the fixed file is applied", wait, || {
        status(&server, "/list/") == 200
    });

    let access = dir.join("moved-access.log");
    let error = dir.join("moved-error.log");
    let moved = |autoindex: bool, extra: &str| {
        format!(
            "root = {root:?}\nautoindex = {autoindex}\nerror_pages = \"none\"\naccess_log = {:?}\nerror_log = {:?}\n{extra}",
            access.to_str().unwrap(),
            error.to_str().unwrap()
        )
    };
    write(&moved(true, ""));
    server.signal(Signal::SIGHUP);
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    super::eventually("the reload moves the logs", wait, || {
        status(&server, "/after-the-move");
        read(&access).contains("\"GET /after-the-move HTTP/1.1\" 404")
            && read(&error).contains("reload")
    });

    write(&moved(false, "backlog = 17\n"));
    server.signal(Signal::SIGHUP);
    super::eventually("the listing is off again", wait, || {
        matches!(status(&server, "/list/"), 403 | 404)
    });
    super::eventually("the reload says what it applied and kept", wait, || {
        let log = read(&error);
        log.contains("reload: applied autoindex")
            && log.contains("reload: a restart is needed to change backlog")
    });
}
