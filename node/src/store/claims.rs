//! The redeeming node's side: claims of its providers, the outbox of settlement records still
//! to deliver, and the duplicate guard. A claim is stored with its outbox entry in one
//! transaction before the provider gets an answer; it leaves the outbox in the same transaction
//! that stores the issuer's receipt. At-least-once delivery plus the issuer's idempotent settle
//! gives an exactly-once effect.

use prost::Message;
use schein_proto::v1::{
    ClaimRecord, ClaimState, LedgerEvent, Outcome, Receipt, RejectReason, SettlementRecord,
    ledger_event,
};
use sled::transaction::{ConflictableTransactionError, Transactional};

use super::{Store, StoreError, corrupt, ledger, writer};

/// Where a claim is kept: provider ‖ 0 ‖ the provider's claim id. Claim ids are the
/// provider's own, so two providers may use the same one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimKey(Vec<u8>);

impl ClaimKey {
    pub fn new(provider: &str, claim_id: &str) -> Self {
        let mut key = provider.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(claim_id.as_bytes());
        Self(key)
    }
}

/// A claim as the redeeming node stores it.
#[derive(Clone, PartialEq, prost::Message)]
struct ClaimEntry {
    #[prost(message, optional, tag = "1")]
    record: Option<ClaimRecord>,
    #[prost(string, tag = "2")]
    settlement_id: String,
    /// The settlement record signed by this node, as it is (re)sent to the issuer. Empty until
    /// it is signed: when the issuer could not be asked about revocation as the claim came in,
    /// the record is signed at its first delivery, after the issuer answered.
    #[prost(bytes = "vec", tag = "3")]
    signed_record: Vec<u8>,
    /// Hash of the request, to tell a retry from a reuse of the claim id.
    #[prost(bytes = "vec", tag = "4")]
    fingerprint: Vec<u8>,
    #[prost(uint64, tag = "5")]
    sequence: u64,
    /// The duplicate-guard keys this claim holds; given up if the claim is rejected, so that
    /// the same service can be billed again (after a cap approval, say).
    #[prost(bytes = "vec", repeated, tag = "6")]
    duplicate_keys: Vec<Vec<u8>>,
    /// The record still to be signed (see `signed_record`).
    #[prost(message, optional, tag = "7")]
    unsigned_record: Option<SettlementRecord>,
}

/// A settlement record waiting for delivery.
#[derive(Clone, PartialEq, prost::Message)]
struct OutboxEntry {
    #[prost(bytes = "vec", tag = "1")]
    claim_key: Vec<u8>,
    #[prost(string, tag = "2")]
    issuer: String,
    #[prost(uint32, tag = "3")]
    attempts: u32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "4")]
    next_attempt_ms: i64,
    /// When the record entered the outbox, milliseconds since the Unix epoch (0 in entries
    /// written before this was kept): the age of the oldest pending claim in the metrics.
    #[prost(int64, tag = "5")]
    queued_ms: i64,
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(i64::MAX)
}

/// A claim to store.
#[derive(Clone, Debug)]
pub struct NewClaim {
    pub key: ClaimKey,
    /// Its state is set by the store: pending, or held as a possible duplicate.
    pub record: ClaimRecord,
    pub settlement_id: String,
    pub settlement: Outgoing,
    pub fingerprint: Vec<u8>,
    /// One key per item for the duplicate guard (voucher, provider, date, fee code).
    pub duplicate_keys: Vec<Vec<u8>>,
}

/// A settlement record on its way to the issuer.
#[derive(Clone, Debug)]
pub enum Outgoing {
    /// Signed: sent as these bytes, on every attempt.
    Signed(Vec<u8>),
    /// To be signed at the first delivery, once the issuer said whether the voucher was revoked
    /// before the service (`served_before_revocation`).
    Unsigned(SettlementRecord),
}

