//! Step 4: conditional requests (RFC 9110 13), and the validators they
//! compare.
//!
//! Every file answer carries two validators of the version it sends: an
//! `ETag` (strong, formed from the modification time and the length, as
//! nginx forms it) and `Last-Modified`. A client that already has that
//! version asks with `If-None-Match` or `If-Modified-Since` and gets a
//! bodiless `304`; a client resuming a download asks for a range with
//! `If-Range`, and gets the range only if the file is still the same.

use std::fmt;
use std::fs::Metadata;
use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use super::super::parse::Request;
use super::super::response::HeadWriter;
use super::super::site::Reply;
use super::FileAnswer;
use crate::time::{parse_http_date, unix_secs};

/// The validators of one file version, formatted without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Validators {
    /// Modification time, in whole seconds since the epoch.
    pub(crate) mtime: u64,
    /// Length in bytes.
    pub(crate) len: u64,
}

impl Validators {
    /// The validators `stat` gives for a file.
    pub(crate) fn of(meta: &Metadata) -> Validators {
        Validators {
            mtime: meta.modified().map_or(0, unix_secs),
            len: meta.len(),
        }
    }

    /// Our strong `ETag`.
    pub(crate) fn etag(self) -> ETag {
        ETag(self)
    }

    /// The `Last-Modified` date.
    pub(crate) fn last_modified(self) -> httpdate::HttpDate {
        httpdate::HttpDate::from(UNIX_EPOCH + Duration::from_secs(self.mtime))
    }
}

/// Displays as `"<mtime hex>-<len hex>"`, quotes included.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ETag(Validators);

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{:x}-{:x}\"", self.0.mtime, self.0.len)
    }
}

impl ETag {
    /// Compares with an entity-tag from a request. `weak` allows a `W/`
    /// prefix on theirs (If-None-Match); strong comparison (If-Range) does not.
    fn matches(self, theirs: &str, weak: bool) -> bool {
        let theirs = theirs.trim();
        let theirs = match theirs.strip_prefix("W/") {
            Some(t) if weak => t,
            Some(_) => return false,
            None => theirs,
        };
        let mut buf = [0u8; 48];
        let mut cursor = &mut buf[..];
        if write!(cursor, "{self}").is_err() {
            return false;
        }
        let written = 48 - cursor.len();
        theirs.as_bytes() == &buf[..written]
    }

    /// `If-None-Match: *` or a list with a weakly matching tag.
    fn matches_list(self, list: &str) -> bool {
        list.trim() == "*" || list.split(',').any(|t| self.matches(t, true))
    }
}

/// Whether the client already has this version: `304`. If-None-Match wins
/// over If-Modified-Since when both are present (RFC 9110 13.2.2).
pub(crate) fn not_modified(req: &Request<'_>, v: Validators) -> bool {
    match (req.if_none_match, req.if_modified_since) {
        (Some(inm), _) => v.etag().matches_list(inm),
        (None, Some(ims)) => parse_http_date(ims).is_some_and(|ims| v.mtime <= ims),
        (None, None) => false,
    }
}

/// Whether an `If-Range` value still names the current representation
/// (strong ETag comparison, or the exact `Last-Modified` date).
pub(crate) fn if_range_holds(if_range: &str, v: Validators) -> bool {
    let if_range = if_range.trim();
    if if_range.starts_with('"') || if_range.starts_with("W/") {
        v.etag().matches(if_range, false)
    } else {
        parse_http_date(if_range) == Some(v.mtime)
    }
}

impl FileAnswer<'_> {
    /// `304 Not Modified`: the validators and caching headers a `200`
    /// would carry, and no body.
    pub(crate) fn not_modified(&self, out: &mut Vec<u8>) -> Reply {
        let v = self.rep.validators;
        let mut h = HeadWriter::new(out, 304, &self.site.server);
        h.header("Last-Modified", v.last_modified())
            .header("ETag", v.etag());
        self.site.freshness.write(&mut h);
        if self.rep.vary {
            h.header("Vary", "Accept-Encoding");
        }
        h.finish(self.persist);
        Reply {
            status: 304,
            body_len: 0,
            file: None,
            keep_alive: self.persist.keep_alive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_comparison() {
        let e = ETag(Validators {
            mtime: 0x10,
            len: 0x20,
        });
        assert_eq!(e.to_string(), "\"10-20\"");
        assert!(e.matches("\"10-20\"", false));
        assert!(e.matches("W/\"10-20\"", true));
        assert!(!e.matches("W/\"10-20\"", false));
        assert!(e.matches_list("\"x\", W/\"10-20\""));
        assert!(e.matches_list(" * "));
        assert!(!e.matches_list("\"10-21\""));
    }
}
