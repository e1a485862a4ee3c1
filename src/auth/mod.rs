//! Authentication: the AUTH string grammar (`dsn`), the grants it is checked
//! against (`snapshot`), where they come from (`mysql`), the bound on failed
//! attempts (`limiter`), and the hub that hands the latest snapshot to every
//! shard (`AuthHub`).

pub mod dsn;
pub mod limiter;
pub mod mysql;
pub mod snapshot;

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::watch;

pub use dsn::{Dsn, DsnError, Role};
pub use snapshot::{AuthSnapshot, Denied, Grant};

/// The current snapshot, readable lock-free from every shard, plus a change signal
/// so authenticated connections can re-check their grant after each refresh.
pub struct AuthHub {
    current: ArcSwap<AuthSnapshot>,
    changed: watch::Sender<u64>,
}

impl AuthHub {
    pub fn new(initial: AuthSnapshot) -> AuthHub {
        AuthHub {
            current: ArcSwap::from_pointee(initial),
            changed: watch::channel(0).0,
        }
    }

    pub fn current(&self) -> Arc<AuthSnapshot> {
        self.current.load_full()
    }

    /// Installs a new snapshot and wakes every connection watching for changes.
    pub fn publish(&self, snapshot: AuthSnapshot) {
        self.current.store(Arc::new(snapshot));
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// A receiver that fires after each `publish`. It works from any executor:
    /// tokio's sync primitives need no tokio reactor.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
