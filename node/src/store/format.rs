//! The store's format version and its migrations (DESIGN.md, "Storage"). A store records the
//! version of the layout it was written in (`format_version` in `meta`, written when the store
//! is created). A node refuses to open a store of a newer format (it would misread it) and one of
//! an older format (it would lack what this version keeps up to date, such as an index), until
//! `schein-node migrate` ([`migrate`]) has copied the store aside as a backup and brought it to
//! [`FORMAT_VERSION`] step by step. Every step only builds what can be derived from what is
//! there, so a migration interrupted half way, or run twice, ends in the same store.
//!
//! Stores written before versions were recorded have no `format_version` and count as format 1.

use std::path::{Path, PathBuf};

use super::{StoreError, corrupt};

/// The format this version writes and reads. 2: the outbox by next attempt, the clearing index
/// by pair and period, and claims whose record the issuer refused.
pub const FORMAT_VERSION: u32 = 2;

/// Where the format version is kept, in the `meta` tree.
const FORMAT_KEY: &[u8] = b"format_version";

/// How long opening waits for a lock that a database closed just before may still hold.
const LOCK_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Opens the sled database in `path`, telling a store in use by another process apart.
pub(super) fn open_db(path: &Path) -> Result<sled::Db, StoreError> {
    // sled lets go of its file lock only when its background thread has dropped a database
    // closed just before (in this process: a restore, a migration, a test): wait for that a
    // little before saying the store is in use.
    let started = std::time::Instant::now();
    loop {
        match try_open_db(path) {
            Err(StoreError::Locked(_)) if started.elapsed() < LOCK_RELEASE_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            opened => return opened,
        }
    }
}

fn try_open_db(path: &Path) -> Result<sled::Db, StoreError> {
    // No background flushing: durability comes from the explicit flush before each answer,
    // and tests that kill a node can only pass if that flush is there.
    sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .open()
        .map_err(|error| match error {
            sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
                StoreError::Locked(io.to_string())
            }
            other => StoreError::Sled(other),
        })
}

/// The format of the store in `db`: as recorded; 1 for a store written before formats were
/// recorded; `None` for a store created just now.
fn stored_version(db: &sled::Db) -> Result<Option<u32>, StoreError> {
    let meta = db.open_tree("meta")?;
    match meta.get(FORMAT_KEY)? {
        Some(bytes) => {
            let bytes: [u8; 4] = bytes
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("format version"))?;
            Ok(Some(u32::from_be_bytes(bytes)))
        }
        None if db.was_recovered() => Ok(Some(1)),
        None => Ok(None),
    }
}

fn record_version(db: &sled::Db, version: u32) -> Result<(), StoreError> {
    db.open_tree("meta")?
        .insert(FORMAT_KEY, &version.to_be_bytes()[..])?;
    db.flush()?;
    Ok(())
}

/// Lets a node use the store only if it is of this version's format; records the format of a
/// store created just now.
pub(super) fn check(db: &sled::Db) -> Result<(), StoreError> {
    match stored_version(db)? {
        None => record_version(db, FORMAT_VERSION),
        Some(FORMAT_VERSION) => Ok(()),
        Some(found) if found > FORMAT_VERSION => Err(StoreError::NewerFormat {
            found,
            supported: FORMAT_VERSION,
        }),
        Some(found) => Err(StoreError::NeedsMigration {
            found,
            current: FORMAT_VERSION,
        }),
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The format the store had.
    pub from: u32,
    /// The format it has now ([`FORMAT_VERSION`]).
    pub to: u32,
    /// The copy of the store as it was, if anything had to change.
    pub backup: Option<PathBuf>,
}

/// Brings the store in `path` to [`FORMAT_VERSION`]: refuses a store in use by a running node
/// or of a newer format; copies an older one to `backup` (default: beside it, named after its
/// format and the time) before the first change; then runs the steps from its format on. A store
/// of the current format is left as it is.
pub fn migrate(path: &Path, backup: Option<&Path>) -> Result<Migration, StoreError> {
    if !path.join("conf").exists() {
        return Err(StoreError::Corrupt(format!(
            "no store in {}",
            path.display()
        )));
    }
    let from = {
        // Opening it takes sled's lock: a running node holds it and makes this fail.
        let db = open_db(path)?;
        stored_version(&db)?.unwrap_or(FORMAT_VERSION)
    };
    if from > FORMAT_VERSION {
        return Err(StoreError::NewerFormat {
            found: from,
            supported: FORMAT_VERSION,
        });
    }
    if from == FORMAT_VERSION {
        return Ok(Migration {
            from,
            to: FORMAT_VERSION,
            backup: None,
        });
    }
    let backup = match backup {
        Some(backup) => backup.to_path_buf(),
        None => default_backup(path, from),
    };
    copy_dir(path, &backup)
        .map_err(|e| StoreError::Corrupt(format!("backup to {}: {e}", backup.display())))?;
    let db = open_db(path)?;
    let mut version = from;
    while version < FORMAT_VERSION {
        match version {
            1 => super::Store::build_indexes(&db)?,
            other => return Err(corrupt(&format!("no migration from format {other}"))),
        }
        version += 1;
        // Recorded after each step: a step interrupted before this runs again from its start.
        record_version(&db, version)?;
        tracing::info!(format = version, "store migrated");
    }
    Ok(Migration {
        from,
        to: FORMAT_VERSION,
        backup: Some(backup),
    })
}

fn default_backup(path: &Path, from: u32) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
    path.with_file_name(format!("{name}.backup-format{from}-{stamp}"))
}

/// Copies the store's directory; refuses to overwrite anything.
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if to.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            "the backup's place is taken; name another",
        ));
    }
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
