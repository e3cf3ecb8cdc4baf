//! Backups of the store: a consistent snapshot of every tree written to one file, and a restore
//! of such a file into an empty data directory.
//!
//! Consistency: every change of the store holds the store's *quiet* lock for reading while its
//! transaction runs (the writer's batches and the office's direct transactions alike); the
//! snapshot holds it for writing while it reads the trees. The snapshot therefore sees each
//! transaction whole or not at all, and settlements wait only while the trees are copied.
//!
//! The file: the magic `SCHEIN-BACKUP-1\n`, a length-prefixed [`BackupHeader`] (format, node id,
//! time, ledger head), then frames — a tree name, or a key and its value — an end frame, and the
//! SHA-256 of everything before it. It is written under a temporary name, synced and renamed, so
//! a crash never leaves a half file under the name asked for. A restore checks the checksum
//! before it writes anything, and that the file belongs to this node.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use sha2::Digest;

use super::{Store, StoreError, corrupt};

const MAGIC: &[u8; 16] = b"SCHEIN-BACKUP-1\n";
const FORMAT: u32 = 1;
const TREE: u8 = 1;
const ENTRY: u8 = 2;
const END: u8 = 0;
/// Larger frames than any tree name, key or value the store writes: a damaged length is caught
/// before it allocates.
const MAX_FRAME: usize = 64 << 20;

/// What a backup says about itself.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BackupHeader {
    #[prost(uint32, tag = "1")]
    pub format: u32,
    /// The node whose store this is.
    #[prost(string, tag = "2")]
    pub node: String,
    /// When the snapshot was taken, Unix seconds.
    #[prost(int64, tag = "3")]
    pub created_at: i64,
    /// The ledger head in the snapshot.
    #[prost(uint64, tag = "4")]
    pub ledger_seq: u64,
    #[prost(bytes = "vec", tag = "5")]
    pub ledger_hash: Vec<u8>,
    /// Key-value pairs in the snapshot, over all trees.
    #[prost(uint64, tag = "6")]
    pub entries: u64,
    /// The next id the store's id generator gives (issue and claim order): a restored store
    /// continues after it, not from zero.
    #[prost(uint64, tag = "7")]
    pub next_id: u64,
}

/// Why a backup could not be made or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a schein backup, or it is damaged: {1}")]
    Damaged(PathBuf, String),
    #[error("the backup is of node '{found}', not of this node '{expected}'")]
    OtherNode { found: String, expected: String },
    #[error(
        "the data directory {0} is not empty: restore only into an empty (or missing) directory"
    )]
    NotEmpty(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hash: sha2::Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hash.update(&bytes[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn frame(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| std::io::Error::other("a value larger than 4 GiB"))?;
    out.write_all(&len.to_be_bytes())?;
    out.write_all(bytes)
}

impl Store {
    /// Holds off every change of the store while `f` runs; changes under way finish first.
    fn quiesced<T>(&self, f: impl FnOnce() -> T) -> T {
        let _quiet = self
            .quiet
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f()
    }

    /// Writes a consistent snapshot of the whole store for node `node` to `file` (replacing it
    /// atomically) and returns its header. Changes wait while the trees are copied.
    pub fn backup(&self, node: &str, file: &Path) -> Result<BackupHeader, BackupError> {
        let tmp = file.with_extension(format!(
            "{}.partial",
            file.extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
        ));
        let result = self.write_backup(node, file, &tmp);
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    fn write_backup(
        &self,
        node: &str,
        file: &Path,
        tmp: &Path,
    ) -> Result<BackupHeader, BackupError> {
        let handle = std::fs::File::create(tmp).map_err(io(tmp))?;
        let mut out = Hashing {
            inner: BufWriter::new(handle),
            hash: sha2::Sha256::new(),
        };
        let header = self.quiesced(|| -> Result<BackupHeader, BackupError> {
            let head = self.ledger_head()?;
            let entries = self
                .db
                .tree_names()
                .iter()
                .map(|name| Ok(self.db.open_tree(name)?.len() as u64))
                .sum::<Result<u64, StoreError>>()?;
            let header = BackupHeader {
                format: FORMAT,
                node: node.to_owned(),
                created_at: crate::node::unix_now(),
                ledger_seq: head.seq,
                ledger_hash: head.hash.to_vec(),
                entries,
                next_id: self.db.generate_id().map_err(StoreError::from)?,
            };
            out.write_all(MAGIC).map_err(io(tmp))?;
            frame(&mut out, &header.encode_to_vec()).map_err(io(tmp))?;
            for name in self.db.tree_names() {
                out.write_all(&[TREE]).map_err(io(tmp))?;
                frame(&mut out, &name).map_err(io(tmp))?;
                for pair in self.db.open_tree(&name).map_err(StoreError::from)?.iter() {
                    let (key, value) = pair.map_err(StoreError::from)?;
                    out.write_all(&[ENTRY]).map_err(io(tmp))?;
                    frame(&mut out, &key).map_err(io(tmp))?;
                    frame(&mut out, &value).map_err(io(tmp))?;
                }
            }
            Ok(header)
        })?;
        out.write_all(&[END]).map_err(io(tmp))?;
        let Hashing { inner, hash } = out;
        let mut inner = inner;
        inner.write_all(&hash.finalize()).map_err(io(tmp))?;
        let handle = inner.into_inner().map_err(|e| BackupError::Io {
            path: tmp.to_owned(),
            source: e.into_error(),
        })?;
        handle.sync_all().map_err(io(tmp))?;
        std::fs::rename(tmp, file).map_err(io(file))?;
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = std::fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(header)
    }
}

/// Reads a backup's header after checking the whole file's checksum.
pub fn inspect(file: &Path) -> Result<BackupHeader, BackupError> {
    check_sum(file)?;
    let mut reader = BufReader::new(std::fs::File::open(file).map_err(io(file))?);
    read_header(file, &mut reader)
}

fn damaged(file: &Path, why: impl Into<String>) -> BackupError {
    BackupError::Damaged(file.to_owned(), why.into())
}

fn check_sum(file: &Path) -> Result<(), BackupError> {
    let mut reader = BufReader::new(std::fs::File::open(file).map_err(io(file))?);
    let len = std::fs::metadata(file).map_err(io(file))?.len();
    if len < (MAGIC.len() + 4 + 1 + 32) as u64 {
        return Err(damaged(file, "it is too short"));
    }
    let mut hash = sha2::Sha256::new();
    let mut left = len - 32;
    let mut buffer = vec![0u8; 1 << 16];
    while left > 0 {
        let take = usize::try_from(left.min(buffer.len() as u64)).unwrap_or(buffer.len());
        reader.read_exact(&mut buffer[..take]).map_err(io(file))?;
        hash.update(&buffer[..take]);
        left -= take as u64;
    }
    let mut stored = [0u8; 32];
    reader.read_exact(&mut stored).map_err(io(file))?;
    if hash.finalize().as_slice() != stored {
        return Err(damaged(file, "its checksum does not match"));
    }
    Ok(())
}

fn read_frame(file: &Path, reader: &mut impl Read) -> Result<Vec<u8>, BackupError> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).map_err(io(file))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(damaged(file, "a frame is too long"));
    }
    let mut bytes = vec![0u8; len];
    reader.read_exact(&mut bytes).map_err(io(file))?;
    Ok(bytes)
}

