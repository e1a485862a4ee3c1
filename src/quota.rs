//! Per-app caps on publishing (records/s, bytes/s) and on connections, as
//! the `app_quota` table sets them (docs/operations.md, "Quotas").
//!
//! Each app that has a connection gets one [`AppQuota`], shared by all its
//! connections on every shard. Its rates are kept as GCRA "theoretical
//! arrival times" in atomics: a produce moves the app's time forward by its
//! cost, and when that time runs ahead of the clock by more than a short
//! burst, the connection that produced pauses its reading for the
//! difference. Nothing is refused or dropped; the app just goes no faster
//! than its cap, the way Kafka's own quotas throttle. Connections are
//! counted per app; over the cap, AUTH is refused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How far ahead of the clock an app's publishing may run before its
/// connections pause: what it may send at once after a quiet spell. Short,
/// so that a cap holds over any second; long enough that a connection pauses
/// once per many records, not once per record.
const BURST: Duration = Duration::from_millis(100);

/// The most an app's account may run ahead of the clock, so the longest a
/// connection pauses at once: a record larger than a few seconds of its
/// cap (1 MB under 100 bytes/s) slows its app to one such record per this
/// long instead of pausing it for hours, and a client that gave up is
/// noticed within it.
const MAX_AHEAD: Duration = Duration::from_secs(10);

/// An app's caps; 0 is no cap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct QuotaLimits {
    pub records_per_sec: u64,
    pub bytes_per_sec: u64,
    pub connections: u64,
}

impl QuotaLimits {
    pub fn is_capped(&self) -> bool {
        *self != QuotaLimits::default()
    }
}

/// The app's connections are at its cap.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectionsFull {
    pub cap: u64,
}

/// The usage of every app with connections (and of capped apps that had
/// some), shared by the shards, the refresh and `/metrics`.
pub struct Quotas {
    apps: Mutex<HashMap<String, Arc<AppQuota>>>,
    /// The zero of every app's clock (atomics hold nanoseconds since it).
    epoch: Instant,
}

impl Default for Quotas {
    fn default() -> Quotas {
        Quotas {
            apps: Mutex::default(),
            epoch: Instant::now(),
        }
    }
}

impl Quotas {
    /// Counts a new connection of `app` unless the app is at its
    /// connection cap. The connection is counted until the returned guard
    /// is dropped. `current_limits` gives the app's caps from the current
    /// snapshot; it is asked under the same lock as [`Quotas::apply`], so an
    /// AUTH racing a refresh cannot put back the caps the refresh replaced.
    pub fn admit(
        &self,
        app: &str,
        current_limits: impl FnOnce() -> QuotaLimits,
    ) -> Result<Admission, ConnectionsFull> {
        let quota = {
            let mut apps = self.lock();
            let quota = apps.entry(app.to_owned()).or_insert_with(|| {
                let quota = AppQuota::new(self.epoch);
                quota.set_limits(current_limits());
                Arc::new(quota)
            });
            Arc::clone(quota)
        };
        let cap = quota.connection_cap.load(Relaxed);
        quota
            .connections
            .fetch_update(Relaxed, Relaxed, |n| (cap == 0 || n < cap).then_some(n + 1))
            .map_err(|_| ConnectionsFull { cap })?;
        Ok(Admission { quota })
    }

    /// Applies the caps of a new auth snapshot to the apps in use, and
    /// forgets the uncapped ones nobody uses any more.
    pub fn apply(&self, limits_of: impl Fn(&str) -> QuotaLimits) {
        self.lock().retain(|app, quota| {
            let limits = limits_of(app);
            quota.set_limits(limits);
            limits.is_capped() || Arc::strong_count(quota) > 1
        });
    }

