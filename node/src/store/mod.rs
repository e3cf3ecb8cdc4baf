//! The node's durable state in sled, reached only through domain methods (`issue`, `revoke`,
//! `settle`, `submit_claim`, …), so that services never touch trees and another backend could
//! stand behind the same methods.
//!
//! Trees of the issuer side: `issued` (serial → the signed voucher as issued), `voucher_state`
//! (serial → revocation, claimed sums, cap approvals), `issue_order` (sequence → serial, for
//! listing newest first), `settlements` (redeemer ‖ claim id → signed receipt). Of the redeemer
//! side: `claims` (provider ‖ claim id → claim), `claim_order`, `outbox` (settlement id → what
//! to send), `claim_items` (duplicate guard). Both: `ledger` (sequence → hash-chained entry) and
//! `meta` (ledger head, closed periods, clearing results, the recovery mark after a restore),
//! `aggregates` (report counters). [`backup`] writes and restores snapshots of all of them.
//!
//! Only the day of issue is kept, never the time of day: a time could be matched against an
//! appointment book. Every change that must survive is one transaction across the trees it
//! touches, flushed to disk before the method returns; changes that finish together share a flush.

mod aggregates;
mod backend;
pub mod backup;
mod claims;
mod clearing;
mod format;
mod group_commit;
mod ledger;
mod recovery;
mod settle;
mod witness;
mod writer;

pub use aggregates::Aggregate;
pub use backend::{Backend, Describe, OwnClaim, ReceiptSigner};

pub use crate::domain::settle::Ceilings;
pub use claims::{ClaimKey, DueSettlement, NewClaim, Outgoing};
pub use clearing::{PairClose, Side};
pub use format::{FORMAT_VERSION, Migration, migrate};
pub use ledger::LedgerHead;
pub use recovery::{HeldPage, PeerRecovery, Placement, Recovered, RecoveryState};
pub use settle::{CapApproval, SettleError};
pub use witness::{Contradiction, Witnessed};

use prost::Message;
use schein_proto::v1::RevocationReason;
use schein_proto::voucher::VerifiedVoucher;
use schein_proto::{Day, Serial, SignedVoucher};
use sled::transaction::{ConflictableTransactionError, TransactionError};

/// The signed voucher as the office issued it. Never changes.
#[derive(Clone, PartialEq, prost::Message)]
struct IssuedRecord {
    #[prost(bytes = "vec", tag = "1")]
    signed_voucher: Vec<u8>,
    /// Day of issue (days since 1970-01-01).
    #[prost(int32, tag = "2")]
    issued_on: i32,
    /// Position in the issue order.
    #[prost(uint64, tag = "3")]
    sequence: u64,
}