/// A settlement record due for (re)delivery.
#[derive(Clone, Debug)]
pub struct DueSettlement {
    pub key: ClaimKey,
    pub settlement_id: String,
    pub issuer: String,
    pub settlement: Outgoing,
    pub attempts: u32,
}

fn outgoing_of(entry: &ClaimEntry) -> Result<Outgoing, StoreError> {
    if !entry.signed_record.is_empty() {
        return Ok(Outgoing::Signed(entry.signed_record.clone()));
    }
    entry
        .unsigned_record
        .clone()
        .map(Outgoing::Unsigned)
        .ok_or_else(|| corrupt("claim without settlement record"))
}

fn abort<T>(error: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(error))
}

/// Gives up the duplicate-guard keys that `key` holds.
fn release_duplicate_keys(
    items: &sled::transaction::TransactionalTree,
    key: &ClaimKey,
    duplicate_keys: &[Vec<u8>],
) -> Result<(), ConflictableTransactionError<StoreError>> {
    for item in duplicate_keys {
        if items.get(item.as_slice())?.as_deref() == Some(key.0.as_slice()) {
            items.remove(item.as_slice())?;
        }
    }
    Ok(())
}

/// Every claim with its settlement id, one at a time: for building the clearing index.
pub(super) fn claim_entries(
    claims: &sled::Tree,
) -> impl Iterator<Item = Result<(ClaimRecord, String), StoreError>> {
    claims.iter().map(|entry| {
        let (_, bytes) = entry?;
        let entry = decode_entry(&bytes)?;
        let settlement_id = entry.settlement_id.clone();
        Ok((record_of(entry)?, settlement_id))
    })
}

/// The key of an outbox entry in the order of next attempts.
fn due_key(next_attempt_ms: i64, settlement_id: &str) -> Vec<u8> {
    let mut key = u64::try_from(next_attempt_ms.max(0))
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    key.extend_from_slice(settlement_id.as_bytes());
    key
}

/// Puts a settlement record into the outbox, due at `next_attempt_ms`.
fn enqueue(
    outbox: &sled::transaction::TransactionalTree,
    due: &sled::transaction::TransactionalTree,
    settlement_id: &str,
    entry: &OutboxEntry,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    outbox.insert(settlement_id.as_bytes(), entry.encode_to_vec())?;
    due.insert(due_key(entry.next_attempt_ms, settlement_id), &[][..])?;
    Ok(())
}

/// Takes a settlement record out of the outbox; returns its entry if it was there.
fn dequeue(
    outbox: &sled::transaction::TransactionalTree,
    due: &sled::transaction::TransactionalTree,
    settlement_id: &str,
) -> Result<Option<OutboxEntry>, ConflictableTransactionError<StoreError>> {
    let Some(bytes) = outbox.remove(settlement_id.as_bytes())? else {
        return Ok(None);
    };
    let entry = OutboxEntry::decode(bytes.as_ref())
        .map_err(|_| ConflictableTransactionError::Abort(corrupt("outbox entry")))?;
    due.remove(due_key(entry.next_attempt_ms, settlement_id))?;
    Ok(Some(entry))
}

/// Orders the outbox by next attempt (the migration to format 2): one entry per outbox entry,
/// the same however often it runs.
pub(super) fn build_due_index(db: &sled::Db) -> Result<(), StoreError> {
    let outbox = db.open_tree("outbox")?;
    let due = db.open_tree("outbox_due")?;
    for entry in outbox.iter() {
        let (id, bytes) = entry?;
        let entry = OutboxEntry::decode(bytes.as_ref()).map_err(|_| corrupt("outbox entry"))?;
        let id = std::str::from_utf8(&id).map_err(|_| corrupt("outbox key"))?;
        due.insert(due_key(entry.next_attempt_ms, id), &[][..])?;
    }
    Ok(())
}

