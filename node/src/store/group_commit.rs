//! Group commit: changes that finish while a flush is running share the next flush, instead of
//! each waiting for an fsync of its own. A change is acknowledged only after a flush that began
//! after the change was applied has completed, so nothing is acknowledged before it is on disk.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts changes asking to be made durable and the flush that covered them.
#[derive(Debug, Default)]
pub(super) struct GroupCommit {
    /// Changes that asked for a flush, counted when they ask (after they were applied).
    requested: AtomicU64,
    /// Held while one flush runs; holds how many requests the last completed flush covered.
    flushed: tokio::sync::Mutex<u64>,
    /// Flushes done, so the test can tell that writers shared them.
    flushes: AtomicU64,
}

impl GroupCommit {
    /// Returns once a change applied to `db` before this call is on disk.
    pub(super) async fn commit(&self, db: &sled::Db) -> Result<(), sled::Error> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        // The lock is fair: callers queue while one flush runs, and the first of them flushes
        // for all that arrived meanwhile; the rest find themselves covered.
        let mut flushed = self.flushed.lock().await;
        if *flushed >= ticket {
            return Ok(());
        }
        // Every request counted up to here was applied before this flush starts.
        let covers = self.requested.load(Ordering::SeqCst);
        db.flush()?;
        self.flushes.fetch_add(1, Ordering::Relaxed);
        // Only after success: a failed or cancelled flush leaves the next caller to flush again.
        *flushed = covers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// 64 concurrent writers: all durable after their commit returns, with far fewer flushes
    /// than writers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(dir.path())
            .flush_every_ms(None)
            .open()
            .unwrap();
        let group = Arc::new(GroupCommit::default());
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let (db, group) = (db.clone(), group.clone());
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), vec![0u8; 200]).unwrap();
                group.commit(&db).await.unwrap();
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            *group.flushed.lock().await,
            64,
            "the last flush covered all"
        );
        let flushes = group.flushes.load(Ordering::Relaxed);
        assert!(
            (1..32).contains(&flushes),
            "{flushes} flushes for 64 writers"
        );
        drop(db);
        let reopened = sled::open(dir.path()).unwrap();
        assert_eq!(reopened.len(), 64);
    }
}
