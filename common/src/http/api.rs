//! A small dynamic route, in the spirit of CS:APP's Tiny `adder` CGI
//! program: `GET /api/add?a=2&b=40` → `{"a":2,"b":40,"sum":42}`.
//!
//! It teaches query strings: split on `&`, split each pair on the first
//! `=`, percent-decode (`+` is a space only in HTML forms, and an integer
//! has none), and validate. Overflow is an error, never a wrap.

use std::io::Write;

use super::parse::{Method, Request};
use super::response::{HeadWriter, Persist};
use super::site::Reply;
use super::site::Site;

/// The route's path.
pub const ADD_PATH: &str = "/api/add";

/// Answers `/api/add`.
pub fn add(req: &Request<'_>, site: &Site, persist: Persist, out: &mut Vec<u8>) -> Reply {
    let query = req.query.unwrap_or("");
    let result = param(query, "a").and_then(|a| param(query, "b").map(|b| (a, b)));
    let mut body = Vec::with_capacity(64);
    let status = match result {
        Ok((a, b)) => match a.checked_add(b) {
            Some(sum) => {
                let _ = write!(body, "{{\"a\":{a},\"b\":{b},\"sum\":{sum}}}");
                200
            }
            None => {
                body.extend_from_slice(
                    b"{\"error\":\"the sum does not fit in a signed 64-bit integer\"}",
                );
                400
            }
        },
        Err(msg) => {
            let _ = write!(body, "{{\"error\":\"{msg}\"}}");
            400
        }
    };
    body.push(b'\n');
    let mut h = HeadWriter::new(out, status, &site.server);
    h.content_type("application/json")
        .header("Content-Length", body.len())
        .header("Cache-Control", "no-store")
        .header("X-Content-Type-Options", "nosniff");
    let out = h.finish(persist);
    let head_only = req.method == Method::Head;
    if !head_only {
        out.extend_from_slice(&body);
    }
    Reply {
        status,
        body_len: if head_only { 0 } else { body.len() as u64 },
        file: None,
        keep_alive: persist.keep_alive(),
    }
}

// ANCHOR: param
/// Finds parameter `name` and parses it as an `i64`. The error message is
/// JSON-safe (it quotes only `name`, which is ours).
fn param(query: &str, name: &'static str) -> Result<i64, String> {
    let raw = query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("missing parameter {name}"))?;
    let decoded = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
    decoded
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("parameter {name} is not a signed 64-bit integer"))
}
// ANCHOR_END: param

#[cfg(test)]
mod tests {
    use super::param;

    #[test]
    fn params() {
        assert_eq!(param("a=2&b=40", "a"), Ok(2));
        assert_eq!(param("a=2&b=40", "b"), Ok(40));
        assert_eq!(param("b=1&a=%2D5", "a"), Ok(-5));
        assert!(param("a=2", "b").unwrap_err().contains("missing"));
        assert!(param("a=x", "a").unwrap_err().contains("not a signed"));
        assert!(param("a=99999999999999999999", "a").is_err());
        assert!(param("a", "a").is_err());
    }
}