fn read_header(file: &Path, reader: &mut impl Read) -> Result<BackupHeader, BackupError> {
    let mut magic = [0u8; MAGIC.len()];
    reader.read_exact(&mut magic).map_err(io(file))?;
    if &magic != MAGIC {
        return Err(damaged(file, "it does not start like one"));
    }
    let header = BackupHeader::decode(read_frame(file, reader)?.as_slice())
        .map_err(|_| damaged(file, "its header cannot be read"))?;
    if header.format != FORMAT {
        return Err(damaged(
            file,
            format!("it has format {}, this node reads {FORMAT}", header.format),
        ));
    }
    Ok(header)
}

/// Restores the backup `file` of node `node` into `data_dir`, which must be empty or missing,
/// and marks the store as recovering (see [`Store::recovery`]): the node settles nothing until
/// it has recovered, from its peers, what it settled after the backup.
pub fn restore(file: &Path, node: &str, data_dir: &Path) -> Result<BackupHeader, BackupError> {
    let header = inspect(file)?;
    if header.node != node {
        return Err(BackupError::OtherNode {
            found: header.node,
            expected: node.to_owned(),
        });
    }
    if data_dir.exists()
        && std::fs::read_dir(data_dir)
            .map_err(io(data_dir))?
            .next()
            .is_some()
    {
        return Err(BackupError::NotEmpty(data_dir.to_owned()));
    }
    let imported = import(file, data_dir);
    if imported.is_err() {
        // Leave the directory as it was found: empty.
        let _ = std::fs::remove_dir_all(data_dir);
    }
    imported?;
    Ok(header)
}

