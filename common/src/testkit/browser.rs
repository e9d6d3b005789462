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
