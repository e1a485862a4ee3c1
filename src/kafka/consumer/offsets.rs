//! One partition's commit position as the client moves it with
//! `SET <partition> <offset>`: forward only, and never held back by records
//! the member skipped for their color.

use std::collections::BTreeMap;

/// Runs of skipped records (other colors) remembered per partition, waiting
/// for the client to commit the delivered record before them.
const MAX_SKIPPED_RUNS: usize = 10_000;

/// One partition's commit position, as the client moved it.
///
/// Records skipped for their color are never shown to the client, so the client
/// never commits them; they must not hold the position back. A skipped record
/// right after a delivered one rides along with that one's commit; one with no
/// uncommitted delivery before it is committed at once.
#[derive(Default, Debug)]
pub(super) struct PartitionOffsets {
    /// The next offset to read, as far as commits go.
    next: Option<i64>,
    /// `next` changed since it was last sent to Kafka.
    dirty: bool,
    last_delivered: Option<i64>,
    /// Delivered offset → the last skipped offset that followed it.
    skipped_after: BTreeMap<i64, i64>,
}

impl PartitionOffsets {
    pub(super) fn delivered(&mut self, offset: i64) {
        self.last_delivered = Some(offset);
    }

    pub(super) fn skipped(&mut self, offset: i64) {
        match self.last_delivered {
            Some(delivered) if self.next.is_none_or(|next| next <= delivered) => {
                // Bounded for a client that never commits: the oldest entry
                // goes (its skipped records are then read and skipped again
                // after a restart, nothing lost).
                if self.skipped_after.len() >= MAX_SKIPPED_RUNS
                    && !self.skipped_after.contains_key(&delivered)
                {
                    self.skipped_after.pop_first();
                }
                self.skipped_after.insert(delivered, offset);
            }
            _ => self.advance(offset + 1),
        }
    }

    pub(super) fn client_commit(&mut self, offset: i64) {
        let through = self.skipped_after.get(&offset).copied().unwrap_or(offset);
        self.skipped_after = self.skipped_after.split_off(&offset.saturating_add(1));
        self.advance(through.saturating_add(1));
    }

    fn advance(&mut self, next: i64) {
        if self.next.is_none_or(|current| next > current) {
            self.next = Some(next);
            self.dirty = true;
        }
    }

    /// The position to send to Kafka, once after each change.
    pub(super) fn take_dirty(&mut self) -> Option<i64> {
        std::mem::take(&mut self.dirty)
            .then_some(self.next)
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::PartitionOffsets;

    #[test]
    fn commits_store_offset_plus_one_forward_only() {
        let mut p = PartitionOffsets::default();
        p.delivered(5);
        p.client_commit(5);
        assert_eq!(p.take_dirty(), Some(6));
        assert_eq!(p.take_dirty(), None, "sent once");
        p.client_commit(3);
        assert_eq!(p.take_dirty(), None, "never backwards");
        p.client_commit(9);
        assert_eq!(p.take_dirty(), Some(10));
    }

    #[test]
    fn skipped_records_never_hold_back_commits() {
        let mut p = PartitionOffsets::default();
        // Nothing delivered yet: a skipped record is committed past at once.
        p.skipped(0);
        assert_eq!(p.take_dirty(), Some(1));
        // 1 delivered, 2 and 3 skipped: committing 1 moves past 3.
        p.delivered(1);
        p.skipped(2);
        p.skipped(3);
        assert_eq!(p.take_dirty(), None, "2 and 3 wait for 1's commit");
        p.client_commit(1);
        assert_eq!(p.take_dirty(), Some(4));
        // 4 delivered and committed, then 5 skipped: straight past it.
        p.delivered(4);
        p.client_commit(4);
        p.skipped(5);
        assert_eq!(p.take_dirty(), Some(6));
    }
}
