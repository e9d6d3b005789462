//! Per-client rate limiting (`--rate-limit R --rate-burst B`): a token
//! bucket per client address, in a table of fixed size.
//!
//! Each address has a bucket that holds up to `B` tokens and refills at `R`
//! tokens a second; a request takes one token, and a request that finds
//! the bucket empty is answered `429 Too Many Requests` with a
//! `Retry-After` of the seconds until the next token. This is nginx's
//! `limit_req` with `burst=B nodelay` and `limit_req_status 429`.
//!
//! **Bounded memory.** The buckets live in a table of [`SETS`] sets of
//! [`WAYS`] entries, allocated once: an address can only be in the set its
//! hash picks, and a new address takes the least recently seen entry of
//! that set. So a flood of addresses (spoofed or not) costs a fixed
//! 16,384 entries of 28 bytes (under half a MiB), however many there are; what it can do is
//! evict a real client's bucket, which makes that client's limit *more*
//! lenient (a fresh, full bucket), never stricter. The hash is keyed per
//! process (`RandomState`), so a client cannot aim at another's set.
//!
//! **Where it is shared.** One table per process, behind a mutex per set
//! (no lock is held across I/O; one request locks one set for a few
//! nanoseconds): every thread of stage 3 and every loop of stage 4 share
//! it. Stage 5's workers are processes, and each has its own table: a
//! client whose connections are spread over N workers may get up to N × R
//! requests a second. The limit applies per client *address*: clients
//! behind one NAT share a bucket.

use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

// ANCHOR: table
/// Sets in the table (a power of two).
pub const SETS: usize = 4096;
/// Entries per set: an address competes with the others of its set only.
pub const WAYS: usize = 4;

/// One client's bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// The client (`None`: the entry is free).
    addr: Option<IpAddr>,
    /// Tokens left, as of `seen`.
    tokens: f32,
    /// When the client was last seen, in milliseconds since the table's
    /// start.
    seen: u32,
}

const EMPTY: Bucket = Bucket {
    addr: None,
    tokens: 0.0,
    seen: 0,
};

/// What a client may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Serve the request.
    Allow,
    /// Answer 429; the next token comes within this many seconds.
    Limit {
        /// For `Retry-After`.
        retry_after_secs: u32,
    },
}

/// The limiter of one process.
#[derive(Debug)]
pub struct RateLimit {
    /// Tokens per second.
    rate: f32,
    /// Bucket size.
    burst: f32,
    /// The table, set by set.
    sets: Box<[Mutex<[Bucket; WAYS]>]>,
    /// Picks an address's set.
    hasher: RandomState,
    /// Time zero of `Bucket::seen`.
    start: Instant,
}
// ANCHOR_END: table

impl RateLimit {
    /// `rate` requests a second per address, bursts of `burst` (at least
    /// 1; 0 means one second's worth of `rate`).
    pub fn new(rate: f64, burst: u32) -> RateLimit {
        let burst = if burst == 0 {
            rate.ceil().max(1.0) as f32
        } else {
            burst as f32
        };
        RateLimit {
            rate: rate as f32,
            burst,
            sets: (0..SETS).map(|_| Mutex::new([EMPTY; WAYS])).collect(),
            hasher: RandomState::new(),
            start: Instant::now(),
        }
    }

    /// Takes a token for a request from `addr` at `now`.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Verdict {
        let ms = u32::try_from(now.saturating_duration_since(self.start).as_millis())
            .unwrap_or(u32::MAX);
        let set = self.hasher.hash_one(addr) as usize % SETS;
        let mut entries = self.sets[set].lock().unwrap_or_else(|e| e.into_inner());
        let bucket = match entries.iter().position(|b| b.addr == Some(addr)) {
            Some(i) => {
                let b = &mut entries[i];
                let elapsed = ms.saturating_sub(b.seen) as f32 / 1000.0;
                b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
                b
            }
            None => {
                // A new client takes the least recently seen entry (a free
                // one has `seen` 0 and no address, so it goes first).
                let i = (0..WAYS)
                    .min_by_key(|&i| (entries[i].addr.is_some(), entries[i].seen))
                    .unwrap_or(0);
                entries[i] = Bucket {
                    addr: Some(addr),
                    tokens: self.burst,
                    seen: ms,
                };
                &mut entries[i]
            }
        };
        bucket.seen = ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Verdict::Allow
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate.max(f32::MIN_POSITIVE);
            Verdict::Limit {
                retry_after_secs: (wait.ceil() as u32).max(1),
            }
        }
    }

    /// Entries in use (for the table-size test).
    pub fn tracked(&self) -> usize {
        self.sets
            .iter()
            .map(|s| {
                let entries = s.lock().unwrap_or_else(|e| e.into_inner());
                entries.iter().filter(|b| b.addr.is_some()).count()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    /// A burst is served whole, the next request is limited with a
    /// `Retry-After`, and the bucket refills at the rate.
    #[test]
    fn a_burst_then_429_then_the_refill() {
        let limit = RateLimit::new(2.0, 3);
        let t0 = limit.start;
        for _ in 0..3 {
            assert_eq!(limit.check(ip(1), t0), Verdict::Allow);
        }
        assert_eq!(
            limit.check(ip(1), t0),
            Verdict::Limit {
                retry_after_secs: 1
            }
        );
        // Another client has a bucket of its own.
        assert_eq!(limit.check(ip(2), t0), Verdict::Allow);
        // Half a second at 2 a second is one token: one more request.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(limit.check(ip(1), later), Verdict::Allow);
        assert!(matches!(limit.check(ip(1), later), Verdict::Limit { .. }));
        // Long idle refills to the burst, not beyond.
        let much_later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limit.check(ip(1), much_later), Verdict::Allow);
        }
        assert!(matches!(
            limit.check(ip(1), much_later),
            Verdict::Limit { .. }
        ));
    }

    /// A slow rate gives a longer `Retry-After`.
    #[test]
    fn retry_after_is_the_wait_for_the_next_token() {
        let limit = RateLimit::new(0.1, 1);
        let t0 = limit.start;
        assert_eq!(limit.check(ip(7), t0), Verdict::Allow);
        assert_eq!(
            limit.check(ip(7), t0),
            Verdict::Limit {
                retry_after_secs: 10
            }
        );
    }

    /// A million addresses never make the table hold more than its fixed
    /// number of entries.
    #[test]
    fn the_table_stays_bounded_under_many_addresses() {
        let limit = RateLimit::new(1.0, 1);
        let t0 = limit.start;
        for n in 0..1_000_000u32 {
            limit.check(ip(n), t0 + Duration::from_micros(u64::from(n)));
        }
        assert_eq!(limit.tracked(), SETS * WAYS);
        assert!(size_of::<Bucket>() <= 32, "{}", size_of::<Bucket>());
        // The most recent addresses are the ones kept: the last one is
        // still known, its one token spent (a new entry would allow).
        assert!(matches!(
            limit.check(ip(999_999), t0 + Duration::from_secs(1)),
            Verdict::Limit { .. }
        ));
    }
}
