//! The issuer's side of settlement (DESIGN.md, flow 4): a signed settlement record from a member
//! is opened with that member's key and decided on against the voucher as this node stored it.
//! The decision is the pure function [`decide`], which the store calls inside the transaction
//! that records it; the store answers a repeated record with the original receipt.

use schein_proto::v1::{
    Category, ClaimRecord, ErrorReason, Receipt, RejectReason, Scope, SettlementRecord,
};
use schein_proto::voucher::claim_deadline;
use schein_proto::{Day, KeyId};
use sha2::Digest;

use super::Refusal;
use crate::node::Node;
use crate::pki::Identity;
use crate::store::{ClaimKey, OwnClaim, StoreError, StoredVoucher};

/// What the issuer pays at most (its member entry's limits), as the decision needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ceilings {
    pub medication_per_voucher_cents: i64,
    pub per_claim_cents: i64,
}

impl Ceilings {
    /// This node's ceilings, from its own member entry: what it published.
    pub fn of(node: &Node) -> Self {
        let limits = node.limits();
        Self {
            medication_per_voucher_cents: limits.medication_per_voucher_cents,
            per_claim_cents: limits.per_claim_cents,
        }
    }
}

/// Why a settlement record was not decided on at all; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("you are not a member of this roster")]
    NotAMember,
    #[error("the settlement record {0}")]
    NotGenuine(String),
    #[error("a node may only send its own settlement records")]
    OtherNodesRecord,
    #[error("the record is not valid: {0}")]
    Invalid(String),
    #[error("this claim id was used before for a different claim; use a new claim id")]
    ClaimIdReused,
    #[error("too many {0} today ({1} per member and day); try again tomorrow")]
    TooMany(&'static str, u32),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for SettleError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Settle(crate::store::SettleError::InvalidRecord(why)) => {
                SettleError::Invalid(why)
            }
            StoreError::ClaimIdReused => SettleError::ClaimIdReused,
            other => SettleError::Store(other),
        }
    }
}

impl Refusal for SettleError {
    fn reason(&self) -> ErrorReason {
        match self {
            SettleError::NotAMember => ErrorReason::UnknownIdentity,
            SettleError::NotGenuine(_) => ErrorReason::BadSignature,
            SettleError::OtherNodesRecord => ErrorReason::WrongNode,
            SettleError::Invalid(_) => ErrorReason::InvalidArgument,
            SettleError::ClaimIdReused => ErrorReason::ClaimIdReused,
            SettleError::TooMany(..) => ErrorReason::TooMany,
            SettleError::Store(error) => error.reason(),
        }
    }
}

/// A member node `peer` sends one of its signed settlement records: opened with its key,
/// decided, stored, answered with this node's signed receipt.
pub async fn settle(
    node: &Node,
    peer: &Identity,
    signed_record: &[u8],
) -> Result<Vec<u8>, SettleError> {
    let roster = node.roster();
    let redeemer = roster.member(&peer.node).ok_or(SettleError::NotAMember)?;
    let record: SettlementRecord = redeemer
        .open(signed_record, Day::today())
        .map_err(|e| SettleError::NotGenuine(e.to_string()))?;
    if record.redeemer != peer.node {
        tracing::warn!(peer = %peer.node, "refused: settlement record of another node");
        return Err(SettleError::OtherNodesRecord);
    }
    // A member is trusted, not believed: every record is kept with its receipt and counted,
    // also one that is rejected. Bound per member and day the records for serials this node
    // never issued, and the records rejected otherwise, so that no member can fill the disk
    // or the "rejected" counters. A record decided before is answered as ever.
    let new = !node.store.decided(&record.redeemer, &record.claim_id)?;
    let unknown = schein_proto::Serial::from_slice(&record.serial)
        .ok()
        .map(|serial| node.store.voucher(serial).map(|v| v.is_none()))
        .transpose()?
        .unwrap_or(true);
    let today = Day::today();
    if new && unknown && !node.unknown_serials.admit(&peer.node, today) {
        tracing::warn!(peer = %peer.node, "refused: too many records for unknown vouchers today");
        return Err(SettleError::TooMany(
            "records for vouchers this node never issued",
            UNKNOWN_PER_DAY,
        ));
    }
    if new && !unknown && node.rejections.exhausted(&peer.node, today) {
        tracing::warn!(peer = %peer.node, "refused: too many rejected records today");
        return Err(SettleError::TooMany("rejected records", REJECTED_PER_DAY));
    }
    let signed_receipt = settle_here(node, &record).await?;
    let rejected = schein_proto::signed::peek::<Receipt>(&signed_receipt)
        .is_ok_and(|r| r.outcome() == schein_proto::v1::Outcome::Rejected);
    if new && !unknown && rejected {
        node.rejections.admit(&peer.node, today);
    }
    Ok(signed_receipt)
}