/// The signed records sent to `issuer` with its receipts, in claim-key order after `after`:
/// at most `limit`, looking at no more than [`super::MAX_SCAN`] claims per call; where to go on
/// if more may follow.
pub(super) fn held_receipts(
    claims: &sled::Tree,
    issuer: &str,
    after: &[u8],
    limit: usize,
) -> Result<super::recovery::HeldPage, StoreError> {
    use std::ops::Bound;
    let mut held = Vec::new();
    let range = claims.range::<&[u8], _>((
        if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(after)
        },
        Bound::Unbounded,
    ));
    let mut last: Option<sled::IVec> = None;
    for (scanned, entry) in range.enumerate() {
        let (key, bytes) = entry?;
        if held.len() == limit || scanned == super::MAX_SCAN {
            // The cursor is exclusive: go on after the last entry looked at.
            return Ok(super::recovery::HeldPage {
                held,
                next: last.map(|k| k.to_vec()),
            });
        }
        let entry = decode_entry(&bytes)?;
        last = Some(key);
        let Some(record) = &entry.record else {
            continue;
        };
        if record.issuer == issuer && !record.receipt.is_empty() && !entry.signed_record.is_empty()
        {
            held.push((entry.signed_record.clone(), record.receipt.clone()));
        }
    }
    Ok(super::recovery::HeldPage { held, next: None })
}

fn decode_entry(bytes: &[u8]) -> Result<ClaimEntry, StoreError> {
    ClaimEntry::decode(bytes).map_err(|_| corrupt("claim record"))
}

fn record_of(entry: ClaimEntry) -> Result<ClaimRecord, StoreError> {
    entry.record.ok_or_else(|| corrupt("claim without record"))
}

/// Stores a claim inside the writer's transaction (see [`Store::submit_claim`]).
pub(super) fn submit_in(
    tx: &writer::Tx<'_>,
    claim: &NewClaim,
    sequence: u64,
) -> Result<(ClaimRecord, bool), ConflictableTransactionError<StoreError>> {
    if let Some(existing) = tx.claims.get(&claim.key.0)? {
        let existing = decode_entry(&existing).map_err(ConflictableTransactionError::Abort)?;
        if existing.fingerprint != claim.fingerprint {
            return abort(StoreError::ClaimIdReused);
        }
        return Ok((
            record_of(existing).map_err(ConflictableTransactionError::Abort)?,
            false,
        ));
    }
    let mut duplicate = false;
    for key in &claim.duplicate_keys {
        match tx.claim_items.get(key.as_slice())? {
            Some(other) if other.as_ref() != claim.key.0.as_slice() => duplicate = true,
            _ => {}
        }
    }
    let mut record = claim.record.clone();
    if duplicate {
        record.state = ClaimState::Held as i32;
        record.message = "Held: the same service on the same voucher was claimed before under another claim id. The clearing office will confirm or reject it.".into();
    } else {
        record.state = ClaimState::Pending as i32;
        record.message = "Stored; waiting for the issuing office's receipt.".into();
        let entry = OutboxEntry {
            claim_key: claim.key.0.clone(),
            issuer: record.issuer.clone(),
            attempts: 0,
            next_attempt_ms: 0,
            queued_ms: now_ms(),
        };
        enqueue(tx.outbox, tx.outbox_due, &claim.settlement_id, &entry)?;
    }
    for key in &claim.duplicate_keys {
        if tx.claim_items.get(key.as_slice())?.is_none() {
            tx.claim_items
                .insert(key.as_slice(), claim.key.0.as_slice())?;
        }
    }
    let (signed_record, unsigned_record) = match &claim.settlement {
        Outgoing::Signed(bytes) => (bytes.clone(), None),
        Outgoing::Unsigned(record) => (Vec::new(), Some(record.clone())),
    };
    let entry = ClaimEntry {
        record: Some(record.clone()),
        settlement_id: claim.settlement_id.clone(),
        signed_record,
        fingerprint: claim.fingerprint.clone(),
        sequence,
        duplicate_keys: claim.duplicate_keys.clone(),
        unsigned_record,
    };
    tx.claims
        .insert(claim.key.0.as_slice(), entry.encode_to_vec())?;
    tx.claim_order
        .insert(&sequence.to_be_bytes(), claim.key.0.as_slice())?;
    Ok((record, true))
}

