//! A real browser against a real stage: headless Chromium loads the bundled
//! sample site and every resource must arrive with the right status.
//!
//! Needs `chromium` (Debian: `apt-get install chromium`, which `.ci/run`
//! does): under `CI` a missing browser fails the test (see
//! [`require_tool`](super::require_tool)); elsewhere it is a loud skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{ServerProcess, name_of};

/// The flags this workplace's Chromium needs: no sandbox as root, no GPU,
/// and none of the background traffic to the internet.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",
    "--window-size=900,900",
];

/// Loads `/` and `/gallery.html` from `bin` (serving the bundled site) in
/// headless Chromium; checks that the page's script ran, that the browser
/// logged no console error, and that every request in the access log was
/// answered 200, 206 or 304 — the video with 206 (a range). Screenshots go
/// to `artifacts`. Returns false if Chromium is not installed.
pub fn load_sample_site(bin: &str, extra_args: &[&str], artifacts: &Path) -> bool {
    if !super::require_tool(&["chromium", "--version"], "chromium", "the browser check") {
        return false;
    }
    let dir = std::env::temp_dir().join(format!("browser-{}-{}", std::process::id(), name_of(bin)));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(artifacts).unwrap();
    let log = dir.join("access.log");
    let mut args = vec!["--access-log", log.to_str().unwrap()];
    args.extend_from_slice(extra_args);
    let mut server = ServerProcess::start(bin, &args);
    for (page, marker) in [
        ("/", "It works."),
        ("/gallery.html", "JavaScript loaded and ran."),
    ] {
        let shot: PathBuf = artifacts.join(format!(
            "{}{}.png",
            name_of(bin),
            page.replace(['/', '.'], "-")
        ));
        let out = Command::new("chromium")
            .args(CHROMIUM_FLAGS)
            .arg(format!("--user-data-dir={}", dir.join("profile").display()))
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--dump-dom")
            .arg(format!("http://{}{page}", server.addr))
            .output()
            .expect("run chromium");
        let dom = String::from_utf8_lossy(&out.stdout);
        let log_text = String::from_utf8_lossy(&out.stderr);
        assert!(
            dom.contains(marker),
            "{page}: the page did not render ({marker:?} missing)"
        );
        for line in log_text.lines().filter(|l| l.contains("CONSOLE")) {
            assert!(
                !line.contains("Failed") && !line.contains("Error") && !line.contains("Uncaught"),
                "{page}: console error: {line}"
            );
        }
        assert!(shot.exists(), "{page}: no screenshot at {}", shot.display());
    }
    assert!(server.terminate().success());
    let lines = std::fs::read_to_string(&log).unwrap();
    let mut seen_video_range = false;
    for line in lines.lines() {
        let status = line
            .split('"')
            .nth(2)
            .and_then(|s| s.split_whitespace().next())
            .unwrap_or("");
        assert!(
            matches!(status, "200" | "206" | "304"),
            "a resource failed: {line}"
        );
        seen_video_range |= line.contains("/video/clip.mp4") && status == "206";
    }
    for resource in [
        "/css/style.css",
        "/js/app.js",
        "/img/logo.svg",
        "/img/pattern.png",
    ] {
        assert!(
            lines.contains(&format!("GET {resource} ")),
            "{resource} was never requested:\n{lines}"
        );
    }
    assert!(
        seen_video_range,
        "the video was not fetched with a range:\n{lines}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    true
}

/// The page the caching check loads twice: after `load`, its script lists
/// what the Resource Timing API says each resource cost on the wire
/// (`transferSize`: 0 when the browser answered from its own cache).
const CACHE_PAGE: &str = r#"<!DOCTYPE html>
<html><head><title>cache check</title><link rel="stylesheet" href="style.css"><script src="app.js"></script></head>
<body><pre id="out">pending</pre>
<script>
window.addEventListener('load', function () {
  var nav = performance.getEntriesByType('navigation')[0];
  var all = [nav].concat(performance.getEntriesByType('resource'));
  document.getElementById('out').textContent = all.map(function (e) {
    return e.name.replace(location.origin, '') + ' ' + e.transferSize;
  }).join('\n');
});
</script></body></html>
"#;

/// What one mode of [`second_load_from_cache`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRun {
    /// The server's flags beyond the defaults (`--expires 600`, or none).
    pub flags: Vec<String>,
    /// `path transferSize` per resource, as the page reported on its second
    /// load.
    pub second_load: Vec<String>,
    /// `METHOD path status` for every request the server logged, in order,
    /// over both loads (`/favicon.ico`, which Chromium asks for on its own,
    /// left out).
    pub requests: Vec<String>,
}

