//! Authentication: the AUTH string grammar (`dsn`), the grants it is checked
//! against (`snapshot`), where they come from (`mysql`), the bound on failed
//! attempts (`limiter`), and the hub that hands the latest snapshot to every
//! shard (`AuthHub`), with the apps' usage against the caps it holds.

pub mod dsn;
pub mod limiter;
pub mod mysql;
pub mod snapshot;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::quota::Quotas;

pub use dsn::{Dsn, DsnError, Role};

/// What the logs show of something that may be a secret (an unknown app key
/// is often a secret in the key's place): 8 hex digits of its SHA-256 salted
/// with a key of this process, enough to tell two values apart within a run,
/// nothing to test guesses against offline.
pub fn fingerprint(value: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    static SALT: std::sync::OnceLock<[u8; 16]> = std::sync::OnceLock::new();
    let salt = SALT.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // RandomState is seeded from the OS, afresh per process.
        let mut salt = [0u8; 16];
        for (i, chunk) in salt.chunks_mut(8).enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
        salt
    });
    Sha256::new()
        .chain_update(salt)
        .chain_update(value)
        .finalize()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
pub use snapshot::{AuthSnapshot, Denied, Grant};

/// The current snapshot, readable lock-free from every shard, plus a change signal
/// so authenticated connections can re-check their grant after each refresh.
pub struct AuthHub {
    current: ArcSwap<AuthSnapshot>,
    /// The apps' connections and publishing against their caps; each new
    /// snapshot's caps apply at once.
    quotas: Arc<Quotas>,
    changed: watch::Sender<u64>,
    /// Loads that installed a snapshot (the first one included), and refreshes
    /// that failed and kept the last good one.
    loads: AtomicU64,
    failures: AtomicU64,
    /// Failures since the last load that worked.
    failing_for: AtomicU64,
    /// When MySQL last answered with the rows being served (ms since the
    /// Unix epoch): a refresh that reads the same rows again makes them
    /// fresh without a new snapshot.
    read_at_ms: AtomicU64,
}

/// How the refreshes have gone, for metrics, INFO and `/readyz`.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshStats {
    pub loads: u64,
    pub failures: u64,
    pub consecutive_failures: u64,
    /// How old the rows being served are.
    pub snapshot_age: Duration,
    pub apps: usize,
    pub grants: usize,
    /// Apps whose secret is stored in plaintext, not hashed.
    pub plaintext_secrets: usize,
}

impl AuthHub {
    pub fn new(initial: AuthSnapshot) -> AuthHub {
        let read_at_ms = AtomicU64::new(unix_ms(initial.loaded_at));
        AuthHub {
            read_at_ms,
            current: ArcSwap::from_pointee(initial),
            quotas: Arc::default(),
            changed: watch::channel(0).0,
            loads: AtomicU64::new(1),
            failures: AtomicU64::new(0),
            failing_for: AtomicU64::new(0),
        }
    }

    pub fn quotas(&self) -> &Arc<Quotas> {
        &self.quotas
    }

    pub fn current(&self) -> Arc<AuthSnapshot> {
        self.current.load_full()
    }

    /// Installs a new snapshot and wakes every connection watching for changes.
    pub fn publish(&self, snapshot: AuthSnapshot) {
        self.read_at_ms
            .store(unix_ms(snapshot.loaded_at), Ordering::Relaxed);
        // Stored before the caps are applied: an AUTH admitted meanwhile
        // reads its caps from this snapshot (Quotas::admit).
        let snapshot = Arc::new(snapshot);
        self.current.store(Arc::clone(&snapshot));
        self.quotas.apply(|app| snapshot.quota(app));
        self.changed.send_modify(|generation| *generation += 1);
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.failing_for.store(0, Ordering::Relaxed);
    }

    /// A refresh read the rows being served again, unchanged: they are as
    /// fresh as `read_at`, and no connection is woken to re-check its grant.
    pub fn unchanged(&self, read_at: SystemTime) {
        self.read_at_ms
            .store(unix_ms(Some(read_at)), Ordering::Relaxed);
        self.loads.fetch_add(1, Ordering::Relaxed);
        self.failing_for.store(0, Ordering::Relaxed);
    }

    /// A refresh failed; the current snapshot stays.
    pub fn refresh_failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.failing_for.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refresh_stats(&self) -> RefreshStats {
        let current = self.current();
        RefreshStats {
            loads: self.loads.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            consecutive_failures: self.failing_for.load(Ordering::Relaxed),
            snapshot_age: match self.read_at_ms.load(Ordering::Relaxed) {
                0 => Duration::ZERO,
                ms => SystemTime::now()
                    .duration_since(UNIX_EPOCH + Duration::from_millis(ms))
                    .unwrap_or_default(),
            },
            apps: current.app_count(),
            grants: current.grant_count(),
            plaintext_secrets: current.plaintext_secrets,
        }
    }

    /// A receiver that fires after each `publish`. It works from any executor:
    /// tokio's sync primitives need no tokio reactor.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// `at` in ms since the Unix epoch; 0 for none.
fn unix_ms(at: Option<SystemTime>) -> u64 {
    at.and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_rows_freshen_the_snapshot_without_waking_anyone() {
        let old = SystemTime::now() - Duration::from_secs(60);
        let hub = AuthHub::new(AuthSnapshot::build(vec![], vec![], old).snapshot);
        let watch = hub.watch();
        assert!(hub.refresh_stats().snapshot_age >= Duration::from_secs(60));
        hub.refresh_failed();
        hub.unchanged(SystemTime::now());
        let stats = hub.refresh_stats();
        assert!(stats.snapshot_age < Duration::from_secs(5), "{stats:?}");
        assert_eq!((stats.loads, stats.consecutive_failures), (2, 0));
        assert!(!watch.has_changed().unwrap(), "nobody is woken");
        hub.publish(AuthSnapshot::build(vec![], vec![], SystemTime::now()).snapshot);
        assert!(
            watch.has_changed().unwrap(),
            "a new snapshot wakes everyone"
        );
        assert_eq!(hub.refresh_stats().loads, 3);
    }
}
