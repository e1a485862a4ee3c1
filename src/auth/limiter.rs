//! Bounds failed AUTH attempts per source address, so that a client cannot try
//! secrets at line rate. After `max` failures from one address within a window,
//! AUTH from that address is refused without being checked until the window,
//! which starts at the first failure, ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most. Past it (a flood from that many addresses, each
/// failing), new addresses go untracked rather than growing memory.
const MAX_TRACKED: usize = 65_536;

pub struct FailedAuthLimiter {
    /// Failures allowed per window; 0 disables the limit.
    max: u32,
    window: Duration,
    by_addr: Mutex<HashMap<IpAddr, Failures>>,
}

struct Failures {
    since: Instant,
    count: u32,
}

impl FailedAuthLimiter {
    pub fn new(max: u32, window: Duration) -> FailedAuthLimiter {
        FailedAuthLimiter {
            max,
            window,
            by_addr: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `addr` may try an AUTH now.
    pub fn allows(&self, addr: IpAddr, now: Instant) -> bool {
        if self.max == 0 {
            return true;
        }
        let by_addr = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        match by_addr.get(&addr) {
            Some(f) => f.count < self.max || now.duration_since(f.since) >= self.window,
            None => true,
        }
    }

    /// Counts a failed AUTH from `addr`.
    pub fn failed(&self, addr: IpAddr, now: Instant) {
        if self.max == 0 {
            return;
        }
        let mut by_addr = self.by_addr.lock().unwrap_or_else(|e| e.into_inner());
        if by_addr.len() >= MAX_TRACKED {
            by_addr.retain(|_, f| now.duration_since(f.since) < self.window);
        }
        if by_addr.len() >= MAX_TRACKED && !by_addr.contains_key(&addr) {
            return;
        }
        let f = by_addr.entry(addr).or_insert(Failures {
            since: now,
            count: 0,
        });
        if now.duration_since(f.since) >= self.window {
            *f = Failures {
                since: now,
                count: 0,
            };
        }
        f.count += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn blocks_after_max_failures_until_the_window_ends() {
        let limiter = FailedAuthLimiter::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(limiter.allows(A, t0), "attempt {i}");
            limiter.failed(A, t0 + Duration::from_secs(i));
        }
        assert!(!limiter.allows(A, t0 + Duration::from_secs(59)));
        assert!(limiter.allows(B, t0), "other addresses are not affected");
        assert!(limiter.allows(A, t0 + Duration::from_secs(60)));
        // A new window starts with the next failure.
        limiter.failed(A, t0 + Duration::from_secs(61));
        assert!(limiter.allows(A, t0 + Duration::from_secs(61)));
    }

    #[test]
    fn zero_disables_the_limit() {
        let limiter = FailedAuthLimiter::new(0, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..100 {
            limiter.failed(A, t0);
        }
        assert!(limiter.allows(A, t0));
    }
}