/// Records a receipt inside the writer's transaction (see [`Store::finish_claim`]).
pub(super) fn finish_in(
    tx: &writer::Tx<'_>,
    key: &ClaimKey,
    signed_receipt: &[u8],
    receipt: &Receipt,
    message: &str,
) -> Result<ClaimRecord, ConflictableTransactionError<StoreError>> {
    let bytes = tx
        .claims
        .get(&key.0)?
        .ok_or(ConflictableTransactionError::Abort(
            StoreError::UnknownClaim,
        ))?;
    let mut entry = decode_entry(&bytes).map_err(ConflictableTransactionError::Abort)?;
    let mut record = entry
        .record
        .clone()
        .ok_or(ConflictableTransactionError::Abort(corrupt(
            "claim without record",
        )))?;
    if record.state != ClaimState::Pending as i32 {
        return Ok(record);
    }
    let accepted = receipt.outcome == Outcome::Accepted as i32;
    record.state = if accepted {
        ClaimState::Settled
    } else {
        ClaimState::Rejected
    } as i32;
    record.reason = receipt.reason;
    record.message = message.to_owned();
    record.remaining_cap_cents = receipt.remaining_cap_cents;
    record.receipt = signed_receipt.to_vec();
    record.issuer_ledger_seq = receipt.ledger_seq;
    if accepted {
        super::clearing::index_in(
            tx.clearing_index,
            super::Side::Receivables,
            &record.issuer,
            receipt.service_month,
            &entry.settlement_id,
            record.amount_cents,
        )?;
    } else {
        release_duplicate_keys(tx.claim_items, key, &entry.duplicate_keys)?;
    }
    entry.record = Some(record.clone());
    tx.claims.insert(key.0.as_slice(), entry.encode_to_vec())?;
    dequeue(tx.outbox, tx.outbox_due, &entry.settlement_id)?;
    let event = LedgerEvent {
        event: Some(ledger_event::Event::ReceivedReceipt(
            signed_receipt.to_vec(),
        )),
    };
    ledger::append(tx.ledger, tx.meta, &event)?;
    Ok(record)
}

impl Store {
    /// Stores a new claim with its outbox entry (or holds it as a possible duplicate), durably,
    /// through the store's writer. A claim id seen before returns the stored claim if the
    /// request is the same, and [`StoreError::ClaimIdReused`] if it differs. Returns the claim
    /// and whether it is new.
    pub async fn submit_claim(&self, claim: NewClaim) -> Result<(ClaimRecord, bool), StoreError> {
        let sequence = self.db.generate_id()?;
        match self
            .writer
            .apply(writer::Change::Submit {
                claim: Box::new(claim),
                sequence,
            })
            .await?
        {
            writer::Done::Submitted(record, created) => Ok((record, created)),
            _ => Err(corrupt("the writer answered a claim with something else")),
        }
    }

    /// Records the issuer's receipt for a claim, durably: final state, out of the outbox, into
    /// the ledger. A claim that is final already is left as it is (the receipt came twice).
    pub async fn finish_claim(
        &self,
        key: &ClaimKey,
        signed_receipt: &[u8],
        receipt: &Receipt,
        message: String,
    ) -> Result<ClaimRecord, StoreError> {
        let change = writer::Change::Finish {
            key: key.clone(),
            signed_receipt: signed_receipt.to_vec(),
            receipt: receipt.clone(),
            message,
        };
        match self.writer.apply(change).await? {
            writer::Done::Finished(record) => Ok(record),
            _ => Err(corrupt("the writer answered a receipt with something else")),
        }
    }

