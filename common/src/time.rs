//! Calendar arithmetic and the per-second caches of formatted dates.
//!
//! Every response carries a `Date` header and every access-log line a
//! timestamp. Formatting a date costs far more than the rest of a small
//! response, and it changes once a second, so each thread keeps the last one
//! it formatted (a thread-local, so no lock on the hot path).

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Seconds since the epoch of a file time (0 for times before 1970).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year, e.g. 2026.
    pub year: i64,
    /// Month, 1..=12.
    pub month: u32,
    /// Day of the month, 1..=31.
    pub day: u32,
    /// Hour, 0..=23.
    pub hour: u32,
    /// Minute, 0..=59.
    pub min: u32,
    /// Second, 0..=59.
    pub sec: u32,
}

impl Civil {
    /// Converts seconds since the epoch, with Howard Hinnant's
    /// `civil_from_days` algorithm (public domain).
    pub fn from_unix(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            min: (rem / 60 % 60) as u32,
            sec: (rem % 60) as u32,
        }
    }

    /// The English three-letter month name.
    pub fn month_abbr(&self) -> &'static str {
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        MONTHS[(self.month.clamp(1, 12) - 1) as usize]
    }
}

/// One cached formatted timestamp per thread and kind.
struct Cached {
    secs: u64,
    text: String,
}

thread_local! {
    static HTTP_DATE: RefCell<Cached> = const { RefCell::new(Cached { secs: u64::MAX, text: String::new() }) };
    static LOG_DATE: RefCell<Cached> = const { RefCell::new(Cached { secs: u64::MAX, text: String::new() }) };
}

fn with_cached<R>(
    key: &'static std::thread::LocalKey<RefCell<Cached>>,
    format: fn(&mut String, u64),
    f: impl FnOnce(&str, u64) -> R,
) -> R {
    let now = unix_now();
    key.with(|cell| {
        let mut c = cell.borrow_mut();
        if c.secs != now {
            // Reformat into the same String: after the first second this
            // allocates nothing (the length of a date never changes).
            c.text.clear();
            format(&mut c.text, now);
            c.secs = now;
        }
        f(&c.text, now)
    })
}

fn write_http_date(out: &mut String, secs: u64) {
    use std::fmt::Write as _;
    let _ = write!(
        out,
        "{}",
        httpdate::HttpDate::from(UNIX_EPOCH + std::time::Duration::from_secs(secs))
    );
}

fn write_log_date(out: &mut String, secs: u64) {
    use std::fmt::Write as _;
    let c = Civil::from_unix(secs);
    let _ = write!(
        out,
        "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
        c.day,
        c.month_abbr(),
        c.year,
        c.hour,
        c.min,
        c.sec
    );
}

/// Calls `f` with the current IMF-fixdate (`Sun, 22 Nov 2026 01:49:35 GMT`),
/// formatted at most once a second per thread.
pub fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    with_cached(&HTTP_DATE, write_http_date, |date, _| f(date))
}

/// Like [`with_http_date`], also giving the Unix time the date shows (so
/// that a header computed from "now", `Expires`, agrees with `Date`).
pub fn with_http_date_secs<R>(f: impl FnOnce(&str, u64) -> R) -> R {
    with_cached(&HTTP_DATE, write_http_date, f)
}

/// Calls `f` with the current access-log timestamp
/// (`22/Nov/2026:01:49:35 +0000`), formatted at most once a second per thread.
pub fn with_log_date<R>(f: impl FnOnce(&str) -> R) -> R {
    with_cached(&LOG_DATE, write_log_date, |date, _| f(date))
}

/// Formats seconds since the epoch as an IMF-fixdate.
pub fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// Parses an HTTP date (all three formats RFC 9110 requires) into seconds.
pub fn parse_http_date(s: &str) -> Option<u64> {
    httpdate::parse_http_date(s).ok().map(unix_secs)
}

/// Formats seconds since the epoch the way the Combined Log Format does.
pub fn log_date(secs: u64) -> String {
    let mut s = String::with_capacity(26);
    write_log_date(&mut s, secs);
    s
}

/// `2026-11-22 01:49`, for directory listings.
pub fn listing_date(secs: u64) -> String {
    let c = Civil::from_unix(secs);
    format!(
        "{}-{:02}-{:02} {:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.min
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(log_date(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(log_date(951_782_400), "29/Feb/2000:00:00:00 +0000");
        assert_eq!(listing_date(1_795_311_775), "2026-11-22 01:42");
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    #[test]
    fn http_dates_round_trip_and_accept_old_formats() {
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            parse_http_date("Sun Nov  6 08:49:37 1994"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date("yesterday"), None);
    }

    proptest::proptest! {
        /// Our calendar agrees with httpdate's for every second in 1970..2400.
        #[test]
        fn civil_agrees_with_httpdate(secs in 0u64..13_569_465_600) {
            let c = Civil::from_unix(secs);
            let expected = http_date(secs);
            let ours = format!("{:02} {} {} {:02}:{:02}:{:02}", c.day, c.month_abbr(), c.year, c.hour, c.min, c.sec);
            proptest::prop_assert!(expected.contains(&ours), "{expected} vs {ours}");
        }
    }
}
