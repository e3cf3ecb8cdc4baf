//! The issuer's side of settlement: one atomic decision per settlement record (DESIGN.md,
//! flow 4), and cap approvals. A decision is stored, with its ledger entry, before it is
//! answered; a repeat of the same claim gets the stored receipt, byte for byte.

use prost::Message;
use schein_proto::money::MAX_CENTS;
use schein_proto::v1::{
    CapRaised, Category, ClaimRecord, LedgerEvent, Outcome, Receipt, RejectReason,
    SettlementRecord, ledger_event,
};
use schein_proto::{Day, Serial};
use sha2::Digest;
use sled::transaction::{ConflictableTransactionError, Transactional};

use super::{
    OwnClaim, StateRecord, Store, StoreError, StoredVoucher, aggregates, clearing, corrupt, ledger,
    writer,
};
use crate::domain::report::{CostKind, Measure};
use crate::domain::settle::{Ceilings, decide};

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

pub(super) fn settlement_key(redeemer: &str, claim_id: &str) -> Vec<u8> {
    let mut key = redeemer.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(claim_id.as_bytes());
    key
}

fn abort<T>(error: StoreError) -> Result<T, ConflictableTransactionError<StoreError>> {
    Err(ConflictableTransactionError::Abort(error))
}

impl Store {
    /// Whether a record from `redeemer` with `claim_id` was decided already (a retry gets its
    /// original receipt).
    pub fn decided(&self, redeemer: &str, claim_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .settlements
            .contains_key(settlement_key(redeemer, claim_id))?)
    }

    /// Decides on `record` for this node as issuer `issuer`, on `today`: stores the decision,
    /// its ledger entry and the updated voucher state in one transaction (with whatever else the
    /// writer applies at the same time), flushes, and returns the signed receipt. `sign` seals a
    /// receipt with the node's key. The same record again gets the original receipt, byte for
    /// byte; another record under the same claim id is refused.
    pub async fn settle(
        &self,
        issuer: &str,
        record: &SettlementRecord,
        today: Day,
        ceilings: Ceilings,
        sign: impl Fn(&Receipt) -> Vec<u8> + Send + Sync + 'static,
    ) -> Result<Vec<u8>, StoreError> {
        let category = check_record(record)?;
        let change = writer::Change::Settle {
            issuer: issuer.to_owned(),
            record: record.clone(),
            category,
            today,
            ceilings,
            sign: std::sync::Arc::new(sign),
        };
        match self.writer.apply(change).await? {
            writer::Done::Settled(receipt) => Ok(receipt),
            _ => Err(corrupt(
                "the writer answered a settlement with something else",
            )),
        }
    }

    /// Decides on a claim on one of this node's own vouchers and records the receipt with the
    /// claim, in one transaction: a claim in its own city needs no trip through the outbox.
    /// Returns the signed receipt and the claim as it now stands.
    pub async fn settle_own(
        &self,
        issuer: &str,
        record: &SettlementRecord,
        today: Day,
        ceilings: Ceilings,
        sign: impl Fn(&Receipt) -> Vec<u8> + Send + Sync + 'static,
        claim: OwnClaim,
    ) -> Result<(Vec<u8>, ClaimRecord), StoreError> {
        let category = check_record(record)?;
        let change = writer::Change::SettleOwn {
            issuer: issuer.to_owned(),
            record: record.clone(),
            category,
            today,
            ceilings,
            sign: std::sync::Arc::new(sign),
            claim,
        };
        match self.writer.apply(change).await? {
            writer::Done::SettledOwn(receipt, claim) => Ok((receipt, claim)),
            _ => Err(corrupt(
                "the writer answered an own settlement with something else",
            )),
        }
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
        let quiet = self.change();
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
        drop(quiet);
        self.commit().await?;
        let stored = self.voucher(serial)?.ok_or(StoreError::UnknownVoucher)?;
        Ok(if applied {
            CapApproval::Applied(stored)
        } else {
            CapApproval::Pending(stored)
        })
    }
}

/// What a record must be before it can be decided on at all; its category.
fn check_record(record: &SettlementRecord) -> Result<Category, StoreError> {
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
        return Err(SettleError::InvalidRecord("the service month is not a month".into()).into());
    }
    Serial::from_slice(&record.serial)
        .map_err(|_| SettleError::InvalidRecord("a serial has 10 bytes".into()))?;
    Ok(category)
}