    /// The claim stored under `key`.
    pub fn claim(&self, key: &ClaimKey) -> Result<Option<ClaimRecord>, StoreError> {
        self.claims
            .get(&key.0)?
            .map(|bytes| decode_entry(&bytes).and_then(record_of))
            .transpose()
    }

    /// The settlement id and record of the claim under `key`.
    pub fn settlement_of(&self, key: &ClaimKey) -> Result<(String, Outgoing), StoreError> {
        let bytes = self.claims.get(&key.0)?.ok_or(StoreError::UnknownClaim)?;
        let entry = decode_entry(&bytes)?;
        let outgoing = outgoing_of(&entry)?;
        Ok((entry.settlement_id, outgoing))
    }

    /// Stores the signed form of a claim's record, durably, before it is first sent; returns
    /// the signed record in force (one signed earlier stays: every attempt sends the same bytes).
    pub async fn sign_settlement(
        &self,
        key: &ClaimKey,
        signed_record: Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        let stored = self.claims.transaction(|claims| {
            let bytes = claims
                .get(&key.0)?
                .ok_or(ConflictableTransactionError::Abort(
                    StoreError::UnknownClaim,
                ))?;
            let mut entry = decode_entry(&bytes).map_err(ConflictableTransactionError::Abort)?;
            if !entry.signed_record.is_empty() {
                return Ok(entry.signed_record);
            }
            entry.signed_record = signed_record.clone();
            entry.unsigned_record = None;
            claims.insert(key.0.as_slice(), entry.encode_to_vec())?;
            Ok(signed_record.clone())
        })?;
        self.commit().await?;
        Ok(stored)
    }

    /// Claims accepted by `keep`, newest first, from before `after`; and where to go on.
    pub fn list_claims(
        &self,
        after: Option<u64>,
        limit: usize,
        keep: impl Fn(&ClaimRecord) -> bool,
    ) -> Result<(Vec<ClaimRecord>, Option<u64>), StoreError> {
        let range = match after {
            Some(cursor) => self.claim_order.range(..cursor.to_be_bytes()),
            None => self.claim_order.iter(),
        };
        let mut page = Vec::new();
        for (scanned, entry) in range.rev().enumerate() {
            let (seq, key) = entry?;
            let seq = u64::from_be_bytes(
                seq.as_ref()
                    .try_into()
                    .map_err(|_| corrupt("claim order"))?,
            );
            if page.len() == limit || scanned == super::MAX_SCAN {
                return Ok((page, Some(seq.saturating_add(1))));
            }
            let record = self
                .claim(&ClaimKey(key.to_vec()))?
                .ok_or_else(|| corrupt("claim order"))?;
            if keep(&record) {
                page.push(record);
            }
        }
        Ok((page, None))
    }

    /// Every record in the outbox for `issuer` whose service month lies in `period`, due or not:
    /// clearing delivers them before a pair closes.
    pub fn outbox_for(
        &self,
        issuer: &str,
        period: schein_proto::period::Period,
    ) -> Result<Vec<DueSettlement>, StoreError> {
        let mut found = Vec::new();
        for entry in self.outbox.iter() {
            let (id, bytes) = entry?;
            let outbox =
                OutboxEntry::decode(bytes.as_ref()).map_err(|_| corrupt("outbox entry"))?;
            if outbox.issuer != issuer {
                continue;
            }
            let key = ClaimKey(outbox.claim_key);
            let (settlement_id, settlement) = self.settlement_of(&key)?;
            if settlement_id.as_bytes() != id.as_ref() {
                continue;
            }
            let month = match &settlement {
                Outgoing::Signed(bytes) => {
                    schein_proto::signed::peek::<SettlementRecord>(bytes)
                        .map_err(|_| corrupt("stored settlement record"))?
                        .service_month
                }
                Outgoing::Unsigned(record) => record.service_month,
            };
            if period.contains(month) {
                found.push(DueSettlement {
                    key,
                    settlement_id,
                    issuer: outbox.issuer,
                    settlement,
                    attempts: outbox.attempts,
                });
            }
        }
        Ok(found)
    }

