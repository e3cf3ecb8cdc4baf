//! The ledger: an append-only log of settlement events where each entry holds the hash of the
//! one before, so that no entry can be changed or dropped without breaking the chain. Entries are
//! appended inside the transaction of the event they record; the head (last sequence number and
//! hash) is signed on request.

use prost::Message;
use schein_proto::ledger::entry_hash;
use schein_proto::v1::{LedgerEntry, LedgerEvent};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{Store, StoreError, corrupt};

const HEAD_KEY: &[u8] = b"ledger_head";

#[derive(Clone, PartialEq, prost::Message)]
struct HeadRecord {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    hash: Vec<u8>,
}

/// The last entry of a ledger: its sequence number and hash (zeros for an empty ledger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerHead {
    pub seq: u64,
    pub hash: [u8; 32],
}

fn decode_head(bytes: Option<&[u8]>) -> Result<LedgerHead, StoreError> {
    let Some(bytes) = bytes else {
        return Ok(LedgerHead {
            seq: 0,
            hash: [0; 32],
        });
    };
    let head = HeadRecord::decode(bytes).map_err(|_| corrupt("ledger head"))?;
    Ok(LedgerHead {
        seq: head.seq,
        hash: head
            .hash
            .try_into()
            .map_err(|_| corrupt("ledger head hash"))?,
    })
}

/// The head as seen inside a transaction.
pub(super) fn head_in(
    meta: &TransactionalTree,
) -> Result<LedgerHead, ConflictableTransactionError<StoreError>> {
    decode_head(meta.get(HEAD_KEY)?.as_deref()).map_err(ConflictableTransactionError::Abort)
}

/// Appends `event` within a transaction over the `ledger` and `meta` trees; returns its
/// sequence number.
pub(super) fn append(
    ledger: &TransactionalTree,
    meta: &TransactionalTree,
    event: &LedgerEvent,
) -> Result<u64, ConflictableTransactionError<StoreError>> {
    let head = head_in(meta)?;
    let entry = LedgerEntry {
        seq: head.seq + 1,
        prev_hash: head.hash.to_vec(),
        event: event.encode_to_vec(),
        event_hash: Vec::new(),
    };
    ledger.insert(&entry.seq.to_be_bytes(), entry.encode_to_vec())?;
    let new_head = HeadRecord {
        seq: entry.seq,
        hash: entry_hash(&entry).to_vec(),
    };
    meta.insert(HEAD_KEY, new_head.encode_to_vec())?;
    Ok(entry.seq)
}

impl Store {
    pub fn ledger_head(&self) -> Result<LedgerHead, StoreError> {
        decode_head(self.meta.get(HEAD_KEY)?.as_deref())
    }

    /// Up to `limit` entries from sequence number `from` on.
    pub fn ledger_entries(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        self.ledger
            .range(from.to_be_bytes()..)
            .take(limit)
            .map(|entry| {
                let (_, bytes) = entry?;
                LedgerEntry::decode(bytes.as_ref()).map_err(|_| corrupt("ledger entry"))
            })
            .collect()
    }
}