/// Most records for vouchers this node never issued that one member may send in a day.
pub const UNKNOWN_PER_DAY: u32 = 1000;
/// Most other rejected records of one member in a day; then its new records wait for tomorrow
/// (an honest member's outbox retries them).
pub const REJECTED_PER_DAY: u32 = 1000;

/// A count per member that starts again every day (kept in memory: a restart gives every member
/// a fresh day's allowance, which bounds the harm all the same).
#[derive(Debug)]
pub struct DailyQuota {
    limit: u32,
    counts: std::sync::Mutex<std::collections::HashMap<String, (Day, u32)>>,
}

impl DailyQuota {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            counts: Default::default(),
        }
    }

    fn with_count<T>(&self, member: &str, today: Day, f: impl FnOnce(&mut u32) -> T) -> T {
        let mut counts = match self.counts.lock() {
            Ok(counts) => counts,
            Err(poisoned) => poisoned.into_inner(),
        };
        let (day, count) = counts.entry(member.to_owned()).or_insert((today, 0));
        if *day != today {
            *day = today;
            *count = 0;
        }
        f(count)
    }

    /// Whether one more from `member` on `today` is within the limit; counts it if so.
    pub fn admit(&self, member: &str, today: Day) -> bool {
        let limit = self.limit;
        self.with_count(member, today, |count| {
            if *count >= limit {
                return false;
            }
            *count += 1;
            true
        })
    }

    /// Whether `member` used up its allowance for `today`.
    pub fn exhausted(&self, member: &str, today: Day) -> bool {
        let limit = self.limit;
        self.with_count(member, today, |count| *count >= limit)
    }
}

/// Most records one batch may carry.
pub const MAX_BATCH: usize = 256;

/// A member node `peer` sends up to [`MAX_BATCH`] of its signed settlement records at once:
/// each is opened and decided as [`settle`] would, and they reach the store together, so that
/// its writer decides them in one transaction. The answers are in the order of the records.
pub async fn settle_batch(
    node: &Node,
    peer: &Identity,
    signed_records: &[Vec<u8>],
) -> Result<Vec<Result<Vec<u8>, SettleError>>, SettleError> {
    if signed_records.len() > MAX_BATCH {
        return Err(SettleError::Invalid(format!(
            "at most {MAX_BATCH} records per batch, not {}",
            signed_records.len()
        )));
    }
    let answers = signed_records
        .iter()
        .map(|signed_record| settle(node, peer, signed_record));
    Ok(futures::future::join_all(answers).await)
}

/// Decides on a record whose sender has been checked (or this node's own, as its own issuer).
pub async fn settle_here(node: &Node, record: &SettlementRecord) -> Result<Vec<u8>, SettleError> {
    let signed_receipt = node
        .store
        .settle(
            &node.id,
            record,
            Day::today(),
            Ceilings::of(node),
            receipt_signer(node),
        )
        .await?;
    Ok(signed_receipt)
}

/// Decides on this node's own record for the claim under `key` (a claim on one of its own
/// vouchers) and records the receipt with the claim in the same transaction; `describe` says
/// what the provider is told. Returns the signed receipt and the claim as it now stands.
pub async fn settle_own_claim(
    node: &Node,
    record: &SettlementRecord,
    key: &ClaimKey,
    describe: impl Fn(&Receipt) -> String + Send + Sync + 'static,
) -> Result<(Vec<u8>, ClaimRecord), SettleError> {
    Ok(node
        .store
        .settle_own(
            &node.id,
            record,
            Day::today(),
            Ceilings::of(node),
            receipt_signer(node),
            OwnClaim {
                key: key.clone(),
                describe: std::sync::Arc::new(describe),
            },
        )
        .await?)
}

/// Seals a receipt with this node's signing key, naming the key.
fn receipt_signer(node: &Node) -> impl Fn(&Receipt) -> Vec<u8> + Send + Sync + 'static {
    let key = node.signing_key();
    let key_id = KeyId::of(&key.verifying_key()).0;
    move |receipt| {
        let receipt = Receipt {
            key_id: key_id.clone(),
            ..receipt.clone()
        };
        schein_proto::signed::seal(schein_proto::signed::Kind::Receipt, &receipt, &key)
    }
}