    /// The capped apps' figures, by app key, for `/metrics`.
    pub fn capped(&self) -> Vec<(String, QuotaFigures)> {
        let mut out: Vec<_> = self
            .lock()
            .iter()
            .map(|(app, quota)| (app.clone(), quota.figures()))
            .filter(|(_, figures)| figures.limits.is_capped())
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AppQuota>>> {
        // A panic while holding the map cannot leave it half-changed: every
        // change is one HashMap call.
        self.apps.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One app's caps and usage.
pub struct AppQuota {
    records: Rate,
    bytes: Rate,
    connection_cap: AtomicU64,
    connections: AtomicU64,
    /// Records and bytes charged while the app had a rate cap.
    records_charged: AtomicU64,
    bytes_charged: AtomicU64,
    /// Pauses imposed on its connections, added up (connection-time).
    throttled_nanos: AtomicU64,
    epoch: Instant,
}

/// A snapshot of an app's caps and usage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct QuotaFigures {
    pub limits: QuotaLimits,
    pub connections: u64,
    pub records: u64,
    pub bytes: u64,
    pub throttled: Duration,
}

impl AppQuota {
    fn new(epoch: Instant) -> AppQuota {
        AppQuota {
            records: Rate::default(),
            bytes: Rate::default(),
            connection_cap: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            records_charged: AtomicU64::new(0),
            bytes_charged: AtomicU64::new(0),
            throttled_nanos: AtomicU64::new(0),
            epoch,
        }
    }

    fn set_limits(&self, limits: QuotaLimits) {
        self.records.set(limits.records_per_sec);
        self.bytes.set(limits.bytes_per_sec);
        self.connection_cap.store(limits.connections, Relaxed);
    }

    /// Whether the app has a rate cap now.
    pub fn rate_capped(&self) -> bool {
        self.records.per_sec.load(Relaxed) != 0 || self.bytes.per_sec.load(Relaxed) != 0
    }

    /// A connection of the app paused `pause` longer than it already was:
    /// added to the app's throttled time (overlapping pauses once).
    pub fn paused_for(&self, pause: Duration) {
        self.throttled_nanos
            .fetch_add(pause.as_nanos() as u64, Relaxed);
    }

    /// Counts `records` of `bytes` produced now. Returns how long the
    /// producing connection is to pause its reading, if the app is over a
    /// cap. Without a rate cap, two atomic loads and nothing else.
    pub fn charge(&self, records: u64, bytes: u64) -> Option<Duration> {
        if !self.rate_capped() {
            return None;
        }
        self.charge_at(records, bytes, Instant::now())
    }

    fn charge_at(&self, records: u64, bytes: u64, now: Instant) -> Option<Duration> {
        self.records_charged.fetch_add(records, Relaxed);
        self.bytes_charged.fetch_add(bytes, Relaxed);
        let now = now.saturating_duration_since(self.epoch).as_nanos() as u64;
        let ahead = self
            .records
            .charge(records, now)
            .max(self.bytes.charge(bytes, now));
        let pause = ahead.saturating_sub(BURST.as_nanos() as u64);
        (pause > 0).then(|| Duration::from_nanos(pause))
    }

    pub fn figures(&self) -> QuotaFigures {
        QuotaFigures {
            limits: QuotaLimits {
                records_per_sec: self.records.per_sec.load(Relaxed),
                bytes_per_sec: self.bytes.per_sec.load(Relaxed),
                connections: self.connection_cap.load(Relaxed),
            },
            connections: self.connections.load(Relaxed),
            records: self.records_charged.load(Relaxed),
            bytes: self.bytes_charged.load(Relaxed),
            throttled: Duration::from_nanos(self.throttled_nanos.load(Relaxed)),
        }
    }
}

/// One rate cap: `per_sec` units a second (0: none), and the time (ns
/// since the epoch) at which what was charged so far would have been sent
/// at that rate.
#[derive(Default)]
struct Rate {
    per_sec: AtomicU64,
    due: AtomicU64,
}

impl Rate {
    /// A new cap, or none: what was charged at the old rate is forgiven,
    /// so that a raised or removed cap applies at once.
    fn set(&self, per_sec: u64) {
        if self.per_sec.swap(per_sec, Relaxed) != per_sec {
            self.due.store(0, Relaxed);
        }
    }

    /// Charges `amount` at `now`; returns how far the rate's time is then
    /// ahead of the clock (ns), at most MAX_AHEAD.
    fn charge(&self, amount: u64, now: u64) -> u64 {
        let per_sec = self.per_sec.load(Relaxed);
        if per_sec == 0 {
            return 0;
        }
        let cost = (u128::from(amount) * 1_000_000_000 / u128::from(per_sec)) as u64;
        // Time not used is not saved up: a quiet app starts again at now.
        let limit = now.saturating_add(MAX_AHEAD.as_nanos() as u64);
        let advance = |due: u64| due.max(now).saturating_add(cost).min(limit);
        let before = match self
            .due
            .fetch_update(Relaxed, Relaxed, |due| Some(advance(due)))
        {
            Ok(before) | Err(before) => before,
        };
        advance(before) - now
    }
}

/// A connection counted against its app's cap, until dropped. Also the
/// connection's handle on the app's rates.
pub struct Admission {
    quota: Arc<AppQuota>,
}

impl Admission {
    pub fn quota(&self) -> &Arc<AppQuota> {
        &self.quota
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.quota.connections.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capped(records_per_sec: u64, bytes_per_sec: u64) -> QuotaLimits {
        QuotaLimits {
            records_per_sec,
            bytes_per_sec,
            connections: 0,
        }
    }

    #[test]
    fn a_rate_cap_pauses_past_the_burst_for_exactly_the_excess() {
        let quotas = Quotas::default();
        let admission = quotas.admit("a", || capped(1000, 0)).unwrap();
        let quota = admission.quota();
        let t0 = quotas.epoch + Duration::from_secs(1);
        // 100 ms of records (the burst) go through without a pause.
        for _ in 0..100 {
            assert_eq!(quota.charge_at(1, 10, t0), None);
        }
        // The 101st is 1 ms past it.
        assert_eq!(quota.charge_at(1, 10, t0), Some(Duration::from_millis(1)));
        // 500 more at once: 501 ms past.
        assert_eq!(
            quota.charge_at(500, 5000, t0),
            Some(Duration::from_millis(501))
        );
        // Once the clock caught up, the next record is free again.
        let later = t0 + Duration::from_millis(601);
        assert_eq!(quota.charge_at(1, 10, later), None);
        let figures = quota.figures();
        assert_eq!((figures.records, figures.bytes), (602, 6020));
        // 20 s of records at once: the pause stops at 10 s.
        assert_eq!(quota.charge_at(20_000, 0, later), Some(MAX_AHEAD - BURST));
    }

    #[test]
    fn a_changed_cap_forgives_what_the_old_one_charged() {
        let quotas = Quotas::default();
        let admission = quotas.admit("a", || capped(10, 0)).unwrap();
        let t0 = quotas.epoch;
        assert_eq!(
            admission.quota().charge_at(10, 0, t0),
            Some(Duration::from_millis(900))
        );
        quotas.apply(|_| capped(1000, 0));
        assert_eq!(admission.quota().charge_at(10, 0, t0), None);
        quotas.apply(|_| QuotaLimits::default());
        assert!(!admission.quota().rate_capped());
    }

    #[test]
    fn the_tighter_of_records_and_bytes_decides() {
        let quotas = Quotas::default();
        let admission = quotas.admit("a", || capped(1_000_000, 1000)).unwrap();
        let t0 = quotas.epoch;
        // 1,000 bytes a second: 300 bytes are 300 ms, 200 past the burst.
        assert_eq!(
            admission.quota().charge_at(1, 300, t0),
            Some(Duration::from_millis(200))
        );
    }

    #[test]
    fn time_not_used_is_not_saved_up() {
        let quotas = Quotas::default();
        let admission = quotas.admit("a", || capped(10, 0)).unwrap();
        let t0 = quotas.epoch + Duration::from_secs(3600);
        // An hour idle buys no more than the burst: one record is 100 ms.
        assert_eq!(admission.quota().charge_at(1, 1, t0), None);
        assert_eq!(
            admission.quota().charge_at(1, 1, t0),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn uncapped_apps_are_not_counted_or_paused() {
        let quotas = Quotas::default();
        let admission = quotas.admit("a", QuotaLimits::default).unwrap();
        assert_eq!(admission.quota().charge(1_000_000, 1 << 30), None);
        assert_eq!(admission.quota().figures().records, 0);
        assert!(quotas.capped().is_empty());
    }

    #[test]
    fn connections_are_capped_per_app_and_given_back() {
        let quotas = Quotas::default();
        let two = QuotaLimits {
            connections: 2,
            ..QuotaLimits::default()
        };
        let first = quotas.admit("a", || two).unwrap();
        let second = quotas.admit("a", || two).unwrap();
        assert_eq!(
            quotas.admit("a", || two).err(),
            Some(ConnectionsFull { cap: 2 })
        );
        // Another app is not affected.
        let _other = quotas.admit("b", || two).unwrap();
        drop(second);
        let _third = quotas.admit("a", || two).unwrap();
        assert_eq!(first.quota().figures().connections, 2);
        assert_eq!(quotas.capped().len(), 2);
    }

    #[test]
    fn a_refresh_changes_caps_and_forgets_unused_uncapped_apps() {
        let quotas = Quotas::default();
        let a = quotas.admit("a", QuotaLimits::default).unwrap();
        drop(quotas.admit("idle", QuotaLimits::default).unwrap());
        drop(quotas.admit("capped", || capped(5, 0)).unwrap());
        quotas.apply(|app| match app {
            "a" | "capped" => capped(7, 0),
            _ => QuotaLimits::default(),
        });
        assert_eq!(a.quota().figures().limits.records_per_sec, 7);
        let apps: Vec<String> = quotas
            .lock()
            .keys()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        assert_eq!(apps, ["a", "capped"]);
    }
}