/// What changes about a voucher after issue.
#[derive(Clone, PartialEq, prost::Message)]
struct StateRecord {
    /// Written by earlier versions: the revocation time in seconds. Read as its day.
    #[prost(int64, optional, tag = "1")]
    revoked_at: Option<i64>,
    /// The day of the revocation (days since 1970-01-01): only the day, never the time.
    #[prost(int32, optional, tag = "9")]
    revoked_on: Option<i32>,
    #[prost(enumeration = "RevocationReason", tag = "2")]
    revocation_reason: i32,
    /// Settled treatment claims, euro cents.
    #[prost(int64, tag = "3")]
    claimed_cents: i64,
    /// Settled medication claims (outside the cap), euro cents.
    #[prost(int64, tag = "4")]
    medication_cents: i64,
    /// The cap as raised by an approval; replaces the voucher's own.
    #[prost(int64, optional, tag = "5")]
    cap_override: Option<i64>,
    /// A raise above the threshold, waiting for a second office identity.
    #[prost(int64, optional, tag = "6")]
    pending_cap: Option<i64>,
    #[prost(string, tag = "7")]
    pending_approver: String,
    /// The report cells this voucher was counted in, as name hashes ([`aggregates`]), so that
    /// each counts it once among its distinct vouchers.
    #[prost(fixed64, repeated, tag = "8")]
    counted_in: Vec<u64>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("no voucher with this serial was issued here")]
    UnknownVoucher,
    #[error("the voucher was revoked already")]
    AlreadyRevoked,
    #[error("the serial is taken")]
    SerialTaken,
    #[error(transparent)]
    Settle(#[from] SettleError),
    #[error("a second, different office identity must approve this cap")]
    NeedsSecondApproval,
    #[error("this claim id was used before for a different claim")]
    ClaimIdReused,
    #[error("no such claim")]
    UnknownClaim,
    #[error("the claim is not held")]
    NotHeld,
    #[error(
        "the store was written by a newer version of schein-node (store format {found}; this version reads up to {supported}); run the newer version, or restore a backup made before the upgrade"
    )]
    NewerFormat { found: u32, supported: u32 },
    #[error(
        "the store has format {found} and this version needs format {current}; stop the node and run `schein-node migrate` (it makes a backup first)"
    )]
    NeedsMigration { found: u32, current: u32 },
    #[error("the store is in use by another process (a running node?); stop it first: {0}")]
    Locked(String),
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(error: TransactionError<StoreError>) -> Self {
        match error {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// A voucher as its issuer keeps it.
#[derive(Clone, Debug)]
pub struct StoredVoucher {
    pub signed: SignedVoucher,
    pub voucher: VerifiedVoucher,
    pub issued_on: Day,
    pub revoked_on: Option<Day>,
    pub revocation_reason: RevocationReason,
    pub claimed_cents: i64,
    pub medication_cents: i64,
    /// The cap in force: the voucher's own, or as raised by an approval.
    pub cap_cents: Option<i64>,
    pub pending_cap_cents: Option<i64>,
}

impl StoredVoucher {
    /// Cap minus settled treatment claims; `None` if uncapped.
    pub fn remaining_cap_cents(&self) -> Option<i64> {
        self.cap_cents.map(|cap| cap - self.claimed_cents)
    }

    /// The issuer's medication ceiling minus settled medication; `None` if the voucher does not
    /// cover medication.
    pub fn remaining_medication_cents(&self, ceiling_cents: i64) -> Option<i64> {
        self.voucher
            .covers(schein_proto::v1::Scope::Medication)
            .then(|| (ceiling_cents - self.medication_cents).max(0))
    }
}

/// Position in the newest-first listing: an issue sequence number.
pub type ListCursor = u64;

/// Most index entries one listing call looks at, so a selective filter cannot make one request
/// read the whole store; the caller continues from the cursor it gets back.
pub(crate) const MAX_SCAN: usize = 10_000;

/// The trees of the store, in the order the writer's transactions see them ([`writer::Tx`]).
const TREES: [&str; 15] = [
    "issued",
    "voucher_state",
    "issue_order",
    "settlements",
    "claims",
    "claim_order",
    "outbox",
    "claim_items",
    "ledger",
    "meta",
    "aggregates",
    "aggregate_seen",
    "outbox_due",
    "clearing_index",
    "undeliverable",
];

/// The node's storage.
#[derive(Clone, Debug)]
pub struct Store {
    db: sled::Db,
    issued: sled::Tree,
    state: sled::Tree,
    order: sled::Tree,
    settlements: sled::Tree,
    claims: sled::Tree,
    claim_order: sled::Tree,
    outbox: sled::Tree,
    claim_items: sled::Tree,
    ledger: sled::Tree,
    meta: sled::Tree,
    aggregates: sled::Tree,
    /// The outbox by next attempt: next attempt (ms, big-endian) ‖ settlement id → nothing.
    outbox_due: sled::Tree,
    /// Accepted claims by pair and period, for clearing ([`clearing::Side`]).
    clearing_index: sled::Tree,
    /// Claims whose settlement record the issuer refused: claim key → settlement id.
    undeliverable: sled::Tree,
    /// Flushes shared by concurrent changes outside the writer.
    group: std::sync::Arc<group_commit::GroupCommit>,
    /// Applies the frequent changes (issue, settle, claim, receipt) in batches.
    writer: std::sync::Arc<writer::Writer>,
    /// How long each flush to disk took.
    flush_seconds: FlushSeconds,
    /// Held for reading by every change while its transaction runs, for writing by a backup's
    /// snapshot ([`backup`]), so that a snapshot sees each change whole or not at all.
    quiet: std::sync::Arc<std::sync::RwLock<()>>,
    /// Whether changes are flushed before a method returns. Always, except for bulk loads in
    /// benchmarks ([`Store::open_for_bulk_load`]).
    durable: bool,
}

/// A histogram of flush durations in seconds, shared by the store and the metrics that publish it.
pub type FlushSeconds = prometheus_client::metrics::histogram::Histogram;

/// An empty flush histogram: 0.5 ms to about 4 s (an fsync on a healthy disk takes a few ms).
fn flush_seconds() -> FlushSeconds {
    FlushSeconds::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 14,
    ))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

impl Store {
    /// Opens (or creates) the store in `path`.
    pub fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_with(path, true)
    }

    fn open_with(path: &std::path::Path, durable: bool) -> Result<Self, StoreError> {
        // No background flushing: durability comes from the explicit flush before each answer,
        // and tests that kill a node can only pass if that flush is there.
        let db = format::open_db(path)?;
        format::check(&db)?;
        let trees: Vec<sled::Tree> = TREES
            .iter()
            .map(|name| db.open_tree(name))
            .collect::<Result<_, _>>()?;
        let flush_seconds = flush_seconds();
        let quiet: std::sync::Arc<std::sync::RwLock<()>> = Default::default();
        let writer = writer::Writer::start(
            db.clone(),
            trees.clone(),
            durable,
            flush_seconds.clone(),
            quiet.clone(),
        )?;
        let [
            issued,
            state,
            order,
            settlements,
            claims,
            claim_order,
            outbox,
            claim_items,
            ledger,
            meta,
            aggregates,
            _aggregate_seen,
            outbox_due,
            clearing_index,
            undeliverable,
        ]: [sled::Tree; 15] = trees.try_into().map_err(|_| corrupt("the store's trees"))?;
        let store = Self {
            issued,
            state,
            order,
            settlements,
            claims,
            claim_order,
            outbox,
            claim_items,
            ledger,
            meta,
            aggregates,
            outbox_due,
            clearing_index,
            undeliverable,
            group: Default::default(),
            writer: std::sync::Arc::new(writer),
            flush_seconds,
            quiet,
            durable,
            db,
        };
        store.index_validity()?;
        Ok(store)
    }

    /// Records a newly signed voucher. Fails with [`StoreError::SerialTaken`] if the serial
    /// exists (the caller draws another).
    pub async fn issue(&self, signed: &SignedVoucher, issued_on: Day) -> Result<(), StoreError> {
        let voucher = signed
            .decode_own()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let sequence = self.db.generate_id()?;
        let issued = IssuedRecord {
            signed_voucher: signed.to_bytes(),
            issued_on: issued_on.days_since_epoch(),
            sequence,
        }
        .encode_to_vec();
        let month = issued_on
            .month()
            .ok_or_else(|| corrupt("issue day out of range"))?;
        self.writer
            .apply(writer::Change::Issue {
                serial: voucher.serial,
                issued,
                sequence,
                month,
                valid_from: voucher.valid_from,
                valid_until: voucher.valid_until,
                today: issued_on,
            })
            .await
            .map(drop)
    }

    /// Marks a voucher revoked on `day`.
    pub async fn revoke(
        &self,
        serial: Serial,
        reason: RevocationReason,
        day: Day,
    ) -> Result<StoredVoucher, StoreError> {
        let quiet = self.change();
        self.state.transaction(|state_tree| {
            let bytes =
                state_tree
                    .get(serial.as_bytes())?
                    .ok_or(ConflictableTransactionError::Abort(
                        StoreError::UnknownVoucher,
                    ))?;
            let mut state = StateRecord::decode(bytes.as_ref()).map_err(|_| {
                ConflictableTransactionError::Abort(corrupt("voucher state record"))
            })?;
            if state.revoked_at.is_some() || state.revoked_on.is_some() {
                return Err(ConflictableTransactionError::Abort(
                    StoreError::AlreadyRevoked,
                ));
            }
            state.revoked_on = Some(day.days_since_epoch());
            state.revocation_reason = reason as i32;
            state_tree.insert(serial.as_bytes(), state.encode_to_vec())?;
            Ok(())
        })?;
        drop(quiet);
        self.commit().await?;
        self.voucher(serial)?.ok_or(StoreError::UnknownVoucher)
    }

    /// The voucher with `serial`, if this node issued it.
    pub fn voucher(&self, serial: Serial) -> Result<Option<StoredVoucher>, StoreError> {
        let Some(issued) = self.issued.get(serial.as_bytes())? else {
            return Ok(None);
        };
        let state = self
            .state
            .get(serial.as_bytes())?
            .ok_or_else(|| corrupt("voucher without state"))?;
        Self::assemble(&issued, &state).map(Some)
    }

    fn assemble(issued: &[u8], state: &[u8]) -> Result<StoredVoucher, StoreError> {
        let issued = IssuedRecord::decode(issued).map_err(|_| corrupt("issued voucher record"))?;
        let state = StateRecord::decode(state).map_err(|_| corrupt("voucher state record"))?;
        let signed = SignedVoucher::from_bytes(&issued.signed_voucher)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let voucher = signed
            .decode_own()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let cap_cents = state.cap_override.or(voucher.cap_cents);
        Ok(StoredVoucher {
            signed,
            voucher,
            issued_on: Day::from_days_since_epoch(issued.issued_on),
            revoked_on: state
                .revoked_on
                .or_else(|| {
                    state
                        .revoked_at
                        .map(|seconds| i32::try_from(seconds.div_euclid(86_400)).unwrap_or(0))
                })
                .map(Day::from_days_since_epoch),
            revocation_reason: RevocationReason::try_from(state.revocation_reason)
                .unwrap_or(RevocationReason::Unspecified),
            claimed_cents: state.claimed_cents,
            medication_cents: state.medication_cents,
            cap_cents,
            pending_cap_cents: state.pending_cap,
        })
    }

    /// Up to `limit` vouchers accepted by `keep`, newest first, starting after `after`. Also
    /// returns where the next page starts, if anything may be left.
    pub fn list(
        &self,
        after: Option<ListCursor>,
        limit: usize,
        keep: impl Fn(&StoredVoucher) -> bool,
    ) -> Result<(Vec<StoredVoucher>, Option<ListCursor>), StoreError> {
        let range = match after {
            Some(cursor) => self.order.range(..cursor.to_be_bytes()),
            None => self.order.iter(),
        };
        let mut page = Vec::new();
        for (scanned, entry) in range.rev().enumerate() {
            let (key, serial) = entry?;
            let sequence = u64::from_be_bytes(
                key.as_ref()
                    .try_into()
                    .map_err(|_| corrupt("issue order key"))?,
            );
            if page.len() == limit || scanned == MAX_SCAN {
                // Resume at this entry: the cursor is exclusive.
                return Ok((page, Some(sequence.saturating_add(1))));
            }
            let serial = Serial::from_slice(&serial).map_err(|_| corrupt("issue order"))?;
            let voucher = self
                .voucher(serial)?
                .ok_or_else(|| corrupt("issue order"))?;
            if keep(&voucher) {
                page.push(voucher);
            }
        }
        Ok((page, None))
    }

    /// A store that does not flush after each change: only for filling a store in bulk (the
    /// report benchmark), never for a node. [`Store::flush`] writes everything at the end.
    pub fn open_for_bulk_load(path: &std::path::Path) -> Result<Self, StoreError> {
        Self::open_with(path, false)
    }

    /// Marks a change under way, for as long as the guard lives (see [`backup`]).
    fn change(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.quiet
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes the changes so far durable before a method answers; concurrent callers share
    /// flushes ([`group_commit`]).
    async fn commit(&self) -> Result<(), StoreError> {
        if self.durable {
            self.group.commit(&self.db, &self.flush_seconds).await?;
        }
        Ok(())
    }

    /// The durations of the store's flushes to disk, as the metrics publish them.
    pub fn flush_seconds(&self) -> FlushSeconds {
        self.flush_seconds.clone()
    }

    /// Bytes the store takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db.size_on_disk()?)
    }

    /// Why the store cannot take changes now, if it cannot: its writer thread ended, or the
    /// database does not answer a read.
    pub fn unready(&self) -> Option<&'static str> {
        if !self.writer.alive() {
            return Some("the store's writer thread has stopped");
        }
        if self.meta.get(b"").is_err() {
            return Some("the store does not answer reads");
        }
        None
    }

    /// Writes everything to disk; called on shutdown.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