    /// How many settlement records wait in the outbox.
    pub fn outbox_depth(&self) -> usize {
        self.outbox.len()
    }

    /// When the longest-waiting record entered the outbox (milliseconds since the Unix epoch);
    /// `None` if the outbox is empty or holds only entries older than this bookkeeping. Reads
    /// the whole outbox: it is meant for a scrape every few seconds, not for every request.
    pub fn outbox_oldest_ms(&self) -> Result<Option<i64>, StoreError> {
        let mut oldest: Option<i64> = None;
        for entry in self.outbox.iter() {
            let (_, bytes) = entry?;
            let outbox =
                OutboxEntry::decode(bytes.as_ref()).map_err(|_| corrupt("outbox entry"))?;
            if outbox.queued_ms > 0 {
                oldest = Some(oldest.map_or(outbox.queued_ms, |o| o.min(outbox.queued_ms)));
            }
        }
        Ok(oldest)
    }

    /// Settlement records due for delivery at `now_ms`, at most `limit`, the longest due first:
    /// read from the outbox's order by next attempt, so records waiting for later cost nothing.
    pub fn due_settlements(
        &self,
        now_ms: i64,
        limit: usize,
    ) -> Result<Vec<DueSettlement>, StoreError> {
        let mut due = Vec::new();
        let end = due_key(now_ms.saturating_add(1), "");
        for entry in self.outbox_due.range(..end) {
            let (key, _) = entry?;
            let id = key.get(8..).unwrap_or_default();
            let Some(bytes) = self.outbox.get(id)? else {
                // Delivered since this entry was read.
                continue;
            };
            let outbox =
                OutboxEntry::decode(bytes.as_ref()).map_err(|_| corrupt("outbox entry"))?;
            let key = ClaimKey(outbox.claim_key);
            // One damaged entry must not stop the delivery of all others.
            let (settlement_id, settlement) = match self.settlement_of(&key) {
                Ok(found) if found.0.as_bytes() == id => found,
                Ok(_) | Err(_) => {
                    tracing::error!("outbox entry without its claim skipped");
                    continue;
                }
            };
            due.push(DueSettlement {
                key,
                settlement_id,
                issuer: outbox.issuer,
                settlement,
                attempts: outbox.attempts,
            });
            if due.len() == limit {
                break;
            }
        }
        Ok(due)
    }

