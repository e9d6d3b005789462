//! Fuzz target: the path resolver.
//!
//! The input, as a (lossy) UTF-8 string, is a raw request path. It goes to
//! `path::normalize` and to `path::resolve` over the fixture root, which has
//! a symlink to a secret file just outside it and a directory symlink to the
//! folder that holds the secret. Inputs that do not start with `/` are also
//! tried with one in front, so that no input is wasted on the first check.
//!
//! Properties:
//!
//! - nothing panics;
//! - `normalize` gives a relative path made of `Normal` components only (no
//!   root, no `.`, no `..`);
//! - `resolve` agrees with `normalize` on what is a bad request, and when it
//!   succeeds the path exists, is inside the canonical root, and is not the
//!   secret.

#![no_main]

use std::path::Component;

use common::http::path::{self, PathError};
use libfuzzer_sys::fuzz_target;

mod fixture;

// ANCHOR: target
fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    check(&raw);
    if !raw.starts_with('/') {
        check(&format!("/{raw}"));
    }
});

fn check(raw: &str) {
    let fx = fixture::fixture();
    let normalized = path::normalize(raw);
    if let Ok(rel) = &normalized {
        assert!(
            rel.components().all(|c| matches!(c, Component::Normal(_))),
            "normalize({raw:?}) = {rel:?} has a component that is not a name"
        );
    }
    match path::resolve(&fx.root, raw) {
        Ok(p) => {
            assert!(
                normalized.is_ok(),
                "resolve accepted what normalize refused: {raw:?}"
            );
            assert!(
                p.starts_with(&fx.root),
                "resolve({raw:?}) = {p:?} is outside the root {:?}",
                fx.root
            );
            assert!(p != fx.secret, "resolve({raw:?}) reached the secret");
            assert!(p.exists(), "resolve({raw:?}) = {p:?} does not exist");
        }
        Err(PathError::BadRequest) => {
            assert!(
                normalized == Err(PathError::BadRequest),
                "resolve says bad request, normalize says {normalized:?}: {raw:?}"
            );
        }
        Err(PathError::NotFound | PathError::Forbidden) => {
            assert!(
                normalized.is_ok(),
                "normalize refused {raw:?} but resolve did not"
            );
        }
    }
}
// ANCHOR_END: target
