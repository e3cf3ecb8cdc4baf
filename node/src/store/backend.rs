//! The store's boundary: the domain operations a node's storage offers, as a trait. [`Store`]
//! (sled) implements it; the conformance suite (`node/tests/store_conformance.rs`) states, as
//! tests generic over this trait, what any backend must do: every change atomic, repeated
//! changes idempotent, acknowledged changes surviving a killed process, the cap exact however
//! many settlements race. Another backend (an existing distributed database, when a node ever
//! outgrows one machine) would implement this trait and run the same suite.

use std::future::Future;

use schein_proto::period::Period;
use schein_proto::v1::{
    ClaimAmount, ClaimRecord, LedgerEntry, Receipt, RevocationReason, SettlementRecord,
};
use schein_proto::{Day, Serial, SignedVoucher};

use super::{
    Aggregate, CapApproval, ClaimKey, DueSettlement, LedgerHead, NewClaim, Side, Store, StoreError,
    StoredVoucher,
};
use crate::domain::settle::Ceilings;

/// Seals a receipt with the issuer's key.
pub type ReceiptSigner = std::sync::Arc<dyn Fn(&Receipt) -> Vec<u8> + Send + Sync>;

/// Says what the provider is told of a receipt.
pub type Describe = std::sync::Arc<dyn Fn(&Receipt) -> String + Send + Sync>;

/// The claim whose record a node settles as its own issuer, and what its provider is told.
#[derive(Clone)]
pub struct OwnClaim {
    pub key: ClaimKey,
    pub describe: Describe,
}

impl std::fmt::Debug for OwnClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnClaim").finish_non_exhaustive()
    }
}