/// Decides on `record` inside the writer's transaction (see [`Store::settle`]).
pub(super) fn settle_in(
    tx: &writer::Tx<'_>,
    issuer: &str,
    record: &SettlementRecord,
    category: Category,
    today: Day,
    ceilings: Ceilings,
    sign: &dyn Fn(&Receipt) -> Vec<u8>,
) -> Result<Vec<u8>, ConflictableTransactionError<StoreError>> {
    let serial = Serial::from_slice(&record.serial)
        .map_err(|_| ConflictableTransactionError::Abort(corrupt("a checked serial")))?;
    let key = settlement_key(&record.redeemer, &record.claim_id);
    let record_hash: [u8; 32] = sha2::Sha256::digest(record.encode_to_vec()).into();
    if let Some(existing) = tx.settlements.get(&key)? {
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
    let mut voucher = match (record.issuer == issuer, tx.issued.get(serial.as_bytes())?) {
        (true, Some(issued_bytes)) => {
            let state_bytes =
                tx.state
                    .get(serial.as_bytes())?
                    .ok_or(ConflictableTransactionError::Abort(corrupt(
                        "voucher without state",
                    )))?;
            let voucher_state = StateRecord::decode(state_bytes.as_ref())
                .map_err(|_| ConflictableTransactionError::Abort(corrupt("voucher state")))?;
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
            let decision = if clearing::closed_in(tx.meta, &record.redeemer, month)? {
                Err(RejectReason::PeriodClosed)
            } else {
                decide(stored, record, category, today, ceilings)
            };
            receipt.remaining_cap_cents = stored.remaining_cap_cents();
            match decision {
                Err(reason) => receipt.reason = reason as i32,
                Ok(()) => {
                    receipt.outcome = Outcome::Accepted as i32;
                    book_accepted(
                        tx.aggregates,
                        voucher_state,
                        stored.voucher.emergency,
                        category,
                        record,
                        today,
                    )?;
                    receipt.remaining_cap_cents = stored
                        .cap_cents
                        .map(|cap| cap - voucher_state.claimed_cents);
                }
            }
        }
    }
    // A closed period's counters stay as they were when it closed.
    if receipt.outcome == Outcome::Rejected as i32
        && receipt.reason != RejectReason::PeriodClosed as i32
    {
        let reason = RejectReason::try_from(receipt.reason).unwrap_or(RejectReason::Unspecified);
        let mut counted = match &mut voucher {
            Some((_, _, voucher_state)) => {
                aggregates::Counted::InState(&mut voucher_state.counted_in)
            }
            None => aggregates::Counted::Unknown(tx.aggregate_seen, &serial),
        };
        aggregates::count(
            tx.aggregates,
            &mut counted,
            Measure::Rejected(reason),
            month,
            0,
            today,
        )?;
    }
    // The sums, or the cells the voucher is counted in, may have changed.
    if let Some((_, before, after)) = &voucher
        && before != after
    {
        tx.state.insert(serial.as_bytes(), after.encode_to_vec())?;
    }
    // The receipt names its own ledger position and the hash of the entry before it (so the
    // redeemer can later hold this node to its past): reserve it, then record the signed
    // receipt under it.
    let head = ledger::head_in(tx.meta)?;
    receipt.ledger_seq = head.seq + 1;
    receipt.ledger_prev_hash = head.hash.to_vec();
    let signed = sign(&receipt);
    let event = LedgerEvent {
        event: Some(ledger_event::Event::Receipt(signed.clone())),
    };
    let seq = ledger::append(tx.ledger, tx.meta, &event)?;
    if seq != receipt.ledger_seq {
        return abort(corrupt("ledger sequence moved during settlement"));
    }
    let mut value = record_hash.to_vec();
    value.extend_from_slice(&signed);
    tx.settlements.insert(key.as_slice(), value)?;
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
    Ok(signed)
}

/// Books an accepted claim on its voucher: the spent sum of its category and the report
/// counters, as of `day`. Settling does it, and recovery after a restore again, the same way.
pub(super) fn book_accepted(
    aggregates_tree: &sled::transaction::TransactionalTree,
    state: &mut StateRecord,
    emergency: bool,
    category: Category,
    record: &SettlementRecord,
    day: Day,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    match category {
        Category::Medication => state.medication_cents += record.amount_cents,
        _ => state.claimed_cents += record.amount_cents,
    }
    let kind = CostKind::of(emergency, category);
    let mut counted = aggregates::Counted::InState(&mut state.counted_in);
    for measure in [
        Measure::Settled,
        Measure::Cost(kind),
        Measure::Flow(&record.redeemer),
    ] {
        aggregates::count(
            aggregates_tree,
            &mut counted,
            measure,
            record.service_month,
            record.amount_cents,
            day,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The issuer's rules against a real store: each test settles records on vouchers made for it
    //! and reads the decision from the receipt.

    use ed25519_dalek::SigningKey;
    use schein_proto::SignedVoucher;
    use schein_proto::v1::{RevocationReason, Scope};
    use schein_proto::voucher::new_body;

    use super::*;

    const CEILINGS: Ceilings = Ceilings {
        medication_per_voucher_cents: 50_000,
        per_claim_cents: 250_000,
    };

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    struct Issuer {
        _dir: tempfile::TempDir,
        store: Store,
        key: SigningKey,
    }

    impl Issuer {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            Self {
                _dir: dir,
                store,
                key: SigningKey::from_bytes(&[9; 32]),
            }
        }

        /// Issues a voucher valid from `from` to `until` (medication covered, cap EUR 500),
        /// bound to `bound` if given.
        async fn voucher(&self, from: &str, until: &str, bound: Option<&str>) -> SignedVoucher {
            let mut body = new_body(
                "leipzig",
                Serial::random(),
                &self.key.verifying_key(),
                day(from),
                day(until),
                &[Scope::Medication],
                Some(50_000),
            );
            if let Some(bound) = bound {
                body.emergency = true;
                body.bound_provider = bound.into();
            }
            let signed = SignedVoucher::sign(&body, &self.key);
            self.store.issue(&signed, day(from)).await.unwrap();
            signed
        }

        /// Settles a record of `redeemer` for `cents` in `category`, served in the month of
        /// `served`, accepted on `accepted`, decided on `today`; returns the receipt.
        #[allow(clippy::too_many_arguments)]
        async fn settle(&self, voucher: &SignedVoucher, sent: Sent) -> Receipt {
            let Sent {
                redeemer,
                cents,
                category,
                served,
                accepted,
                before_revocation,
                today,
            } = sent;
            let record = SettlementRecord {
                claim_id: data_encoding::HEXLOWER.encode(Serial::random().as_bytes()),
                serial: voucher.decode_own().unwrap().serial.as_bytes().to_vec(),
                issuer: "leipzig".into(),
                amount_cents: cents,
                category: category as i32,
                service_month: day(served).month().unwrap(),
                redeemer: redeemer.into(),
                key_id: "test".into(),
                voucher_hash: sha2::Sha256::digest(voucher.to_bytes()).to_vec(),
                accepted_on: Some(day(accepted).into()),
                served_before_revocation: before_revocation,
            };
            let bytes = self
                .store
                .settle("leipzig", &record, day(today), CEILINGS, |r: &Receipt| {
                    r.encode_to_vec()
                })
                .await
                .unwrap();
            Receipt::decode(bytes.as_slice()).unwrap()
        }
    }

    /// A record as the redeemer sends it: by default from Dresden, accepted on the day of the
    /// service, decided that day, the service not before a revocation.
    struct Sent {
        redeemer: &'static str,
        cents: i64,
        category: Category,
        served: &'static str,
        accepted: &'static str,
        before_revocation: bool,
        today: &'static str,
    }

    impl Sent {
        fn new(cents: i64, category: Category, served: &'static str) -> Self {
            Sent {
                redeemer: "dresden",
                cents,
                category,
                served,
                accepted: served,
                before_revocation: false,
                today: served,
            }
        }

        fn from(self, redeemer: &'static str) -> Self {
            Sent { redeemer, ..self }
        }

        /// Accepted by the redeemer on `accepted`, and decided that day unless [`Sent::today`].
        fn accepted(self, accepted: &'static str) -> Self {
            Sent {
                accepted,
                today: accepted,
                ..self
            }
        }

        fn before_revocation(self) -> Self {
            Sent {
                before_revocation: true,
                ..self
            }
        }

        fn today(self, today: &'static str) -> Self {
            Sent { today, ..self }
        }
    }

    fn decision(receipt: &Receipt) -> Result<(), RejectReason> {
        if receipt.outcome == Outcome::Accepted as i32 {
            Ok(())
        } else {
            Err(RejectReason::try_from(receipt.reason).unwrap())
        }
    }

    const T: Category = Category::Treatment;
    const M: Category = Category::Medication;

    #[tokio::test]
    async fn the_deadline_is_judged_by_the_day_the_redeemer_accepted_the_claim() {
        let issuer = Issuer::new();
        let v = issuer.voucher("2026-07-01", "2026-09-30", None).await;
        // Deadline 2026-12-30. Accepted in time, arriving after an outage: paid.
        let late_arrival = issuer
            .settle(
                &v,
                Sent::new(466, T, "2026-09-15")
                    .accepted("2026-12-20")
                    .today("2027-01-15"),
            )
            .await;
        assert_eq!(decision(&late_arrival), Ok(()));
        // Accepted after the deadline: rejected.
        let late = issuer
            .settle(&v, Sent::new(466, T, "2026-09-15").accepted("2026-12-31"))
            .await;
        assert_eq!(decision(&late), Err(RejectReason::DeadlinePassed));
        // An acceptance day in the issuer's future is not believed: its own clock decides.
        let future = issuer
            .settle(
                &v,
                Sent::new(466, T, "2026-09-15")
                    .accepted("2027-01-20")
                    .today("2027-01-10"),
            )
            .await;
        assert_eq!(decision(&future), Err(RejectReason::DeadlinePassed));
        // Nor one before the service month began.
        let before = issuer
            .settle(
                &v,
                Sent::new(466, T, "2026-09-15")
                    .accepted("2026-08-01")
                    .today("2027-01-10"),
            )
            .await;
        assert_eq!(decision(&before), Err(RejectReason::DeadlinePassed));
    }

    #[tokio::test]
    async fn services_before_a_revocation_are_paid_and_after_it_not() {
        let issuer = Issuer::new();
        let v = issuer.voucher("2026-10-01", "2026-12-31", None).await;
        let serial = v.decode_own().unwrap().serial;
        issuer
            .store
            .revoke(serial, RevocationReason::Lost, day("2026-11-20"))
            .await
            .unwrap();
        let before = issuer
            .settle(
                &v,
                Sent::new(466, T, "2026-11-10")
                    .accepted("2026-11-25")
                    .before_revocation(),
            )
            .await;
        assert_eq!(decision(&before), Ok(()), "served before the revocation");
        let after = issuer
            .settle(&v, Sent::new(466, T, "2026-11-21").accepted("2026-11-25"))
            .await;
        assert_eq!(decision(&after), Err(RejectReason::Revoked));
        // A redeemer claiming "before" for a month after the revocation's is not believed.
        let implausible = issuer
            .settle(
                &v,
                Sent::new(466, T, "2026-12-02")
                    .accepted("2026-12-03")
                    .before_revocation(),
            )
            .await;
        assert_eq!(decision(&implausible), Err(RejectReason::Revoked));
    }

    #[tokio::test]
    async fn ceilings_bound_one_claim_and_a_vouchers_medication() {
        let issuer = Issuer::new();
        let v = issuer.voucher("2026-10-01", "2026-12-31", None).await;
        let too_big = issuer.settle(&v, Sent::new(250_001, T, "2026-11-10")).await;
        assert_eq!(decision(&too_big), Err(RejectReason::OverClaimCeiling));
        let first = issuer.settle(&v, Sent::new(40_000, M, "2026-11-10")).await;
        assert_eq!(decision(&first), Ok(()));
        let over = issuer.settle(&v, Sent::new(10_001, M, "2026-11-11")).await;
        assert_eq!(decision(&over), Err(RejectReason::OverMedicationCeiling));
        let rest = issuer.settle(&v, Sent::new(10_000, M, "2026-11-11")).await;
        assert_eq!(decision(&rest), Ok(()), "exactly up to the ceiling");
        // Medication does not use the treatment cap.
        let treatment = issuer.settle(&v, Sent::new(50_000, T, "2026-11-12")).await;
        assert_eq!(decision(&treatment), Ok(()));
    }

    #[tokio::test]
    async fn an_emergency_voucher_settles_only_for_its_providers_node() {
        let issuer = Issuer::new();
        let v = issuer
            .voucher("2026-10-01", "2026-12-31", Some("chemnitz/klinikum"))
            .await;
        let elsewhere = issuer.settle(&v, Sent::new(15_000, T, "2026-11-10")).await;
        assert_eq!(decision(&elsewhere), Err(RejectReason::NotBoundProvider));
        let bound = issuer
            .settle(&v, Sent::new(15_000, T, "2026-11-10").from("chemnitz"))
            .await;
        assert_eq!(decision(&bound), Ok(()));
    }
}
