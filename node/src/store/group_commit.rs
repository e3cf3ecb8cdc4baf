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
    pub(super) async fn commit(
        &self,
        db: &sled::Db,
        flush_seconds: &super::FlushSeconds,
    ) -> Result<(), sled::Error> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        // The lock is fair: callers queue while one flush runs, and the first of them flushes
        // for all that arrived meanwhile; the rest find themselves covered.
        let mut flushed = self.flushed.lock().await;
        if *flushed >= ticket {
            return Ok(());
        }
        // Every request counted up to here was applied before this flush starts.
        let covers = self.requested.load(Ordering::SeqCst);
        let started = std::time::Instant::now();
        db.flush()?;
        flush_seconds.observe(started.elapsed().as_secs_f64());
        self.flushes.fetch_add(1, Ordering::Relaxed);
        // Only after success: a failed or cancelled flush leaves the next caller to flush again.
        *flushed = covers;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::sync::Arc;

    use super::*;

    fn open(dir: &std::path::Path) -> sled::Db {
        // As the store opens it: no background flushing, so only the commit's flush saves.
        sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .open()
            .expect("sled opens")
    }

    /// 64 concurrent writers: the last flush covers all, with far fewer flushes than writers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_commits_share_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path());
        let group = Arc::new(GroupCommit::default());
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let (db, group) = (db.clone(), group.clone());
            tasks.push(tokio::spawn(async move {
                db.insert(i.to_be_bytes(), vec![0u8; 200]).unwrap();
                group
                    .commit(&db, &super::super::flush_seconds())
                    .await
                    .unwrap();
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
    }

    const CHILD: &str = "SCHEIN_GROUP_COMMIT_CHILD";
    const WRITERS: u32 = 64;

    /// Durability can only be seen across a real process kill: sled flushes when a database is
    /// dropped, so reopening it in the same process would pass without any commit. This test
    /// runs itself again as a child process that writes with 64 concurrent writers and prints
    /// each write the moment its commit returns; the parent kills the child with SIGKILL as soon
    /// as all are printed, and reopens the database: every acknowledged write is there.
    #[test]
    fn acknowledged_commits_survive_a_process_kill() {
        if let Ok(dir) = std::env::var(CHILD) {
            return write_until_killed(std::path::Path::new(&dir));
        }
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "store::group_commit::tests::acknowledged_commits_survive_a_process_kill",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut acknowledged = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            // libtest's own "test … ... " may precede the first line without a line break.
            if let Some((_, i)) = line.split_once("durable ") {
                acknowledged.push(i.parse::<u32>().unwrap());
                if acknowledged.len() == WRITERS as usize {
                    break;
                }
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            acknowledged.len(),
            WRITERS as usize,
            "the child acknowledged every write"
        );
        let db = open(dir.path());
        for i in acknowledged {
            assert!(
                db.get(i.to_be_bytes()).unwrap().is_some(),
                "write {i} was acknowledged but is gone after the kill"
            );
        }
    }

    /// The child's part: concurrent writes, each announced once its commit returned; then it
    /// waits to be killed.
    fn write_until_killed(dir: &std::path::Path) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let db = open(dir);
            let group = Arc::new(GroupCommit::default());
            let tasks: Vec<_> = (0..WRITERS)
                .map(|i| {
                    let (db, group) = (db.clone(), group.clone());
                    tokio::spawn(async move {
                        db.insert(i.to_be_bytes(), vec![7u8; 200]).unwrap();
                        group
                            .commit(&db, &super::super::flush_seconds())
                            .await
                            .unwrap();
                        println!("durable {i}");
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            // Killed here, holding the database open: no drop, no flush on the way out.
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        });
    }
}