fn import(file: &Path, data_dir: &Path) -> Result<(), BackupError> {
    let mut reader = BufReader::new(std::fs::File::open(file).map_err(io(file))?);
    let header = read_header(file, &mut reader)?;
    {
        let db = sled::Config::new()
            .path(data_dir)
            .flush_every_ms(None)
            .open()
            .map_err(StoreError::from)?;
        let mut tree: Option<sled::Tree> = None;
        let mut batch = sled::Batch::default();
        let mut in_batch = 0usize;
        let mut entries = 0u64;
        loop {
            let mut tag = [0u8; 1];
            reader.read_exact(&mut tag).map_err(io(file))?;
            match tag[0] {
                TREE => {
                    if let Some(tree) = &tree {
                        tree.apply_batch(std::mem::take(&mut batch))
                            .map_err(StoreError::from)?;
                        in_batch = 0;
                    }
                    let name = read_frame(file, &mut reader)?;
                    tree = Some(db.open_tree(name).map_err(StoreError::from)?);
                }
                ENTRY => {
                    let key = read_frame(file, &mut reader)?;
                    let value = read_frame(file, &mut reader)?;
                    if tree.is_none() {
                        return Err(damaged(file, "an entry comes before its tree"));
                    }
                    batch.insert(key, value);
                    in_batch += 1;
                    entries += 1;
                    if in_batch == 10_000
                        && let Some(tree) = &tree
                    {
                        tree.apply_batch(std::mem::take(&mut batch))
                            .map_err(StoreError::from)?;
                        in_batch = 0;
                    }
                }
                END => break,
                _ => return Err(damaged(file, "an unknown frame")),
            }
        }
        if let Some(tree) = &tree {
            tree.apply_batch(batch).map_err(StoreError::from)?;
        }
        if entries != header.entries {
            return Err(damaged(
                file,
                format!(
                    "it holds {entries} entries, its header says {}",
                    header.entries
                ),
            ));
        }
        // The id generator lives outside the trees; ids only go up, so draw up to the backup's.
        while db.generate_id().map_err(StoreError::from)? < header.next_id {}
        db.flush().map_err(StoreError::from)?;
    }
    // Opening waits a little for sled to let go of the database just dropped.
    let store = Store::open(data_dir)?;
    let head = store.ledger_head()?;
    if head.seq != header.ledger_seq || head.hash.as_slice() != header.ledger_hash {
        return Err(corrupt("the restored ledger head differs from the backup's").into());
    }
    store.begin_recovery(&header)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Backups of a real store: what a restore gives back, and what it refuses.

    use ed25519_dalek::SigningKey;
    use schein_proto::v1::Scope;
    use schein_proto::voucher::new_body;
    use schein_proto::{Day, Serial, SignedVoucher};

    use super::*;

    async fn voucher(store: &Store) -> Serial {
        let key = SigningKey::from_bytes(&[3; 32]);
        let today = Day::today();
        let until = today.checked_add_days(90).unwrap();
        let serial = Serial::random();
        let body = new_body(
            "leipzig",
            serial,
            &key.verifying_key(),
            today,
            until,
            &[Scope::Medication],
            Some(50_000),
        );
        store
            .issue(&SignedVoucher::sign(&body, &key), today)
            .await
            .unwrap();
        serial
    }

    #[tokio::test]
    async fn a_restore_gives_back_every_tree_and_marks_the_store_as_recovering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        let first = voucher(&store).await;
        let file = dir.path().join("leipzig.backup");
        let header = store.backup("leipzig", &file).unwrap();
        assert_eq!((header.node.as_str(), header.ledger_seq), ("leipzig", 0));
        assert!(!file.with_extension("backup.partial").exists());
        let restored_dir = dir.path().join("restored");
        restore(&file, "leipzig", &restored_dir).unwrap();
        let restored = Store::open(&restored_dir).unwrap();
        assert!(restored.voucher(first).unwrap().is_some());
        assert!(restored.recovering().unwrap());
        assert!(!store.recovering().unwrap(), "the original is not restored");
        // Issue order continues after the backup's, so the newest voucher is listed first.
        let second = voucher(&restored).await;
        let (listed, _) = restored.list(None, 10, |_| true).unwrap();
        let listed: Vec<Serial> = listed.iter().map(|v| v.voucher.serial).collect();
        assert_eq!(listed, vec![second, first]);
    }

    #[tokio::test]
    async fn a_restore_refuses_a_damaged_file_another_nodes_file_and_a_used_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("data")).unwrap();
        voucher(&store).await;
        let file = dir.path().join("leipzig.backup");
        store.backup("leipzig", &file).unwrap();

        let target = dir.path().join("restored");
        let mut bytes = std::fs::read(&file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 1;
        let damaged = dir.path().join("damaged.backup");
        std::fs::write(&damaged, &bytes).unwrap();
        assert!(matches!(
            restore(&damaged, "leipzig", &target),
            Err(BackupError::Damaged(..))
        ));
        std::fs::write(&damaged, &bytes[..bytes.len() - 1]).unwrap();
        assert!(matches!(
            restore(&damaged, "leipzig", &target),
            Err(BackupError::Damaged(..))
        ));
        assert!(!target.exists(), "nothing written");

        assert!(matches!(
            restore(&file, "dresden", &target),
            Err(BackupError::OtherNode { .. })
        ));
        assert!(matches!(
            restore(&file, "leipzig", &dir.path().join("data")),
            Err(BackupError::NotEmpty(_))
        ));
        restore(&file, "leipzig", &target).unwrap();
    }
}