/// The domain operations of a node's storage.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Records a newly signed voucher, issued on `issued_on`; [`StoreError::SerialTaken`] if its
    /// serial exists.
    fn issue(
        &self,
        signed: &SignedVoucher,
        issued_on: Day,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Revokes a voucher from `day` on.
    fn revoke(
        &self,
        serial: Serial,
        reason: RevocationReason,
        day: Day,
    ) -> impl Future<Output = Result<StoredVoucher, StoreError>> + Send;

    /// The voucher with `serial`, if this node issued it.
    fn voucher(&self, serial: Serial) -> Result<Option<StoredVoucher>, StoreError>;

    /// One office identity's approval of a higher cap (two identities above `threshold`).
    fn approve_cap(
        &self,
        serial: Serial,
        new_cap: i64,
        approver: &str,
        threshold: i64,
    ) -> impl Future<Output = Result<CapApproval, StoreError>> + Send;

    /// Decides on a settlement record as issuer, atomically with its ledger entry; the same
    /// record again gets the original receipt byte for byte.
    fn settle(
        &self,
        issuer: &str,
        record: &SettlementRecord,
        today: Day,
        ceilings: Ceilings,
        sign: ReceiptSigner,
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send;

    /// Decides on a claim on this node's own voucher and records the receipt with the claim, in
    /// one change; the same record again gets the original receipt and changes nothing.
    fn settle_own(
        &self,
        issuer: &str,
        record: &SettlementRecord,
        today: Day,
        ceilings: Ceilings,
        sign: ReceiptSigner,
        claim: OwnClaim,
    ) -> impl Future<Output = Result<(Vec<u8>, ClaimRecord), StoreError>> + Send;

    /// Stores a provider's claim with its outbox entry; the same claim again returns it.
    fn submit_claim(
        &self,
        claim: NewClaim,
    ) -> impl Future<Output = Result<(ClaimRecord, bool), StoreError>> + Send;

    /// Records the issuer's receipt for a claim, atomically with its ledger entry.
    fn finish_claim(
        &self,
        key: &ClaimKey,
        signed_receipt: &[u8],
        receipt: &Receipt,
        message: String,
    ) -> impl Future<Output = Result<ClaimRecord, StoreError>> + Send;

    /// The claim stored under `key`.
    fn claim(&self, key: &ClaimKey) -> Result<Option<ClaimRecord>, StoreError>;

    /// The last entry of the ledger.
    fn ledger_head(&self) -> Result<LedgerHead, StoreError>;

    /// Up to `limit` ledger entries from sequence number `from` on.
    fn ledger_entries(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError>;

    /// The report counter `name`, live.
    fn aggregate(&self, name: &str) -> Result<Aggregate, StoreError>;

    /// Outbox records due at `now_ms`, at most `limit`, without reading those due later.
    fn due_settlements(&self, now_ms: i64, limit: usize) -> Result<Vec<DueSettlement>, StoreError>;

    /// Puts a record's next delivery off to `next_attempt_ms`.
    fn retry_later(
        &self,
        settlement_id: &str,
        attempts: u32,
        next_attempt_ms: i64,
    ) -> Result<(), StoreError>;

    /// Ends a pending claim whose record the issuer refused for good: undeliverable, with
    /// `reason`, out of the outbox.
    fn refuse_delivery(
        &self,
        key: &ClaimKey,
        reason: &str,
    ) -> impl Future<Output = Result<ClaimRecord, StoreError>> + Send;

    /// How many claims ended undeliverable.
    fn undeliverable_count(&self) -> usize;

    /// Up to `limit` accepted claims of one side of the account with `peer` for `period`, in the
    /// order of claim ids, after `after`.
    fn account_page(
        &self,
        side: Side,
        peer: &str,
        period: Period,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ClaimAmount>, StoreError>;

    /// How many accepted claims one side of the account holds, and their sum.
    fn account_totals(
        &self,
        side: Side,
        peer: &str,
        period: Period,
    ) -> Result<(u64, i64), StoreError>;
}

impl Backend for Store {
    fn issue(
        &self,
        signed: &SignedVoucher,
        issued_on: Day,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        Store::issue(self, signed, issued_on)
    }

    fn revoke(
        &self,
        serial: Serial,
        reason: RevocationReason,
        day: Day,
    ) -> impl Future<Output = Result<StoredVoucher, StoreError>> + Send {
        Store::revoke(self, serial, reason, day)
    }

    fn voucher(&self, serial: Serial) -> Result<Option<StoredVoucher>, StoreError> {
        Store::voucher(self, serial)
    }

    fn approve_cap(
        &self,
        serial: Serial,
        new_cap: i64,
        approver: &str,
        threshold: i64,
    ) -> impl Future<Output = Result<CapApproval, StoreError>> + Send {
        Store::approve_cap(self, serial, new_cap, approver, threshold)
    }

    fn settle(
        &self,
        issuer: &str,
        record: &SettlementRecord,
        today: Day,
        ceilings: Ceilings,
        sign: ReceiptSigner,
    ) -> impl Future<Output = Result<Vec<u8>, StoreError>> + Send {
        Store::settle(self, issuer, record, today, ceilings, move |r| sign(r))
    }

    fn settle_own(
        &self,
        issuer: &str,
        record: &SettlementRecord,
        today: Day,
        ceilings: Ceilings,
        sign: ReceiptSigner,
        claim: OwnClaim,
    ) -> impl Future<Output = Result<(Vec<u8>, ClaimRecord), StoreError>> + Send {
        Store::settle_own(
            self,
            issuer,
            record,
            today,
            ceilings,
            move |r| sign(r),
            claim,
        )
    }

    fn submit_claim(
        &self,
        claim: NewClaim,
    ) -> impl Future<Output = Result<(ClaimRecord, bool), StoreError>> + Send {
        Store::submit_claim(self, claim)
    }

    fn finish_claim(
        &self,
        key: &ClaimKey,
        signed_receipt: &[u8],
        receipt: &Receipt,
        message: String,
    ) -> impl Future<Output = Result<ClaimRecord, StoreError>> + Send {
        Store::finish_claim(self, key, signed_receipt, receipt, message)
    }

    fn claim(&self, key: &ClaimKey) -> Result<Option<ClaimRecord>, StoreError> {
        Store::claim(self, key)
    }

    fn ledger_head(&self) -> Result<LedgerHead, StoreError> {
        Store::ledger_head(self)
    }

    fn ledger_entries(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        Store::ledger_entries(self, from, limit)
    }

    fn aggregate(&self, name: &str) -> Result<Aggregate, StoreError> {
        Store::aggregate(self, name)
    }

    fn due_settlements(&self, now_ms: i64, limit: usize) -> Result<Vec<DueSettlement>, StoreError> {
        Store::due_settlements(self, now_ms, limit)
    }

    fn retry_later(
        &self,
        settlement_id: &str,
        attempts: u32,
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        Store::retry_later(self, settlement_id, attempts, next_attempt_ms)
    }

    fn refuse_delivery(
        &self,
        key: &ClaimKey,
        reason: &str,
    ) -> impl Future<Output = Result<ClaimRecord, StoreError>> + Send {
        Store::refuse_delivery(self, key, reason)
    }

    fn undeliverable_count(&self) -> usize {
        Store::undeliverable_count(self)
    }

    fn account_page(
        &self,
        side: Side,
        peer: &str,
        period: Period,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ClaimAmount>, StoreError> {
        Store::account(self, side, peer, period, after)
            .take(limit)
            .collect()
    }

    fn account_totals(
        &self,
        side: Side,
        peer: &str,
        period: Period,
    ) -> Result<(u64, i64), StoreError> {
        Store::account_totals(self, side, peer, period)
    }
}
