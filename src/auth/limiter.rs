//! Bounds failed AUTH attempts per source address, so that a client cannot try
//! secrets at line rate. After `max` failures from one address within a window,
//! AUTH from that address is refused without being checked until the window,
//! which starts at the first failure, ends.
//!
//! Failures count once per distinct AUTH string: a guesser must send a new
//! string for each guess, while client libraries that retry a failed AUTH on
//! their own (redis-py 8 retries ten times) repeat the same one and would
//! otherwise lock their whole address out after two bad commands.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most. Past it (a flood from that many addresses, each
/// failing), new addresses go untracked rather than growing memory.
const MAX_TRACKED: usize = 65_536;

pub struct FailedAuthLimiter {
    /// Distinct failures allowed per window; 0 disables the limit.
    max: u32,
    window: Duration,
    /// Addresses count together per network of these prefix lengths: one
    /// IPv4 address by default, one IPv6 /64 (what one host usually has).
    prefixes: Prefixes,
    by_addr: Mutex<HashMap<IpAddr, Failures>>,
    /// Keyed per process, so that the stored hashes say nothing about the
    /// strings (they may hold near-miss secrets).
    hasher: RandomState,
}

struct Failures {
    since: Instant,
    /// Hashes of the distinct AUTH strings that failed; at most `max`.
    attempts: Vec<u64>,
}

/// The prefix lengths that group addresses: `v4` of 0..=32, `v6` of 0..=128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefixes {
    pub v4: u8,
    pub v6: u8,
}

impl Prefixes {
    /// One IPv4 address; one IPv6 /64.
    pub const DEFAULT: Prefixes = Prefixes { v4: 32, v6: 64 };

    /// The network `addr` counts in: its first `v4` or `v6` bits.
    fn network(self, addr: IpAddr) -> IpAddr {
        match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.v4)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.v6)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }
}

impl FailedAuthLimiter {
    pub fn new(max: u32, window: Duration, prefixes: Prefixes) -> FailedAuthLimiter {
        FailedAuthLimiter {
            max,
            window,
            prefixes,
            by_addr: Mutex::new(HashMap::new()),
            hasher: RandomState::new(),
        }
    }

    /// Whether `addr` may try an AUTH now.
    pub fn allows(&self, addr: IpAddr, now: Instant) -> bool {
        if self.max == 0 {
            return true;
        }
        let addr = self.prefixes.network(addr);
        let by_addr = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        match by_addr.get(&addr) {
            Some(f) => {
                f.attempts.len() < self.max as usize || now.duration_since(f.since) >= self.window
            }
            None => true,
        }
    }

    /// Counts a failed AUTH of `attempt` (the AUTH string) from `addr`,
    /// unless the same string already failed from there in this window.
    pub fn failed(&self, addr: IpAddr, attempt: &[u8], now: Instant) {
        if self.max == 0 {
            return;
        }
        let addr = self.prefixes.network(addr);
        let hash = self.hasher.hash_one(attempt);
        let mut by_addr = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        if by_addr.len() >= MAX_TRACKED {
            by_addr.retain(|_, f| now.duration_since(f.since) < self.window);
        }
        if by_addr.len() >= MAX_TRACKED && !by_addr.contains_key(&addr) {
            return;
        }
        let f = by_addr.entry(addr).or_insert(Failures {
            since: now,
            attempts: Vec::new(),
        });
        if now.duration_since(f.since) >= self.window {
            *f = Failures {
                since: now,
                attempts: Vec::new(),
            };
        }
        if f.attempts.len() < self.max as usize && !f.attempts.contains(&hash) {
            f.attempts.push(hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let limiter = FailedAuthLimiter::new(3, Duration::from_secs(60), Prefixes::DEFAULT);
        let t0 = Instant::now();
        for i in 0..3u64 {
            assert!(limiter.allows(A, t0), "attempt {i}");
            limiter.failed(A, &i.to_be_bytes(), t0 + Duration::from_secs(i));
        }
        assert!(!limiter.allows(A, t0 + Duration::from_secs(59)));
        assert!(limiter.allows(B, t0), "other addresses are not affected");
        assert!(limiter.allows(A, t0 + Duration::from_secs(60)));
        // A new window starts with the next failure.
        limiter.failed(A, b"again", t0 + Duration::from_secs(61));
        assert!(limiter.allows(A, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = FailedAuthLimiter::new(0, Duration::from_secs(60), Prefixes::DEFAULT);
        let t0 = Instant::now();
        for i in 0..100u32 {
            limiter.failed(A, &i.to_be_bytes(), t0);
        }
        assert!(limiter.allows(A, t0));
    }

    #[test]
    fn a_repeated_attempt_counts_once() {
        let limiter = FailedAuthLimiter::new(3, Duration::from_secs(60), Prefixes::DEFAULT);
        let t0 = Instant::now();
        // A client library retrying the same wrong AUTH eleven times.
        for _ in 0..11 {
            limiter.failed(A, b"key:wrong@g/topic=t&role=pub", t0);
        }
        assert!(limiter.allows(A, t0));
        limiter.failed(A, b"key:guess2@g/topic=t&role=pub", t0);
        assert!(limiter.allows(A, t0));
        limiter.failed(A, b"key:guess3@g/topic=t&role=pub", t0);
        assert!(!limiter.allows(A, t0), "three distinct failures");
    }

    #[test]
    fn addresses_count_together_per_network() {
        let t0 = Instant::now();
        let per_24 =
            FailedAuthLimiter::new(2, Duration::from_secs(60), Prefixes { v4: 24, v6: 64 });
        per_24.failed(A, b"one", t0);
        per_24.failed(B, b"two", t0);
        assert!(!per_24.allows(A, t0), "10.0.0.1 and .2 share a /24");
        let other: IpAddr = "10.0.1.1".parse().unwrap();
        assert!(per_24.allows(other, t0));
        // The default: each IPv4 address apart, IPv6 by /64.
        let default = FailedAuthLimiter::new(2, Duration::from_secs(60), Prefixes::DEFAULT);
        default.failed(A, b"one", t0);
        default.failed(B, b"two", t0);
        assert!(default.allows(A, t0));
        let (x, y): (IpAddr, IpAddr) = (
            "2001:db8::1".parse().unwrap(),
            "2001:db8::ffff:2".parse().unwrap(),
        );
        default.failed(x, b"one", t0);
        default.failed(y, b"two", t0);
        assert!(!default.allows(x, t0), "one /64");
        assert_eq!(
            Prefixes { v4: 0, v6: 0 }.network(A),
            IpAddr::from([0, 0, 0, 0])
        );
    }
}
