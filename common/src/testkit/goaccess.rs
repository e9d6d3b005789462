//! Does a real log analyser read our access log? GoAccess parses it as the
//! Combined Log Format, and every line must count as a valid request.
//!
//! The conformance suite calls [`check_log`] on the log of its run, so every
//! HTTP stage's log is checked after a run full of odd requests (400s, 408s
//! with no request line, user agents with quotes in them).
//!
//! Two things matter when goaccess is started by a program rather than from
//! a terminal (measured with goaccess 1.7). Its standard input must be
//! `/dev/null`: with a log file named and standard input a pipe, goaccess
//! also waits for that pipe to close before it writes its report, so an
//! inherited pipe that stays open hangs it. And the report path must be
//! absolute: a relative `-o report.json` lands in the working directory of
//! the test (the package folder), not next to the log, which looks like
//! "goaccess exited 0 and wrote no report".

use std::path::Path;
use std::process::{Command, Stdio};

/// What goaccess counted in a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Lines it read as requests.
    pub total: u64,
    /// Of those, lines it could parse.
    pub valid: u64,
    /// Of those, lines it could not parse.
    pub failed: u64,
}

/// Runs goaccess on the log at `path` and checks that it read every line as
/// a valid request: `total == valid == lines` and `failed == 0`. `Ok` also
/// when goaccess is not installed on a developer's machine (after a loud
/// `SKIPPED` line); under `CI` a missing goaccess panics.
///
/// The error names the lines goaccess rejected and the command that
/// reproduces the check.
pub fn check_log(path: &Path) -> Result<(), String> {
    if !super::require_tool(
        &["goaccess", "--version"],
        "goaccess",
        "the goaccess check of the access log",
    ) {
        return Ok(());
    }
    // Lossy: a log may hold bytes that are not UTF-8 (it escapes only
    // quotes, backslashes and control bytes).
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("cannot read the log {}: {e}", path.display()))?;
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count() as u64;
    let counts = run(path)?;
    let rejected = std::fs::read(invalid_path(path))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if counts.failed == 0 && counts.valid == lines && counts.total == lines {
        eprintln!(
            "goaccess: {lines} of {lines} lines of {} are valid requests",
            path.display()
        );
        return Ok(());
    }
    Err(format!(
        "goaccess read {lines} line(s) of {} as {counts:?}; the lines it rejected:\n{rejected}\
         reproduce: goaccess {} --log-format=COMBINED --no-global-config -o report.json < /dev/null",
        path.display(),
        path.display()
    ))
}

/// Like [`check_log`], but panics with its message.
pub fn log_parses(path: &Path) {
    if let Err(e) = check_log(path) {
        panic!("{e}");
    }
}

/// Where goaccess writes the lines it rejected: next to the log.
fn invalid_path(log: &Path) -> std::path::PathBuf {
    log.with_extension("goaccess-invalid.txt")
}

/// Runs goaccess on `log`, writing a JSON report next to it, and reads the
/// counters from the report.
fn run(log: &Path) -> Result<Counts, String> {
    let log = std::path::absolute(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let report = log.with_extension("goaccess.json");
    let _ = std::fs::remove_file(&report);
    let _ = std::fs::remove_file(invalid_path(&log));
    let out = Command::new("goaccess")
        .arg(&log)
        .arg("--log-format=COMBINED")
        .arg("--no-global-config")
        .arg("--no-progress")
        .arg(format!(
            "--invalid-requests={}",
            invalid_path(&log).display()
        ))
        .arg("-o")
        .arg(&report)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run goaccess: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "goaccess failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Lossy: goaccess copies request strings into the report byte for byte,
    // and may cut one in the middle of a UTF-8 sequence.
    let json = std::fs::read(&report).map(|b| String::from_utf8_lossy(&b).into_owned());
    let json = json.map_err(|e| {
        format!(
            "goaccess exited 0 but wrote no report at {}: {e}; stderr: {}",
            report.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let field = |name: &str| {
        number_after(&json, &format!("\"{name}\":"))
            .ok_or_else(|| format!("no {name} in the goaccess report {}", report.display()))
    };
    Ok(Counts {
        total: field("total_requests")?,
        valid: field("valid_requests")?,
        failed: field("failed_requests")?,
    })
}

/// The unsigned number after the first `key` in `json`, skipping spaces.
fn number_after(json: &str, key: &str) -> Option<u64> {
    let rest = json[json.find(key)? + key.len()..].trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "127.0.0.1 - - [01/Dec/2026:19:00:00 +0000] \"GET / HTTP/1.1\" 200 1520 \"-\" \"curl/7.88\"\n\
        127.0.0.1 - - [01/Dec/2026:19:00:01 +0000] \"GET /x HTTP/1.1\" 404 12 \"-\" \"an \\\"agent\\\"\"\n\
        127.0.0.1 - - [01/Dec/2026:19:00:02 +0000] \"-\" 408 0 \"-\" \"-\"\n";

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("goaccess-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn numbers_are_read_from_the_report() {
        let json = "{\"general\": {\"total_requests\": 169,\"valid_requests\":\t169, \"failed_requests\": 0}}";
        assert_eq!(number_after(json, "\"total_requests\":"), Some(169));
        assert_eq!(number_after(json, "\"valid_requests\":"), Some(169));
        assert_eq!(number_after(json, "\"failed_requests\":"), Some(0));
        assert_eq!(number_after(json, "\"missing\":"), None);
    }

    /// A log in the Combined Log Format passes, with escaped quotes and a
    /// request line of `-`.
    #[test]
    fn a_combined_log_passes() {
        check_log(&write("good.log", GOOD)).unwrap();
    }

    /// One malformed line among good ones fails the check, and the message
    /// shows that line.
    #[test]
    fn a_malformed_line_fails_the_check() {
        let bad = format!("{GOOD}127.0.0.1 - - [not a date] GET / 200\n");
        let path = write("bad.log", &bad);
        if !super::super::require_tool(&["goaccess", "--version"], "goaccess", "this test") {
            return;
        }
        let err = check_log(&path).expect_err("a malformed line must fail the check");
        assert!(err.contains("failed: 1"), "{err}");
        assert!(err.contains("[not a date]"), "{err}");
    }
}
