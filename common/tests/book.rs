//! The course cannot break silently: every `{{#include}}` in `docs/src`
//! names a file that exists and an anchor that file defines, every chapter
//! in `SUMMARY.md` exists, and every relative link resolves.

use std::path::{Path, PathBuf};

fn docs_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src")
}

fn chapters() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(docs_src())
        .expect("docs/src exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    v.sort();
    v
}

/// Every `{{#include path}}` and `{{#include path:anchor}}` resolves, and
/// each anchor has both its `ANCHOR:` and `ANCHOR_END:` markers.
#[test]
fn every_include_and_anchor_exists() {
    let mut problems = Vec::new();
    let mut count = 0;
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        for (i, _) in text.match_indices("{{#include ") {
            let rest = &text[i + "{{#include ".len()..];
            let Some(end) = rest.find("}}") else {
                problems.push(format!("{}: unterminated include", chapter.display()));
                continue;
            };
            let spec = rest[..end].trim();
            count += 1;
            let (file, anchor) = match spec.split_once(':') {
                Some((f, a)) if !a.chars().all(|c| c.is_ascii_digit() || c == ':') => (f, Some(a)),
                Some((f, _)) => (f, None),
                None => (spec, None),
            };
            let path = chapter.parent().unwrap().join(file);
            let Ok(source) = std::fs::read_to_string(&path) else {
                problems.push(format!("{}: no file {}", chapter.display(), path.display()));
                continue;
            };
            if let Some(a) = anchor {
                let has = |marker: &str| {
                    source.lines().any(|l| {
                        l.trim_start()
                            .trim_start_matches("//")
                            .trim_start_matches('#')
                            .trim()
                            == marker
                    })
                };
                if !has(&format!("ANCHOR: {a}")) || !has(&format!("ANCHOR_END: {a}")) {
                    problems.push(format!(
                        "{}: anchor `{a}` missing in {}",
                        chapter.display(),
                        path.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(count > 0, "no includes found: the check would be vacuous");
}

/// Every chapter in SUMMARY.md exists, and every relative Markdown link
/// in every chapter points at a file that exists.
#[test]
fn summary_and_relative_links_resolve() {
    let mut problems = Vec::new();
    for chapter in chapters() {
        let text = std::fs::read_to_string(&chapter).unwrap();
        // Links inside code blocks are examples, not links.
        let mut in_code = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                in_code = !in_code;
                continue;
            }
            if in_code {
                continue;
            }
            for (i, _) in line.match_indices("](") {
                let rest = &line[i + 2..];
                let Some(end) = rest.find(')') else { continue };
                let target = rest[..end].split('#').next().unwrap_or("");
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let path = chapter.parent().unwrap().join(target);
                if !path.exists() {
                    problems.push(format!("{}: broken link {target}", chapter.display()));
                }
            }
        }
    }
    let summary = std::fs::read_to_string(docs_src().join("SUMMARY.md")).unwrap();
    assert!(
        summary.contains("](stage2-http-seq.md)"),
        "SUMMARY.md lists the stage 2 chapter"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
