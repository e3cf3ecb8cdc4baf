//! The issuer's side of settlement: one atomic decision per settlement record (DESIGN.md,
//! flow 4), and cap approvals. A decision is stored, with its ledger entry, before it is
//! answered; a repeat of the same claim gets the stored receipt, byte for byte.

use prost::Message;
use schein_proto::money::MAX_CENTS;
use schein_proto::v1::{
    CapRaised, Category, LedgerEvent, Outcome, Receipt, RejectReason, Scope, SettlementRecord,
    ledger_event,
};
use schein_proto::{Day, Serial};
use sha2::Digest;
use sled::transaction::{ConflictableTransactionError, Transactional};

use schein_proto::period::Period;

use super::{StateRecord, Store, StoreError, StoredVoucher, aggregates, corrupt, ledger};

/// Claims must arrive within this many months after a voucher's validity ends.
const CLAIM_DEADLINE_MONTHS: u32 = 3;

/// A settlement record that cannot be decided on at all; nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettleError {
    #[error("the record is not valid: {0}")]
    InvalidRecord(String),
}

/// Result of one office identity's approval of a higher cap.
#[derive(Debug, Clone)]
pub enum CapApproval {
    /// The new cap is in force.
    Applied(StoredVoucher),
    /// Recorded; it needs a second, different office identity.
    Pending(StoredVoucher),
}

/// Marks a period closed in clearing.
pub(super) fn closed_key(period: Period) -> Vec<u8> {
    format!("closed/{period}").into_bytes()
}

fn settlement_key(redeemer: &str, claim_id: &str) -> Vec<u8> {
    let mut key = redeemer.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(claim_id.as_bytes());
    key
}

fn abort<T>(error: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(error))
}