/// Loads a page (HTML, a style sheet, a script) twice in one Chromium
/// profile: first from a server with default flags, then from one with
/// `--expires 600`. Without caching headers the second load revalidates
/// every resource (`304`, a few hundred bytes each); with them it sends no
/// request at all (`transferSize` 0, nothing in the access log). Returns
/// both runs, or `None` if Chromium is missing on a developer's machine.
pub fn second_load_from_cache(bin: &str, extra_args: &[&str]) -> Option<[CacheRun; 2]> {
    if !super::require_tool(
        &["chromium", "--version"],
        "chromium",
        "the browser cache check",
    ) {
        return None;
    }
    let dir = std::env::temp_dir().join(format!("cache-{}-{}", std::process::id(), name_of(bin)));
    let _ = std::fs::remove_dir_all(&dir);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).unwrap();
    // Fresh files: a browser's own heuristic (a tenth of the time since
    // Last-Modified) then gives them no freshness, so without caching
    // headers it must revalidate.
    std::fs::write(root.join("index.html"), CACHE_PAGE).unwrap();
    std::fs::write(root.join("style.css"), "body { color: #123; }\n").unwrap();
    std::fs::write(root.join("app.js"), "var loaded = true;\n").unwrap();
    let runs = [&[][..], &["--expires", "600"][..]].map(|flags: &[&str]| {
        let log = dir.join(format!("access{}.log", flags.len()));
        let mut args = vec![
            "--root",
            root.to_str().unwrap(),
            "--access-log",
            log.to_str().unwrap(),
        ];
        args.extend_from_slice(extra_args);
        args.extend_from_slice(flags);
        let mut server = ServerProcess::start(bin, &args);
        let profile = dir.join(format!("profile{}", flags.len()));
        let mut second_load = Vec::new();
        for _ in 0..2 {
            let out = Command::new("chromium")
                .args(CHROMIUM_FLAGS)
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg("--dump-dom")
                .arg(format!("http://{}/", server.addr))
                .output()
                .expect("run chromium");
            let dom = String::from_utf8_lossy(&out.stdout);
            let report = dom
                .split_once("<pre id=\"out\">")
                .and_then(|(_, rest)| rest.split_once("</pre>"))
                .map(|(report, _)| report.to_string())
                .unwrap_or_default();
            assert!(
                report.starts_with("/ "),
                "the cache page's script did not report (flags {flags:?}):\n{dom}"
            );
            second_load = report.lines().map(str::to_string).collect();
        }
        assert!(server.terminate().success());
        let requests = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter_map(|line| {
                // `... "GET /style.css HTTP/1.1" 304 - ...`
                let mut quoted = line.split('"');
                let request = quoted.nth(1)?;
                let status = quoted.next()?.split_whitespace().next()?;
                let mut words = request.split(' ');
                let (method, path) = (words.next()?, words.next()?);
                (path != "/favicon.ico").then(|| format!("{method} {path} {status}"))
            })
            .collect();
        CacheRun {
            flags: flags.iter().map(|f| f.to_string()).collect(),
            second_load,
            requests,
        }
    });
    let _ = std::fs::remove_dir_all(&dir);
    let [plain, cached] = &runs;
    let sorted = |lines: &[String]| {
        let mut v = lines.to_vec();
        v.sort();
        v
    };
    let expect = |statuses: &[&str]| {
        let mut v: Vec<String> = statuses
            .iter()
            .flat_map(|s| ["/", "/style.css", "/app.js"].map(|p| format!("GET {p} {s}")))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&plain.requests),
        expect(&["200", "304"]),
        "without caching headers the second load must revalidate with 304s"
    );
    assert_eq!(
        sorted(&cached.requests),
        expect(&["200"]),
        "with --expires the second load must not reach the server"
    );
    for line in &cached.second_load {
        assert!(
            line.ends_with(" 0"),
            "with --expires every resource must come from the browser's cache: {line}"
        );
    }
    for line in &plain.second_load {
        assert!(
            !line.ends_with(" 0"),
            "without caching headers a revalidation costs bytes: {line}"
        );
    }
    Some(runs)
}

/// The browser tests of an HTTP stage, written once: each stage's
/// `tests/browser.rs` is `common::browser_tests!(env!("CARGO_BIN_EXE_…"),
/// &[flags])`. Two tests: [`load_sample_site`] and
/// [`second_load_from_cache`]. Screenshots land in the target folder.
#[macro_export]
macro_rules! browser_tests {
    ($bin:expr, $args:expr) => {
        /// Every resource of the sample site arrives (200, or 206 for the
        /// video's range requests), the page's script runs, and the console
        /// stays clean.
        #[test]
        fn chromium_loads_the_sample_site() {
            let artifacts = ::std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser");
            $crate::testkit::browser::load_sample_site($bin, $args, &artifacts);
        }

        /// A page loaded twice in one browser profile: without caching
        /// headers the second load revalidates every resource (304s); with
        /// `--expires 600` it sends no request at all. The stage 2 chapter
        /// quotes this run.
        #[test]
        fn second_load_is_served_from_the_browser_cache() {
            if let Some(runs) = $crate::testkit::browser::second_load_from_cache($bin, $args) {
                for run in runs {
                    eprintln!("{run:#?}");
                }
            }
        }
    };
}
