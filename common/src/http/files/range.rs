//! Step 5: range requests (RFC 9110 14): one part (`206` with
//! `Content-Range`), several (`206` `multipart/byteranges`), or none of
//! them inside the file (`416`).

use std::io::Write as _;
use std::os::unix::fs::FileExt;

use super::super::parse::{Method, Request};
use super::super::response::{HeadWriter, needs_charset};
use super::super::site::{Reply, error, write_error};
use super::conditional::{Validators, if_range_holds};
use super::{Body, FileAnswer, slice};

/// At most this many ranges in one `multipart/byteranges` answer; more, and
/// the whole file is sent instead (a defence against range amplification).
const MAX_RANGES: usize = 16;
/// At most this many bytes are read into memory for a multipart answer.
const MAX_MULTIPART_BYTES: u64 = 1024 * 1024;

/// What the `Range` header asks for, resolved against the file length.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ranges {
    /// No (usable) Range header: send the whole file.
    Whole,
    /// Every range is outside the file: 416.
    Unsatisfiable,
    /// Inclusive `(first, last)` byte positions.
    Parts(Vec<(u64, u64)>),
}

/// The ranges a request asks for: only a `GET` gets them, and only while
/// its `If-Range` (if any) still names this version.
pub(crate) fn requested(req: &Request<'_>, v: Validators) -> Ranges {
    match req.range {
        Some(r)
            if req.method == Method::Get && req.if_range.is_none_or(|ir| if_range_holds(ir, v)) =>
        {
            parse_ranges(r, v.len)
        }
        _ => Ranges::Whole,
    }
}

/// Whether answering `parts` as `multipart/byteranges` would cost too much:
/// then the whole file is sent instead.
pub(crate) fn too_many(parts: &[(u64, u64)]) -> bool {
    let total: u64 = parts.iter().map(|(a, b)| b - a + 1).sum();
    parts.len() > MAX_RANGES || total > MAX_MULTIPART_BYTES
}