/// The rules of flow 4 for one voucher, in order: the voucher as presented, the emergency
/// voucher's bound provider, revocation (services before its day are still paid), scope,
/// service month within validity, deadline by the day the redeemer accepted the claim, the
/// ceiling per claim, and the cap (treatment) or the medication ceiling (medication).
pub fn decide(
    stored: &StoredVoucher,
    record: &SettlementRecord,
    category: Category,
    today: Day,
    ceilings: Ceilings,
) -> Result<(), RejectReason> {
    let voucher = &stored.voucher;
    // What R was shown must be the voucher stored here: a leaked key cannot mint variants.
    let stored_hash: [u8; 32] = sha2::Sha256::digest(stored.signed.to_bytes()).into();
    if record.voucher_hash != stored_hash {
        return Err(RejectReason::UnknownVoucher);
    }
    // The redeemer does not say which provider claims (privacy rule 3), only which node: an
    // emergency voucher settles only for its bound provider's node.
    if let Some(bound) = &voucher.bound_provider
        && bound.split_once('/').map(|(node, _)| node) != Some(record.redeemer.as_str())
    {
        return Err(RejectReason::NotBoundProvider);
    }
    if let Some(revoked_on) = stored.revoked_on {
        // The redeemer vouches (signed) that the service came before the revocation day; a
        // service month after the revocation's month cannot have.
        let plausible = revoked_on
            .month()
            .is_some_and(|revoked| record.service_month <= revoked);
        if !(record.served_before_revocation && plausible) {
            return Err(RejectReason::Revoked);
        }
    }
    if category == Category::Medication && !voucher.covers(Scope::Medication) {
        return Err(RejectReason::OutOfScope);
    }
    let first = voucher.valid_from.month().unwrap_or(i32::MAX);
    let last = voucher.valid_until.month().unwrap_or(i32::MIN);
    if !(first..=last).contains(&record.service_month) {
        return Err(RejectReason::Expired);
    }
    if accepted_on(record, today) > claim_deadline(voucher.valid_until) {
        return Err(RejectReason::DeadlinePassed);
    }
    if record.amount_cents > ceilings.per_claim_cents {
        return Err(RejectReason::OverClaimCeiling);
    }
    match category {
        Category::Medication => {
            if stored.medication_cents + record.amount_cents > ceilings.medication_per_voucher_cents
            {
                return Err(RejectReason::OverMedicationCeiling);
            }
        }
        _ => {
            if let Some(cap) = stored.cap_cents
                && stored.claimed_cents + record.amount_cents > cap
            {
                return Err(RejectReason::OverCap);
            }
        }
    }
    Ok(())
}

/// The day the redeemer accepted the claim, as its signed record says, if that is plausible:
/// not before the service month began and not after today (a day of clock skew allowed).
/// Otherwise, and for records without it, today: the issuer's own clock.
pub fn accepted_on(record: &SettlementRecord, today: Day) -> Day {
    let earliest = Day::first_of_month(record.service_month);
    let latest = today.checked_add_days(1).unwrap_or(today);
    record
        .accepted_on
        .map(Day::from)
        .filter(|day| earliest.is_some_and(|first| first <= *day) && *day <= latest)
        .unwrap_or(today)
}

#[cfg(test)]
mod tests {
    //! The decision alone, without a node or a store: every rule against a model of the rules,
    //! for random vouchers, records and days.

    use ed25519_dalek::SigningKey;
    use proptest::prelude::*;
    use schein_proto::v1::{Category, RevocationReason, Scope, SettlementRecord};
    use schein_proto::voucher::new_body;
    use schein_proto::{Day, Serial, SignedVoucher};
    use sha2::Digest;

    use super::*;

    const BASE: i32 = 20_500; // 2026-02-16

    struct Case {
        stored: StoredVoucher,
        record: SettlementRecord,
        category: Category,
        today: Day,
        ceilings: Ceilings,
    }

    #[allow(clippy::too_many_arguments)]
    fn case(
        validity: (i32, i32),
        medication_scope: bool,
        bound: Option<&str>,
        (claimed, medication, cap): (i64, i64, Option<i64>),
        revoked_on: Option<i32>,
        (category, amount, served, accepted, before_revocation, redeemer): (
            Category,
            i64,
            i32,
            i32,
            bool,
            &str,
        ),
        today: i32,
        ceilings: Ceilings,
    ) -> Case {
        let key = SigningKey::from_bytes(&[5; 32]);
        let day = |offset: i32| Day::from_days_since_epoch(BASE + offset);
        let scope: &[Scope] = if medication_scope {
            &[Scope::Medication]
        } else {
            &[]
        };
        let mut body = new_body(
            "leipzig",
            Serial::from_bytes([1; 10]),
            &key.verifying_key(),
            day(validity.0),
            day(validity.1),
            scope,
            cap,
        );
        if let Some(bound) = bound {
            body.emergency = true;
            body.bound_provider = bound.into();
        }
        let signed = SignedVoucher::sign(&body, &key);
        let voucher = signed.decode_own().expect("own voucher");
        let stored = StoredVoucher {
            voucher,
            issued_on: day(validity.0),
            revoked_on: revoked_on.map(day),
            revocation_reason: RevocationReason::Unspecified,
            claimed_cents: claimed,
            medication_cents: medication,
            cap_cents: cap,
            pending_cap_cents: None,
            signed: signed.clone(),
        };
        let record = SettlementRecord {
            amount_cents: amount,
            category: category as i32,
            service_month: day(served).month().expect("a month"),
            redeemer: redeemer.into(),
            voucher_hash: sha2::Sha256::digest(signed.to_bytes()).to_vec(),
            accepted_on: Some(day(accepted).into()),
            served_before_revocation: before_revocation,
            ..Default::default()
        };
        Case {
            stored,
            record,
            category,
            today: day(today),
            ceilings,
        }
    }