/// Stores a newly signed voucher inside the writer's transaction, with its state, its place in
/// the issue order, its validity for the clearing deadline and its report counter.
fn issue_in(
    tx: &writer::Tx<'_>,
    serial: Serial,
    issued: &[u8],
    sequence: u64,
    month: i32,
    (valid_from, valid_until): (Day, Day),
    today: Day,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    if tx.issued.get(serial.as_bytes())?.is_some() {
        return Err(ConflictableTransactionError::Abort(StoreError::SerialTaken));
    }
    clearing::note_validity(tx.meta, valid_from, valid_until)?;
    let mut state = StateRecord::default();
    let mut counted = aggregates::Counted::InState(&mut state.counted_in);
    aggregates::count(
        tx.aggregates,
        &mut counted,
        crate::domain::report::Measure::Issued,
        month,
        0,
        today,
    )?;
    tx.issued.insert(serial.as_bytes(), issued)?;
    tx.state.insert(serial.as_bytes(), state.encode_to_vec())?;
    tx.order
        .insert(&sequence.to_be_bytes(), serial.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use schein_proto::Day;
    use schein_proto::voucher::new_body;

    use super::*;

    fn signed(key: &SigningKey) -> SignedVoucher {
        let from = Day::from_days_since_epoch(20_000);
        let body = new_body(
            "leipzig",
            Serial::random(),
            &key.verifying_key(),
            from,
            from.checked_add_days(90).unwrap(),
            &[],
            Some(50_000),
        );
        SignedVoucher::sign(&body, key)
    }

    #[tokio::test]
    async fn issue_revoke_and_list_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let vouchers: Vec<SignedVoucher> = (0..5).map(|_| signed(&key)).collect();
        {
            let store = Store::open(dir.path()).unwrap();
            for (i, v) in vouchers.iter().enumerate() {
                store
                    .issue(v, Day::from_days_since_epoch(1_000 + i as i32))
                    .await
                    .unwrap();
            }
            assert!(matches!(
                store
                    .issue(&vouchers[0], Day::from_days_since_epoch(2_000))
                    .await,
                Err(StoreError::SerialTaken)
            ));
            let serial = vouchers[1].decode_own().unwrap().serial;
            store
                .revoke(
                    serial,
                    RevocationReason::Lost,
                    Day::from_days_since_epoch(5_000),
                )
                .await
                .unwrap();
            assert!(matches!(
                store
                    .revoke(
                        serial,
                        RevocationReason::Lost,
                        Day::from_days_since_epoch(5_001)
                    )
                    .await,
                Err(StoreError::AlreadyRevoked)
            ));
            assert!(matches!(
                store
                    .revoke(
                        Serial::random(),
                        RevocationReason::Lost,
                        Day::from_days_since_epoch(5_001)
                    )
                    .await,
                Err(StoreError::UnknownVoucher)
            ));
        }
        let store = Store::open(dir.path()).unwrap();
        let serial = vouchers[1].decode_own().unwrap().serial;
        let revoked = store.voucher(serial).unwrap().unwrap();
        assert_eq!(revoked.revoked_on, Some(Day::from_days_since_epoch(5_000)));
        assert_eq!(revoked.revocation_reason, RevocationReason::Lost);

        let days = |page: &[StoredVoucher]| -> Vec<i32> {
            page.iter()
                .map(|v| v.issued_on.days_since_epoch())
                .collect()
        };
        let (first, next) = store.list(None, 2, |_| true).unwrap();
        assert_eq!(days(&first), [1_004, 1_003]);
        let (second, next) = store.list(next, 2, |_| true).unwrap();
        assert_eq!(days(&second), [1_002, 1_001]);
        let (third, next) = store.list(next, 2, |_| true).unwrap();
        assert_eq!(days(&third), [1_000]);
        assert!(next.is_none());
        let (only_revoked, _) = store.list(None, 10, |v| v.revoked_on.is_some()).unwrap();
        assert_eq!(only_revoked.len(), 1);
    }

    /// A voucher is counted once per cell however many of its claims fall into it; a serial
    /// this node never issued too (its marks live in their own tree, not in a state record).
    #[tokio::test]
    async fn distinct_vouchers_are_counted_once_per_cell() {
        use crate::domain::report::Measure;
        use schein_proto::period::Period;
        use schein_proto::v1::{Category, Receipt, SettlementRecord};
        use sha2::Digest;

        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let voucher = signed(&key);
        let from = voucher.decode_own().unwrap().valid_from;
        store.issue(&voucher, from).await.unwrap();
        let month = from.month().unwrap();
        let record = |claim: &str, serial: Serial| SettlementRecord {
            claim_id: claim.into(),
            serial: serial.as_bytes().to_vec(),
            issuer: "leipzig".into(),
            amount_cents: 100,
            category: Category::Treatment as i32,
            service_month: month,
            redeemer: "dresden".into(),
            voucher_hash: sha2::Sha256::digest(voucher.to_bytes()).to_vec(),
            ..Default::default()
        };
        let known = voucher.decode_own().unwrap().serial;
        let unknown = Serial::random();
        for (claim, serial) in [("a", known), ("b", known), ("c", unknown), ("d", unknown)] {
            store
                .settle(
                    "leipzig",
                    &record(claim, serial),
                    from,
                    Ceilings {
                        medication_per_voucher_cents: 50_000,
                        per_claim_cents: 250_000,
                    },
                    |r: &Receipt| r.encode_to_vec(),
                )
                .await
                .unwrap();
        }
        for period in Period::containing(month) {
            let settled = store.aggregate(&Measure::Settled.cell(period)).unwrap();
            assert_eq!(
                (settled.count, settled.vouchers, settled.amount_cents),
                (2, 1, 200)
            );
            let rejected = store
                .aggregate(
                    &Measure::Rejected(schein_proto::v1::RejectReason::UnknownVoucher).cell(period),
                )
                .unwrap();
            assert_eq!((rejected.count, rejected.vouchers), (2, 1), "{period}");
            let issued = store.aggregate(&Measure::Issued.cell(period)).unwrap();
            assert_eq!((issued.count, issued.vouchers), (1, 1));
        }
    }
}
