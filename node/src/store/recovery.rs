//! Recovery after a restore, as far as the store is concerned: the `recovery` mark in `meta`
//! (while it is there the node settles nothing), the progress kept per peer, re-applying one
//! recovered receipt (the settlement it records, the voucher's spent sums, the report counters
//! and the ledger entry), and, at a peer, reading the receipts it holds from one issuer.

use prost::Message;
use schein_proto::v1::{
    Category, LedgerEvent, Outcome, Receipt, RejectReason, SettlementRecord, ledger_event,
};
use schein_proto::{Day, Serial};
use sha2::Digest;
use sled::transaction::ConflictableTransactionError;

use super::backup::BackupHeader;
use super::{StateRecord, Store, StoreError, aggregates, corrupt, ledger, writer};
use crate::domain::report::Measure;

const RECOVERY_KEY: &[u8] = b"recovery";
const RECOVERED_KEY: &[u8] = b"recovery-done";

/// Where a recovery stands: kept in `meta` under `recovery` while it runs, then under
/// `recovery-done` for `schein-node status`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RecoveryState {
    /// The ledger head of the backup the store was restored from.
    #[prost(uint64, tag = "1")]
    pub backup_seq: u64,
    #[prost(bytes = "vec", tag = "2")]
    pub backup_hash: Vec<u8>,
    /// When the backup was taken and restored, Unix seconds.
    #[prost(int64, tag = "3")]
    pub backup_at: i64,
    #[prost(int64, tag = "4")]
    pub restored_at: i64,
    #[prost(message, repeated, tag = "5")]
    pub peers: Vec<PeerRecovery>,
    /// Peers the operator gave up on (`--accept-missing`).
    #[prost(string, repeated, tag = "6")]
    pub accepted_missing: Vec<String>,
    /// Receipts re-applied at their original ledger position, moved to a new one, or known from
    /// the backup already.
    #[prost(uint64, tag = "7")]
    pub exact: u64,
    #[prost(uint64, tag = "8")]
    pub moved: u64,
    #[prost(uint64, tag = "9")]
    pub known: u64,
    /// When recovery finished, Unix seconds (0 while it runs).
    #[prost(int64, tag = "10")]
    pub finished_at: i64,
    /// Findings for the operator: a ledger entry that could not be rebuilt where it was, a peer
    /// that witnessed a head the rebuilt ledger does not hold.
    #[prost(string, repeated, tag = "11")]
    pub warnings: Vec<String>,
}

/// One peer's part in a recovery.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PeerRecovery {
    #[prost(string, tag = "1")]
    pub peer: String,
    /// All its receipts fetched.
    #[prost(bool, tag = "2")]
    pub done: bool,
    /// Receipts of this node it holds (all, including those the backup knew).
    #[prost(uint64, tag = "3")]
    pub receipts: u64,
    /// The last failure, until it answers.
    #[prost(string, tag = "4")]
    pub error: String,
    /// Attempts so far.
    #[prost(uint32, tag = "5")]
    pub attempts: u32,
}

/// A receipt of this node recovered from a peer, with the record it answers (both checked).
#[derive(Clone, Debug)]
pub struct Recovered {
    pub record: SettlementRecord,
    pub signed_receipt: Vec<u8>,
    pub receipt: Receipt,
}

/// A page of the signed records a peer sent to one issuer with that issuer's signed receipts,
/// and where the next page starts (none: this was the last).
#[derive(Clone, Debug, Default)]
pub struct HeldPage {
    pub held: Vec<(Vec<u8>, Vec<u8>)>,
    pub next: Option<Vec<u8>>,
}

/// Where a recovered receipt went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// The store held it already (it is in the backup).
    Known,
    /// Re-applied; its ledger entry is back at its original position, with its original hash.
    Exact,
    /// Re-applied; an entry the ledger cannot rebuild comes before it, so its entry is appended
    /// at a new position.
    Moved,
}

impl Store {
    /// Marks a freshly restored store as recovering from the backup `header`.
    pub(super) fn begin_recovery(&self, header: &BackupHeader) -> Result<(), StoreError> {
        let state = RecoveryState {
            backup_seq: header.ledger_seq,
            backup_hash: header.ledger_hash.clone(),
            backup_at: header.created_at,
            restored_at: crate::node::unix_now(),
            ..Default::default()
        };
        self.meta.insert(RECOVERY_KEY, state.encode_to_vec())?;
        self.meta.remove(RECOVERED_KEY)?;
        self.db.flush()?;
        Ok(())
    }

    /// The recovery under way, if the store was restored and has not recovered yet.
    pub fn recovery(&self) -> Result<Option<RecoveryState>, StoreError> {
        self.meta
            .get(RECOVERY_KEY)?
            .map(|bytes| {
                RecoveryState::decode(bytes.as_ref()).map_err(|_| corrupt("recovery state"))
            })
            .transpose()
    }

    /// The last recovery that finished, if any.
    pub fn last_recovery(&self) -> Result<Option<RecoveryState>, StoreError> {
        self.meta
            .get(RECOVERED_KEY)?
            .map(|bytes| {
                RecoveryState::decode(bytes.as_ref()).map_err(|_| corrupt("recovery state"))
            })
            .transpose()
    }

    /// Whether the node must not settle yet.
    pub fn recovering(&self) -> Result<bool, StoreError> {
        Ok(self.meta.contains_key(RECOVERY_KEY)?)
    }