    /// Notes a failed delivery: try again at `next_attempt_ms`. Not flushed: after a crash the
    /// record is simply tried again at the time noted before.
    pub fn retry_later(
        &self,
        settlement_id: &str,
        attempts: u32,
        next_attempt_ms: i64,
    ) -> Result<(), StoreError> {
        (&self.outbox, &self.outbox_due).transaction(|(outbox, due)| {
            if let Some(mut entry) = dequeue(outbox, due, settlement_id)? {
                entry.attempts = attempts;
                entry.next_attempt_ms = next_attempt_ms;
                enqueue(outbox, due, settlement_id, &entry)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Ends the delivery of a claim's record that the issuer refused for good (it would refuse
    /// it again, whatever the retry): the claim becomes undeliverable with `reason`, leaves the
    /// outbox, and gives up its duplicate-guard keys; the office finds it among the undeliverable
    /// claims. Durable before it returns.
    pub async fn refuse_delivery(
        &self,
        key: &ClaimKey,
        reason: &str,
    ) -> Result<ClaimRecord, StoreError> {
        let record = (
            &self.claims,
            &self.outbox,
            &self.outbox_due,
            &self.claim_items,
            &self.undeliverable,
        )
            .transaction(|(claims, outbox, due, items, undeliverable)| {
                let bytes = claims
                    .get(&key.0)?
                    .ok_or(ConflictableTransactionError::Abort(
                        StoreError::UnknownClaim,
                    ))?;
                let mut entry =
                    decode_entry(&bytes).map_err(ConflictableTransactionError::Abort)?;
                let mut record =
                    entry
                        .record
                        .clone()
                        .ok_or(ConflictableTransactionError::Abort(corrupt(
                            "claim without record",
                        )))?;
                if record.state != ClaimState::Pending as i32 {
                    return Ok(record);
                }
                dequeue(outbox, due, &entry.settlement_id)?;
                release_duplicate_keys(items, key, &entry.duplicate_keys)?;
                record.state = ClaimState::Undeliverable as i32;
                record.message = format!(
                    "Not delivered: the issuing office refused the settlement record ({reason}). It is not sent again; the clearing office has been shown why."
                );
                entry.record = Some(record.clone());
                claims.insert(key.0.as_slice(), entry.encode_to_vec())?;
                undeliverable.insert(key.0.as_slice(), entry.settlement_id.as_bytes())?;
                Ok(record)
            })?;
        self.commit().await?;
        Ok(record)
    }

    /// How many claims ended undeliverable.
    pub fn undeliverable_count(&self) -> usize {
        self.undeliverable.len()
    }

    /// Undeliverable claims, from after the claim key `after` on, at most `limit`; and the key
    /// to go on from.
    pub fn list_undeliverable(
        &self,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<ClaimRecord>, Option<Vec<u8>>), StoreError> {
        let range = match after {
            Some(after) => {
                let mut start = after.to_vec();
                start.push(0);
                self.undeliverable.range(start..)
            }
            None => self.undeliverable.iter(),
        };
        let mut page = Vec::new();
        let mut last = None;
        for entry in range {
            let (key, _) = entry?;
            if page.len() == limit {
                return Ok((page, last));
            }
            if let Some(record) = self.claim(&ClaimKey(key.to_vec()))? {
                page.push(record);
            }
            last = Some(key.to_vec());
        }
        Ok((page, None))
    }

    /// The office's decision on a held claim: release it for settlement, or reject it.
    pub async fn decide_held(
        &self,
        key: &ClaimKey,
        release: bool,
    ) -> Result<ClaimRecord, StoreError> {
        let quiet = self.change();
        let record = (
            &self.claims,
            &self.outbox,
            &self.outbox_due,
            &self.claim_items,
        )
            .transaction(|(claims, outbox, due, items)| {
                let bytes = claims
                    .get(&key.0)?
                    .ok_or(ConflictableTransactionError::Abort(
                        StoreError::UnknownClaim,
                    ))?;
                let mut entry =
                    decode_entry(&bytes).map_err(ConflictableTransactionError::Abort)?;
                let mut record =
                    entry
                        .record
                        .clone()
                        .ok_or(ConflictableTransactionError::Abort(corrupt(
                            "claim without record",
                        )))?;
                if record.state != ClaimState::Held as i32 {
                    return abort(StoreError::NotHeld);
                }
                if release {
                    record.state = ClaimState::Pending as i32;
                    record.message =
                    "Released by the clearing office; waiting for the issuing office's receipt."
                        .into();
                    let item = OutboxEntry {
                        claim_key: key.0.clone(),
                        issuer: record.issuer.clone(),
                        attempts: 0,
                        next_attempt_ms: 0,
                        queued_ms: now_ms(),
                    };
                    enqueue(outbox, due, &entry.settlement_id, &item)?;
                } else {
                    release_duplicate_keys(items, key, &entry.duplicate_keys)?;
                    record.state = ClaimState::Rejected as i32;
                    record.reason = RejectReason::Duplicate as i32;
                    record.message = "Rejected by the clearing office as a duplicate.".into();
                }
                entry.record = Some(record.clone());
                claims.insert(key.0.as_slice(), entry.encode_to_vec())?;
                Ok(record)
            })?;
        drop(quiet);
        self.commit().await?;
        Ok(record)
    }
}