/// Parses `bytes=a-b, c-, -n` against a length. Syntax errors make the
/// header ignored (RFC 9110 14.2), not an error.
fn parse_ranges(header: &str, len: u64) -> Ranges {
    let Some(spec) = header.trim().strip_prefix("bytes=") else {
        return Ranges::Whole;
    };
    let mut parts = Vec::new();
    for item in spec.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((a, b)) = item.split_once('-') else {
            return Ranges::Whole;
        };
        let num = |s: &str| -> Option<u64> {
            (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match (a.trim(), b.trim()) {
            ("", suffix) => {
                let Some(n) = num(suffix) else {
                    return Ranges::Whole;
                };
                if n > 0 && len > 0 {
                    parts.push((len - n.min(len), len - 1));
                }
            }
            (first, "") => {
                let Some(first) = num(first) else {
                    return Ranges::Whole;
                };
                if first < len {
                    parts.push((first, len - 1));
                }
            }
            (first, last) => {
                let (Some(first), Some(last)) = (num(first), num(last)) else {
                    return Ranges::Whole;
                };
                if first > last {
                    return Ranges::Whole;
                }
                if first < len {
                    parts.push((first, last.min(len - 1)));
                }
            }
        }
    }
    if parts.is_empty() {
        Ranges::Unsatisfiable
    } else {
        Ranges::Parts(parts)
    }
}

impl FileAnswer<'_> {
    /// `416 Range Not Satisfiable`, saying how long the file is.
    pub(crate) fn unsatisfiable(&self, out: &mut Vec<u8>) -> Reply {
        let cr = format!("bytes */{}", self.rep.validators.len);
        write_error(
            self.site,
            416,
            self.persist,
            self.head_only,
            &[("Content-Range", &cr)],
            out,
        )
    }

    /// `206` with one part: the head says which, the body is that region.
    pub(crate) fn single_part(&self, body: Body<'_>, part: (u64, u64), out: &mut Vec<u8>) -> Reply {
        let (first, last) = part;
        let len = self.rep.validators.len;
        let part_len = last - first + 1;
        let start = out.len();
        let mut h = HeadWriter::new(out, 206, &self.site.server);
        h.content_type(self.rep.mime)
            .header("Content-Length", part_len);
        self.validator_headers(&mut h);
        h.header("Content-Range", format_args!("bytes {first}-{last}/{len}"));
        self.tail_headers(&mut h);
        let out = h.finish(self.persist);
        self.body(body, 206, first, part_len, start, out)
    }

    /// `206` `multipart/byteranges`: every part, with its own small head,
    /// read into memory (at most [`MAX_MULTIPART_BYTES`]) and sent after the
    /// response head.
    pub(crate) fn multipart(
        &self,
        source: &Body<'_>,
        parts: &[(u64, u64)],
        out: &mut Vec<u8>,
    ) -> Reply {
        let v = self.rep.validators;
        let mime = self.rep.mime;
        // The boundary is derived from the validators, so every stage sends
        // the same bytes for the same request.
        let boundary = format!("{:x}{:x}byteranges", v.mtime, v.len);
        let content_type = if needs_charset(mime) {
            format!("{mime}; charset=utf-8")
        } else {
            mime.to_string()
        };
        let mut body = Vec::new();
        for &(first, last) in parts {
            let _ = write!(
                body,
                "--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {first}-{last}/{}\r\n\r\n",
                v.len
            );
            let part_len = last - first + 1;
            match source {
                Body::File(file) => {
                    let start = body.len();
                    body.resize(start + part_len as usize, 0);
                    if let Err(e) = file.read_exact_at(&mut body[start..], first) {
                        log::error!("reading a range: {e}");
                        return error(self.site, 500, self.persist, self.head_only, out);
                    }
                }
                Body::Bytes(bytes) => {
                    let Some(part) = slice(bytes, first, part_len) else {
                        log::error!("cached contents shorter than their length");
                        return error(self.site, 500, self.persist, self.head_only, out);
                    };
                    body.extend_from_slice(part);
                }
            }
            body.extend_from_slice(b"\r\n");
        }
        let _ = write!(body, "--{boundary}--\r\n");
        let mut h = HeadWriter::new(out, 206, &self.site.server);
        h.header(
            "Content-Type",
            format_args!("multipart/byteranges; boundary={boundary}"),
        )
        .header("Content-Length", body.len());
        self.validator_headers(&mut h);
        self.tail_headers(&mut h);
        let out = h.finish(self.persist);
        let body_len = if self.head_only { 0 } else { body.len() as u64 };
        if !self.head_only {
            out.extend_from_slice(&body);
        }
        Reply {
            status: 206,
            body_len,
            file: None,
            keep_alive: self.persist.keep_alive(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_table() {
        use Ranges::*;
        let cases: &[(&str, u64, Ranges)] = &[
            ("bytes=0-0", 10, Parts(vec![(0, 0)])),
            ("bytes=2-5", 10, Parts(vec![(2, 5)])),
            ("bytes=2-", 10, Parts(vec![(2, 9)])),
            ("bytes=-3", 10, Parts(vec![(7, 9)])),
            ("bytes=-30", 10, Parts(vec![(0, 9)])),
            ("bytes=5-100", 10, Parts(vec![(5, 9)])),
            ("bytes=0-1, 4-5", 10, Parts(vec![(0, 1), (4, 5)])),
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=5-2", 10, Whole),
            ("bytes=a-b", 10, Whole),
            ("items=0-1", 10, Whole),
            ("bytes=1", 10, Whole),
            ("bytes=+1-2", 10, Whole),
        ];
        for (header, len, expect) in cases {
            assert_eq!(&parse_ranges(header, *len), expect, "{header} / {len}");
        }
    }

    #[test]
    fn many_or_large_ranges_are_too_many() {
        assert!(!too_many(&[(0, 0); MAX_RANGES]));
        assert!(too_many(&[(0, 0); MAX_RANGES + 1]));
        assert!(!too_many(&[(0, MAX_MULTIPART_BYTES - 1)]));
        assert!(too_many(&[(0, 0), (1, MAX_MULTIPART_BYTES)]));
    }
}