    /// Keeps the progress of the recovery under way (durably: `status` reads it).
    pub async fn note_recovery(&self, state: &RecoveryState) -> Result<(), StoreError> {
        self.meta.insert(RECOVERY_KEY, state.encode_to_vec())?;
        self.commit().await
    }

    /// Ends the recovery: from now on the node settles again.
    pub async fn finish_recovery(&self, state: &RecoveryState) -> Result<(), StoreError> {
        self.meta
            .transaction(|meta| {
                meta.insert(RECOVERED_KEY, state.encode_to_vec())?;
                meta.remove(RECOVERY_KEY)?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(StoreError::from)?;
        self.commit().await
    }

    /// Re-applies one recovered receipt of this node as issuer `issuer`; the same receipt again
    /// changes nothing.
    pub async fn recover(
        &self,
        issuer: &str,
        recovered: Recovered,
    ) -> Result<Placement, StoreError> {
        match self
            .writer
            .apply(writer::Change::Recover {
                issuer: issuer.to_owned(),
                recovered: Box::new(recovered),
            })
            .await?
        {
            writer::Done::Recovered(placement) => Ok(placement),
            _ => Err(corrupt(
                "the writer answered a recovery with something else",
            )),
        }
    }

    /// At a peer: the settlement records it sent to `issuer` and `issuer`'s receipts for them,
    /// from the claim key after `after` on; at most `limit`, and where to continue if more may
    /// follow.
    pub fn receipts_for(
        &self,
        issuer: &str,
        after: &[u8],
        limit: usize,
    ) -> Result<HeldPage, StoreError> {
        super::claims::held_receipts(&self.claims, issuer, after, limit)
    }
}

fn abort<T>(error: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(error))
}

/// Re-applies a recovered receipt inside the writer's transaction: what [`super::settle`]'s
/// decision stored, taken from the receipt instead of decided again (the decision was made and
/// paid; the voucher's sums must count it whatever today's rules would say).
pub(super) fn recover_in(
    tx: &writer::Tx<'_>,
    issuer: &str,
    recovered: &Recovered,
) -> Result<Placement, ConflictableTransactionError<StoreError>> {
    let Recovered {
        record,
        signed_receipt,
        receipt,
    } = recovered;
    if receipt.issuer != issuer {
        return abort(corrupt("a recovered receipt of another issuer"));
    }
    let key = super::settle::settlement_key(&record.redeemer, &record.claim_id);
    if tx.settlements.get(&key)?.is_some() {
        return Ok(Placement::Known);
    }
    let serial = Serial::from_slice(&record.serial)
        .map_err(|_| ConflictableTransactionError::Abort(corrupt("a recovered serial")))?;
    let category = Category::try_from(receipt.category).unwrap_or(Category::Unspecified);
    let month = record.service_month;
    let decided_on = Day::first_of_month(receipt.decided_month).unwrap_or_else(Day::today);
    let mut voucher = match tx.state.get(serial.as_bytes())? {
        Some(bytes) => Some(
            StateRecord::decode(bytes.as_ref())
                .map_err(|_| ConflictableTransactionError::Abort(corrupt("voucher state")))?,
        ),
        None => None,
    };
    let emergency = match tx.issued.get(serial.as_bytes())? {
        Some(issued) => {
            let issued = super::IssuedRecord::decode(issued.as_ref())
                .map_err(|_| ConflictableTransactionError::Abort(corrupt("issued voucher")))?;
            schein_proto::SignedVoucher::from_bytes(&issued.signed_voucher)
                .ok()
                .and_then(|signed| signed.decode_own().ok())
                .is_some_and(|v| v.emergency)
        }
        None => false,
    };
    if receipt.outcome == Outcome::Accepted as i32 {
        if let Some(state) = &mut voucher {
            super::settle::book_accepted(
                tx.aggregates,
                state,
                emergency,
                category,
                record,
                decided_on,
            )?;
        }
    } else if receipt.reason != RejectReason::PeriodClosed as i32 {
        let reason = RejectReason::try_from(receipt.reason).unwrap_or(RejectReason::Unspecified);
        let mut counted = match &mut voucher {
            Some(state) => aggregates::Counted::InState(&mut state.counted_in),
            None => aggregates::Counted::Unknown(tx.aggregate_seen, &serial),
        };
        aggregates::count(
            tx.aggregates,
            &mut counted,
            Measure::Rejected(reason),
            month,
            0,
            decided_on,
        )?;
    }
    if let Some(state) = &voucher {
        tx.state.insert(serial.as_bytes(), state.encode_to_vec())?;
    }
    let head = ledger::head_in(tx.meta)?;
    let in_place = receipt.ledger_seq == head.seq + 1 && receipt.ledger_prev_hash == head.hash;
    let event = LedgerEvent {
        event: Some(ledger_event::Event::Receipt(signed_receipt.clone())),
    };
    ledger::append(tx.ledger, tx.meta, &event)?;
    let record_hash: [u8; 32] = sha2::Sha256::digest(record.encode_to_vec()).into();
    let mut value = record_hash.to_vec();
    value.extend_from_slice(signed_receipt);
    tx.settlements.insert(key.as_slice(), value)?;
    // As settling did: an accepted claim is owed to its redeemer in the clearing accounts.
    if receipt.outcome == Outcome::Accepted as i32 {
        super::clearing::index_in(
            tx.clearing_index,
            super::Side::Liabilities,
            &record.redeemer,
            receipt.service_month,
            &receipt.claim_id,
            receipt.amount_cents,
        )?;
    }
    Ok(if in_place {
        Placement::Exact
    } else {
        Placement::Moved
    })
}
