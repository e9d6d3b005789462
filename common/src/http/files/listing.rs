//! A directory without an index file: an HTML listing (`--autoindex`), or
//! `403`.

use std::ffi::OsString;
use std::fmt::{self, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use super::super::parse::{Method, Request};
use super::super::path;
use super::super::response::{HeadWriter, Persist};
use super::super::site::{Reply, Site, error};
use crate::time::{listing_date, unix_secs};

/// Characters left as they are in listing links: RFC 3986's unreserved set.
pub(crate) const HREF: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

// ANCHOR: without_index
/// Answers for the directory at canonical `dir`, which has no index file:
/// its listing if the site lists directories, else `403`.
pub(crate) fn without_index(
    req: &Request<'_>,
    site: &Site,
    dir: &Path,
    persist: Persist,
    out: &mut Vec<u8>,
) -> Reply {
    let head_only = req.method == Method::Head;
    if site.autoindex {
        listing(req, site, dir, persist, head_only, out)
    } else {
        error(site, 403, persist, head_only, out)
    }
}
// ANCHOR_END: without_index

/// Escapes text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> impl fmt::Display + '_ {
    struct Esc<'a>(&'a str);
    impl fmt::Display for Esc<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            for c in self.0.chars() {
                match c {
                    '&' => f.write_str("&amp;")?,
                    '<' => f.write_str("&lt;")?,
                    '>' => f.write_str("&gt;")?,
                    '"' => f.write_str("&quot;")?,
                    '\'' => f.write_str("&#39;")?,
                    c => f.write_char(c)?,
                }
            }
            Ok(())
        }
    }
    Esc(s)
}

/// One row of a directory listing.
struct Entry {
    name: OsString,
    is_dir: bool,
    size: u64,
    mtime: u64,
}

/// An HTML listing of a directory: directories first, then files, each in
/// byte order of their names.
fn listing(
    req: &Request<'_>,
    site: &Site,
    dir: &Path,
    persist: Persist,
    head_only: bool,
    out: &mut Vec<u8>,
) -> Reply {
    let Ok(read) = std::fs::read_dir(dir) else {
        return error(site, 403, persist, head_only, out);
    };
    let mut entries: Vec<Entry> = Vec::new();
    for entry in read.flatten() {
        let p = entry.path();
        // Follow symlinks for the size and type, but leave out those that
        // dangle or lead out of the root: they would not be served anyway.
        if entry.file_type().is_ok_and(|t| t.is_symlink()) && path::contain(&site.root, &p).is_err()
        {
            continue;
        }
        let Ok(meta) = std::fs::metadata(&p) else {
            continue;
        };
        entries.push(Entry {
            name: entry.file_name(),
            is_dir: meta.is_dir(),
            size: meta.len(),
            mtime: meta.modified().map_or(0, unix_secs),
        });
    }
    entries.sort_by(|a, b| {
        b.is_dir
            .cmp(&a.is_dir)
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
    });

    let shown = percent_encoding::percent_decode_str(req.path).decode_utf8_lossy();
    let title = html_escape(&shown);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title>\n\
         <style>body{{font-family:sans-serif}}td{{padding:0 1em}}td.s{{text-align:right}}</style></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th></tr>\n"
    );
    if req.path != "/" {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td class=\"s\">-</td><td></td></tr>\n");
    }
    for e in &entries {
        let href = percent_encoding::percent_encode(e.name.as_bytes(), HREF);
        let name = e.name.to_string_lossy();
        let slash = if e.is_dir { "/" } else { "" };
        let size = if e.is_dir {
            "-".to_string()
        } else {
            e.size.to_string()
        };
        let _ = writeln!(
            html,
            "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td class=\"s\">{size}</td><td>{}</td></tr>",
            html_escape(&name),
            listing_date(e.mtime)
        );
    }
    html.push_str("</table>\n</body></html>\n");

    let mut h = HeadWriter::new(out, 200, &site.server);
    h.content_type("text/html")
        .header("Content-Length", html.len())
        .header("X-Content-Type-Options", "nosniff");
    let out = h.finish(persist);
    if !head_only {
        out.extend_from_slice(html.as_bytes());
    }
    Reply {
        status: 200,
        body_len: if head_only { 0 } else { html.len() as u64 },
        file: None,
        keep_alive: persist.keep_alive(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<a href='x'>&\"").to_string(),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
        assert_eq!(
            percent_encoding::percent_encode("a b#?.txt".as_bytes(), HREF).to_string(),
            "a%20b%23%3F.txt"
        );
    }
}