impl Store {
    /// Decides on `record` for this node as issuer `issuer`, on `today`: stores the decision,
    /// its ledger entry and the updated voucher state in one transaction, flushes, and returns
    /// the signed receipt. `sign` seals a receipt with the node's key.
    pub async fn settle(
        &self,
        issuer: &str,
        record: &SettlementRecord,
        today: Day,
        sign: impl Fn(&Receipt) -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        if !(1..=MAX_CENTS).contains(&record.amount_cents) {
            return Err(SettleError::InvalidRecord("the amount is out of range".into()).into());
        }
        let category = Category::try_from(record.category)
            .ok()
            .filter(|c| *c != Category::Unspecified)
            .ok_or_else(|| SettleError::InvalidRecord("unknown category".into()))?;
        if record.claim_id.is_empty() || record.claim_id.len() > 64 {
            return Err(
                SettleError::InvalidRecord("the claim id is missing or too long".into()).into(),
            );
        }
        let plausible_month = (200_001..=299_912).contains(&record.service_month)
            && (1..=12).contains(&(record.service_month % 100));
        if !plausible_month {
            return Err(
                SettleError::InvalidRecord("the service month is not a month".into()).into(),
            );
        }
        let serial = Serial::from_slice(&record.serial)
            .map_err(|_| SettleError::InvalidRecord("a serial has 10 bytes".into()))?;
        let key = settlement_key(&record.redeemer, &record.claim_id);
        let record_hash: [u8; 32] = sha2::Sha256::digest(record.encode_to_vec()).into();
        let trees = (
            &self.settlements,
            &self.issued,
            &self.state,
            &self.ledger,
            &self.meta,
            &self.aggregates,
            &self.aggregate_seen,
        );
        let writing = self.writer.lock().await;
        let receipt = trees.transaction(
            |(settlements, issued, state, ledger_tree, meta, aggregates, seen)| {
                if let Some(existing) = settlements.get(&key)? {
                    // The same claim again: the original receipt, byte for byte. Another claim
                    // under the same id is refused.
                    let (hash, receipt) = existing.split_at(existing.len().min(32));
                    if hash != record_hash {
                        return abort(StoreError::ClaimIdReused);
                    }
                    return Ok(receipt.to_vec());
                }
                let mut receipt = Receipt {
                    claim_id: record.claim_id.clone(),
                    serial: record.serial.clone(),
                    issuer: issuer.to_owned(),
                    redeemer: record.redeemer.clone(),
                    amount_cents: record.amount_cents,
                    category: category as i32,
                    service_month: record.service_month,
                    outcome: Outcome::Rejected as i32,
                    decided_month: today.month().unwrap_or_default(),
                    ..Default::default()
                };
                let mut voucher = match (record.issuer == issuer, issued.get(serial.as_bytes())?) {
                    (true, Some(issued_bytes)) => {
                        let state_bytes = state.get(serial.as_bytes())?.ok_or(
                            ConflictableTransactionError::Abort(corrupt("voucher without state")),
                        )?;
                        let voucher_state =
                            StateRecord::decode(state_bytes.as_ref()).map_err(|_| {
                                ConflictableTransactionError::Abort(corrupt("voucher state"))
                            })?;
                        Some((
                            Store::assemble(&issued_bytes, &state_bytes)
                                .map_err(ConflictableTransactionError::Abort)?,
                            voucher_state.clone(),
                            voucher_state,
                        ))
                    }
                    _ => None,
                };
                let month = record.service_month;
                match &mut voucher {
                    None => receipt.reason = RejectReason::UnknownVoucher as i32,
                    Some((stored, _, voucher_state)) => {
                        let mut closed = false;
                        for p in Period::containing(month) {
                            closed |= meta.get(closed_key(p))?.is_some();
                        }
                        let decision = if closed {
                            Err(RejectReason::PeriodClosed)
                        } else {
                            decide(stored, record, category, today)
                        };
                        receipt.remaining_cap_cents = stored.remaining_cap_cents();
                        match decision {
                            Err(reason) => receipt.reason = reason as i32,
                            Ok(()) => {
                                receipt.outcome = Outcome::Accepted as i32;
                                match category {
                                    Category::Medication => {
                                        voucher_state.medication_cents += record.amount_cents
                                    }
                                    _ => voucher_state.claimed_cents += record.amount_cents,
                                }
                                receipt.remaining_cap_cents = stored
                                    .cap_cents
                                    .map(|cap| cap - voucher_state.claimed_cents);
                                // The emergency pot is the `category/…/emergency`
                                // aggregate: counted once, there.
                                let kind = match (stored.voucher.emergency, category) {
                                    (true, _) => "emergency",
                                    (false, Category::Medication) => "medication",
                                    (false, _) => "treatment",
                                };
                                let amount = record.amount_cents;
                                let mut counted =
                                    aggregates::Counted::InState(&mut voucher_state.counted_in);
                                for (metric, dimension) in [
                                    ("settled", None),
                                    ("category", Some(kind)),
                                    ("flow", Some(record.redeemer.as_str())),
                                ] {
                                    aggregates::count(
                                        aggregates,
                                        &mut counted,
                                        metric,
                                        dimension,
                                        month,
                                        amount,
                                        today,
                                    )?;
                                }
                            }
                        }
                    }
                }
                // A closed period's counters stay as they were when it closed.
                if receipt.outcome == Outcome::Rejected as i32
                    && receipt.reason != RejectReason::PeriodClosed as i32
                {
                    let reason = RejectReason::try_from(receipt.reason)
                        .unwrap_or(RejectReason::Unspecified)
                        .as_str_name();
                    let mut counted = match &mut voucher {
                        Some((_, _, voucher_state)) => {
                            aggregates::Counted::InState(&mut voucher_state.counted_in)
                        }
                        None => aggregates::Counted::Unknown(seen, &serial),
                    };
                    aggregates::count(
                        aggregates,
                        &mut counted,
                        "rejected",
                        Some(reason),
                        month,
                        0,
                        today,
                    )?;
                }
                // The sums, or the cells the voucher is counted in, may have changed.
                if let Some((_, before, after)) = &voucher
                    && before != after
                {
                    state.insert(serial.as_bytes(), after.encode_to_vec())?;
                }
                // The receipt names its own ledger position: reserve it, then record the signed
                // receipt under it.
                let head = ledger::head_in(meta)?;
                receipt.ledger_seq = head.seq + 1;
                let signed = sign(&receipt);
                let event = LedgerEvent {
                    event: Some(ledger_event::Event::Receipt(signed.clone())),
                };
                let seq = ledger::append(ledger_tree, meta, &event)?;
                if seq != receipt.ledger_seq {
                    return abort(corrupt("ledger sequence moved during settlement"));
                }
                let mut value = record_hash.to_vec();
                value.extend_from_slice(&signed);
                settlements.insert(key.as_slice(), value)?;
                Ok(signed)
            },
        )?;
        drop(writing);
        self.commit().await?;
        Ok(receipt)
    }

