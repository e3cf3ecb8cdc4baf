//! The issuer's side of settlement (DESIGN.md, flow 4): a signed settlement record from a member
//! is opened with that member's key and decided on against the voucher as this node stored it.
//! The decision is the pure function [`decide`], which the store calls inside the transaction
//! that records it; the store answers a repeated record with the original receipt.

use schein_proto::v1::{Category, ErrorReason, Receipt, RejectReason, Scope, SettlementRecord};
use schein_proto::voucher::claim_deadline;
use schein_proto::{Day, KeyId};
use sha2::Digest;

use super::Refusal;
use crate::node::Node;
use crate::pki::Identity;
use crate::store::{StoreError, StoredVoucher};

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
    settle_here(node, &record).await
}

/// Decides on a record whose sender has been checked (or this node's own, as its own issuer).
pub async fn settle_here(node: &Node, record: &SettlementRecord) -> Result<Vec<u8>, SettleError> {
    let key = node.signing_key.clone();
    let key_id = KeyId::of(&key.verifying_key()).0;
    let signed_receipt = node
        .store
        .settle(
            &node.id,
            record,
            Day::today(),
            Ceilings::of(node),
            |receipt| {
                let receipt = Receipt {
                    key_id: key_id.clone(),
                    ..receipt.clone()
                };
                schein_proto::signed::seal(schein_proto::signed::Kind::Receipt, &receipt, &key)
            },
        )
        .await?;
    Ok(signed_receipt)
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