    fn decision(c: &Case) -> Result<(), RejectReason> {
        decide(&c.stored, &c.record, c.category, c.today, c.ceilings)
    }

    /// The rules, written out once more as a model.
    fn model(c: &Case) -> Result<(), RejectReason> {
        let v = &c.stored.voucher;
        if let Some(bound) = &v.bound_provider
            && !bound.starts_with(&format!("{}/", c.record.redeemer))
        {
            return Err(RejectReason::NotBoundProvider);
        }
        if let Some(revoked) = c.stored.revoked_on
            && !(c.record.served_before_revocation
                && c.record.service_month <= revoked.month().expect("a month"))
        {
            return Err(RejectReason::Revoked);
        }
        if c.category == Category::Medication && !v.covers(Scope::Medication) {
            return Err(RejectReason::OutOfScope);
        }
        let month = c.record.service_month;
        if month < v.valid_from.month().expect("a month")
            || month > v.valid_until.month().expect("a month")
        {
            return Err(RejectReason::Expired);
        }
        let accepted: Day = c.record.accepted_on.expect("accepted").into();
        let believed = Day::first_of_month(month).expect("a day") <= accepted
            && accepted <= c.today.checked_add_days(1).expect("a day");
        let judged = if believed { accepted } else { c.today };
        if judged > claim_deadline(v.valid_until) {
            return Err(RejectReason::DeadlinePassed);
        }
        if c.record.amount_cents > c.ceilings.per_claim_cents {
            return Err(RejectReason::OverClaimCeiling);
        }
        match c.category {
            Category::Medication => {
                if c.stored.medication_cents + c.record.amount_cents
                    > c.ceilings.medication_per_voucher_cents
                {
                    return Err(RejectReason::OverMedicationCeiling);
                }
            }
            _ => {
                if let Some(cap) = c.stored.cap_cents
                    && c.stored.claimed_cents + c.record.amount_cents > cap
                {
                    return Err(RejectReason::OverCap);
                }
            }
        }
        Ok(())
    }

    const CEILINGS: Ceilings = Ceilings {
        medication_per_voucher_cents: 50_000,
        per_claim_cents: 250_000,
    };

    #[test]
    fn a_voucher_re_signed_under_a_real_serial_is_not_the_stored_one() {
        let mut c = case(
            (0, 90),
            false,
            None,
            (0, 0, Some(50_000)),
            None,
            (Category::Treatment, 466, 10, 10, false, "dresden"),
            10,
            CEILINGS,
        );
        assert_eq!(decision(&c), Ok(()));
        c.record.voucher_hash[0] ^= 1;
        assert_eq!(decision(&c), Err(RejectReason::UnknownVoucher));
    }

    proptest! {
        #[test]
        fn the_decision_follows_the_rules(
            from in 0i32..60,
            length in 0i32..200,
            medication_scope in any::<bool>(),
            bound in prop_oneof![Just(None), Just(Some("dresden/klinikum")), Just(Some("chemnitz/klinikum"))],
            claimed in 0i64..60_000,
            medication in 0i64..60_000,
            cap in prop_oneof![Just(None), (1i64..100_000).prop_map(Some)],
            revoked in prop_oneof![Just(None), (0i32..300).prop_map(Some)],
            medication_claim in any::<bool>(),
            amount in 1i64..300_000,
            served in -30i32..300,
            accepted_after in -40i32..200,
            before_revocation in any::<bool>(),
            today_after in -5i32..200,
        ) {
            let category = if medication_claim { Category::Medication } else { Category::Treatment };
            let accepted = served + accepted_after;
            let c = case(
                (from, from + length),
                medication_scope,
                bound,
                (claimed, medication, cap),
                revoked,
                (category, amount, served, accepted, before_revocation, "dresden"),
                accepted + today_after,
                CEILINGS,
            );
            prop_assert_eq!(decision(&c), model(&c));
        }
    }
}