    /// One office identity's approval of `new_cap` for `serial`. At or below `threshold` it
    /// applies at once; above, it applies when a second, different identity approves the same
    /// amount.
    pub async fn approve_cap(
        &self,
        serial: Serial,
        new_cap: i64,
        approver: &str,
        threshold: i64,
    ) -> Result<CapApproval, StoreError> {
        let applied =
            (&self.issued, &self.state, &self.ledger, &self.meta).transaction(
                |(issued, state, ledger_tree, meta)| {
                    let issued_bytes = issued.get(serial.as_bytes())?.ok_or(
                        ConflictableTransactionError::Abort(StoreError::UnknownVoucher),
                    )?;
                    let state_bytes = state.get(serial.as_bytes())?.ok_or(
                        ConflictableTransactionError::Abort(corrupt("voucher without state")),
                    )?;
                    let stored = Store::assemble(&issued_bytes, &state_bytes)
                        .map_err(ConflictableTransactionError::Abort)?;
                    let mut voucher_state =
                        StateRecord::decode(state_bytes.as_ref()).map_err(|_| {
                            ConflictableTransactionError::Abort(corrupt("voucher state"))
                        })?;
                    if stored.revoked_on.is_some() {
                        return abort(StoreError::AlreadyRevoked);
                    }
                    if stored.cap_cents.is_some_and(|cap| new_cap <= cap)
                        || stored.cap_cents.is_none()
                    {
                        return abort(
                            SettleError::InvalidRecord(
                                "an approval can only raise a voucher's cap".into(),
                            )
                            .into(),
                        );
                    }
                    let second = voucher_state.pending_cap == Some(new_cap);
                    if new_cap > threshold && second && voucher_state.pending_approver == approver {
                        return abort(StoreError::NeedsSecondApproval);
                    }
                    if new_cap > threshold && !second {
                        voucher_state.pending_cap = Some(new_cap);
                        voucher_state.pending_approver = approver.to_owned();
                        state.insert(serial.as_bytes(), voucher_state.encode_to_vec())?;
                        return Ok(false);
                    }
                    voucher_state.cap_override = Some(new_cap);
                    voucher_state.pending_cap = None;
                    voucher_state.pending_approver.clear();
                    state.insert(serial.as_bytes(), voucher_state.encode_to_vec())?;
                    let event = LedgerEvent {
                        event: Some(ledger_event::Event::CapRaised(CapRaised {
                            serial: serial.as_bytes().to_vec(),
                            new_cap_cents: new_cap,
                        })),
                    };
                    ledger::append(ledger_tree, meta, &event)?;
                    Ok(true)
                },
            )?;
        self.commit().await?;
        let stored = self.voucher(serial)?.ok_or(StoreError::UnknownVoucher)?;
        Ok(if applied {
            CapApproval::Applied(stored)
        } else {
            CapApproval::Pending(stored)
        })
    }
}

/// The rules of flow 4 for one voucher, in order: revoked, service month within validity,
/// deadline, cap (treatment only; medication is outside the cap).
fn decide(
    stored: &StoredVoucher,
    record: &SettlementRecord,
    category: Category,
    today: Day,
) -> Result<(), RejectReason> {
    let voucher = &stored.voucher;
    // What R was shown must be the voucher stored here: a leaked key cannot mint variants.
    let stored_hash: [u8; 32] = sha2::Sha256::digest(stored.signed.to_bytes()).into();
    if record.voucher_hash != stored_hash {
        return Err(RejectReason::UnknownVoucher);
    }
    if stored.revoked_on.is_some() {
        return Err(RejectReason::Revoked);
    }
    if category == Category::Medication && !voucher.covers(Scope::Medication) {
        return Err(RejectReason::OutOfScope);
    }
    let first = voucher.valid_from.month().unwrap_or(i32::MAX);
    let last = voucher.valid_until.month().unwrap_or(i32::MIN);
    if !(first..=last).contains(&record.service_month) {
        return Err(RejectReason::Expired);
    }
    let deadline = voucher
        .valid_until
        .add_months(CLAIM_DEADLINE_MONTHS)
        .unwrap_or(voucher.valid_until);
    if today > deadline {
        return Err(RejectReason::DeadlinePassed);
    }
    if category == Category::Treatment
        && let Some(cap) = stored.cap_cents
        && stored.claimed_cents + record.amount_cents > cap
    {
        return Err(RejectReason::OverCap);
    }
    Ok(())
}
