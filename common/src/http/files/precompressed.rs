//! Step 2: a precompressed sibling the client accepts.
//!
//! Next to `page.html` a site may keep `page.html.br` and `page.html.gz`,
//! compressed ahead of time. A client whose `Accept-Encoding` accepts one
//! gets it, with `Content-Encoding`; every answer for a file that has a
//! sibling says `Vary: Accept-Encoding`, whichever representation it sends,
//! so that a shared cache keeps them apart.

use std::ffi::OsString;
use std::fs::Metadata;
use std::io;
use std::path::{Path, PathBuf};

use super::super::path;
use super::super::site::Site;
use super::resolve::Found;

/// The siblings looked for, in order of preference: the
/// `Content-Encoding` each stands for, and its file name extension.
pub(crate) const CODINGS: [(&str, &str); 2] = [("br", "br"), ("gzip", "gz")];

/// The name of `file`'s sibling with extension `ext`: `file.ext`.
pub(crate) fn sibling_name(file: &Path, ext: &str) -> PathBuf {
    let mut name = OsString::from(file.as_os_str());
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// The sibling called `name`, given what `stat` said about that name: a
/// regular file inside the root, or nothing.
///
/// The `stat` comes first: most files have no sibling, and canonicalizing
/// a path that does not exist costs a `readlink` per component.
pub(crate) fn sibling_at(site: &Site, name: &Path, stat: io::Result<Metadata>) -> Option<Found> {
    match stat {
        Ok(meta) if meta.is_file() => path::contain(&site.root, name)
            .ok()
            .map(|path| Found { path, meta }),
        _ => None,
    }
}

/// The siblings of the file at canonical `file` that exist, by coding (none
/// looked for when the site does not serve precompressed files).
pub(crate) fn siblings(site: &Site, file: &Path) -> [(&'static str, Option<Found>); 2] {
    CODINGS.map(|(coding, ext)| {
        let found = site.precompressed.then(|| {
            let name = sibling_name(file, ext);
            sibling_at(site, &name, std::fs::metadata(&name))
        });
        (coding, found.flatten())
    })
}

/// The representation to send, out of a file and its siblings.
#[derive(Debug)]
pub(crate) struct Choice<'a, T> {
    /// The file itself, or the sibling chosen.
    pub(crate) rep: &'a T,
    /// The `Content-Encoding` of a chosen sibling.
    pub(crate) coding: Option<&'static str>,
    /// Whether any sibling exists: then the response varies by
    /// `Accept-Encoding`, whichever representation is sent.
    pub(crate) vary: bool,
}

/// Picks the first of the `available` siblings (in order of preference)
/// whose coding the client accepts, else `plain`.
pub(crate) fn choose<'a, T>(
    accept_encoding: Option<&str>,
    plain: &'a T,
    available: impl IntoIterator<Item = (&'static str, &'a T)>,
) -> Choice<'a, T> {
    let mut choice = Choice {
        rep: plain,
        coding: None,
        vary: false,
    };
    for (coding, rep) in available {
        choice.vary = true;
        if choice.coding.is_none() && accept_encoding.is_some_and(|ae| accepts(ae, coding)) {
            choice.rep = rep;
            choice.coding = Some(coding);
        }
    }
    choice
}

/// Whether an `Accept-Encoding` value accepts `coding` (q > 0, or `*`).
fn accepts(accept_encoding: &str, coding: &str) -> bool {
    let mut star = false;
    for item in accept_encoding.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q_zero = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if name.eq_ignore_ascii_case(coding) {
            return !q_zero;
        }
        if name == "*" {
            star = !q_zero;
        }
    }
    star
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_table() {
        assert!(accepts("gzip, deflate, br", "br"));
        assert!(accepts("gzip;q=0.5", "gzip"));
        assert!(!accepts("gzip;q=0", "gzip"));
        assert!(!accepts("br;q=0, *", "br"));
        assert!(accepts("*", "gzip"));
        assert!(!accepts("identity", "gzip"));
    }

    #[test]
    fn the_first_accepted_sibling_wins_and_any_sibling_varies() {
        let (plain, br, gz) = ("plain", "br", "gz");
        let both = || [("br", &br), ("gzip", &gz)];
        let c = choose(Some("gzip, br"), &plain, both());
        assert_eq!((*c.rep, c.coding, c.vary), ("br", Some("br"), true));
        let c = choose(Some("gzip"), &plain, both());
        assert_eq!((*c.rep, c.coding, c.vary), ("gz", Some("gzip"), true));
        let c = choose(None, &plain, both());
        assert_eq!((*c.rep, c.coding, c.vary), ("plain", None, true));
        let c = choose(Some("gzip"), &plain, []);
        assert_eq!((*c.rep, c.coding, c.vary), ("plain", None, false));
    }
}
