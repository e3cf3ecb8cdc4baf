//! The outbox (DESIGN.md, flow 4): settlement records on their way from this node, the
//! redeemer, to their issuers. A record is delivered at once when its claim comes in and, if the
//! issuer cannot be reached, again with backoff until its receipt arrives: at-least-once delivery
//! plus the issuer's idempotent settle gives an exactly-once effect. A receipt is checked with the
//! issuer's key and against the record sent before it is stored.

use std::sync::Arc;
use std::time::Duration;

use schein_proto::Day;
use schein_proto::money::Cents;
use schein_proto::signed;
use schein_proto::v1::{ClaimRecord, Outcome, Receipt, RejectReason, SettlementRecord};
use tokio::sync::watch;

use super::claim::{served_before_revocation, sign_record};
use super::settle::{SettleError, settle_own_claim};
use crate::node::Node;
use crate::roster::Member;
use crate::store::{ClaimKey, DueSettlement, Outgoing, StoreError};

/// Backoff of the outbox: doubling from half a second up to a minute.
const FIRST_BACKOFF_MS: i64 = 500;
const MAX_BACKOFF_MS: i64 = 60_000;
/// How often the outbox looks for due records.
const OUTBOX_TICK: Duration = Duration::from_millis(250);

/// Why a settlement record was not delivered; it stays in the outbox.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("issuer '{0}' is not in the roster")]
    UnknownIssuer(String),
    #[error(transparent)]
    Peer(#[from] crate::peers::PeerError),
    #[error("the issuer's receipt is not valid: {0}")]
    BadReceipt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the issuer refused the record: {0}")]
    Refused(#[from] SettleError),
    #[error("issuer '{0}' could not be asked about the voucher before the record is signed")]
    Unasked(String),
}

/// Sends one settlement record to its issuer (or settles it here if this node is the issuer),
/// checks the receipt, and records it.
pub async fn deliver(
    node: &Node,
    key: &ClaimKey,
    settlement_id: &str,
    issuer_id: &str,
    settlement: Outgoing,
) -> Result<ClaimRecord, DeliveryError> {
    let roster = node.roster();
    let issuer = roster
        .member(issuer_id)
        .ok_or_else(|| DeliveryError::UnknownIssuer(issuer_id.to_owned()))?;
    let signed_record = signed_settlement(node, key, issuer, settlement).await?;
    if issuer.id() == node.id {
        // This node is the issuer: the decision and the receipt go into one transaction.
        let record: SettlementRecord = signed::peek(&signed_record)
            .map_err(|e| DeliveryError::BadReceipt(format!("the own record: {e}")))?;
        let describe = {
            let issuer = issuer.clone();
            move |receipt: &Receipt| receipt_message(&issuer, receipt)
        };
        let (signed_receipt, claim) = settle_own_claim(node, &record, key, describe).await?;
        // Made by this node in that transaction: no signature to check.
        let receipt: Receipt = signed::peek(&signed_receipt)
            .map_err(|e| DeliveryError::BadReceipt(format!("the own receipt: {e}")))?;
        log_decided(issuer, &receipt);
        return Ok(claim);
    }
    let signed_record_copy = signed_record.clone();
    let signed_receipt = node.peers.settle(issuer, signed_record).await?;
    let receipt = open_receipt(issuer, &signed_receipt)?;
    let sent: SettlementRecord =
        signed::peek(&signed_record_copy).map_err(|e| DeliveryError::BadReceipt(e.to_string()))?;
    let matches = receipt.claim_id == settlement_id
        && receipt.redeemer == node.id
        && receipt.issuer == issuer.id()
        && receipt.serial == sent.serial
        && receipt.amount_cents == sent.amount_cents
        && receipt.category == sent.category
        && receipt.service_month == sent.service_month;
    if !matches {
        return Err(DeliveryError::BadReceipt(
            "it does not match the record sent".into(),
        ));
    }
    let message = receipt_message(issuer, &receipt);
    let record = node
        .store
        .finish_claim(key, &signed_receipt, &receipt, message)
        .await?;
    log_decided(issuer, &receipt);
    Ok(record)
}

fn log_decided(issuer: &Member, receipt: &Receipt) {
    tracing::info!(
        issuer = issuer.id(),
        outcome = Outcome::try_from(receipt.outcome)
            .map(|o| o.as_str_name())
            .unwrap_or("?"),
        ledger_seq = receipt.ledger_seq,
        "claim decided"
    );
}

/// Checks a receipt's signature with the issuer's key from the roster, in use today.
pub fn open_receipt(issuer: &Member, signed_receipt: &[u8]) -> Result<Receipt, DeliveryError> {
    issuer
        .open(signed_receipt, Day::today())
        .map_err(|e| DeliveryError::BadReceipt(e.to_string()))
}

fn receipt_message(issuer: &Member, receipt: &Receipt) -> String {
    let left = receipt
        .remaining_cap_cents
        .map(|c| format!(" {} left under the voucher's cap.", Cents(c)))
        .unwrap_or_default();
    if receipt.outcome == Outcome::Accepted as i32 {
        return format!(
            "Settled: {} will pay {}.{left}",
            issuer.name(),
            Cents(receipt.amount_cents)
        );
    }
    let why = match RejectReason::try_from(receipt.reason).unwrap_or(RejectReason::Unspecified) {
        RejectReason::UnknownVoucher => "the issuing office has no record of this voucher".into(),
        RejectReason::Revoked => "the voucher was revoked".into(),
        RejectReason::Expired => "the service month lies outside the voucher's validity".into(),
        RejectReason::DeadlinePassed => {
            "the claim came later than 3 months after the voucher expired".into()
        }
        RejectReason::OverCap => format!(
            "it would exceed the voucher's cap; only {} is left. The issuing office can approve a higher cap",
            Cents(receipt.remaining_cap_cents.unwrap_or(0))
        ),
        RejectReason::Duplicate => "it duplicates an earlier claim".into(),
        RejectReason::OverMedicationCeiling => {
            "it would exceed what the issuing office pays for medication on one voucher".into()
        }
        RejectReason::OverClaimCeiling => {
            "it is larger than the issuing office pays for one claim".into()
        }
        RejectReason::NotBoundProvider => {
            "the emergency voucher was issued for a provider of another city".into()
        }
        RejectReason::OutOfScope => "the voucher does not cover this kind of care".into(),
        RejectReason::PeriodClosed => {
            "the period of the service month is closed in clearing".into()
        }
        RejectReason::Unspecified => "no reason given".into(),
    };
    format!("Rejected by {}: {why}.", issuer.name())
}

impl DeliveryError {
    /// Why the issuer refused the record for good, if it did: it would refuse the same bytes
    /// again (a record it cannot read, whose signature fails, that is not the sender's, or whose
    /// claim id it holds for another claim). Everything else — an issuer that is down, busy, over
    /// its daily quota, or that does not know this node yet — may pass later, and is retried.
    pub fn permanent(&self) -> Option<String> {
        use schein_proto::v1::ErrorReason;
        match self {
            DeliveryError::Peer(crate::peers::PeerError::Call { status, .. }) => {
                match schein_proto::error::reason_of(status) {
                    Some(
                        ErrorReason::InvalidArgument
                        | ErrorReason::BadSignature
                        | ErrorReason::WrongNode
                        | ErrorReason::ClaimIdReused,
                    ) => Some(status.message().to_owned()),
                    _ => None,
                }
            }
            DeliveryError::Refused(
                refusal @ (SettleError::Invalid(_)
                | SettleError::NotGenuine(_)
                | SettleError::OtherNodesRecord
                | SettleError::ClaimIdReused),
            ) => Some(refusal.to_string()),
            _ => None,
        }
    }
}

/// One delivery from the outbox; a record refused for good ends undeliverable, any other
/// failure puts the next attempt off with backoff.
async fn deliver_due(node: &Node, due: DueSettlement, now_ms: i64) {
    let DueSettlement {
        key,
        settlement_id,
        issuer,
        settlement,
        attempts,
    } = due;
    if let Err(error) = deliver(node, &key, &settlement_id, &issuer, settlement).await {
        if let Some(reason) = error.permanent() {
            tracing::warn!(%issuer, %error, "settlement record refused by the issuer; not sent again");
            if let Err(error) = node.store.refuse_delivery(&key, &reason).await {
                tracing::error!(%error, "recording an undeliverable claim failed");
            }
            return;
        }
        let attempts = attempts.saturating_add(1);
        let backoff = FIRST_BACKOFF_MS
            .saturating_mul(1_i64 << attempts.min(10))
            .min(MAX_BACKOFF_MS);
        tracing::info!(%issuer, attempts, backoff_ms = backoff, %error, "settlement deferred");
        if let Err(error) = node
            .store
            .retry_later(&settlement_id, attempts, now_ms + backoff)
        {
            tracing::error!(%error, "updating the outbox failed");
        }
    }
}

/// Delivers what is due in the outbox until `stop` turns true.
pub async fn run_outbox(node: Arc<Node>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(OUTBOX_TICK) => {}
        }
        if *stop.borrow() {
            break;
        }
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
        let due = match node.store.due_settlements(now_ms, 32) {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "reading the outbox failed");
                continue;
            }
        };
        // Concurrently, so that one unreachable issuer does not hold up the others.
        let deliveries = due.into_iter().map(|due| deliver_due(&node, due, now_ms));
        futures::future::join_all(deliveries).await;
    }
}

/// The signed form of a claim's record: as stored, or — for a claim whose issuer could not be
/// asked when it came in — signed now that the issuer says whether and since when the voucher
/// is revoked, and stored before it is sent.
async fn signed_settlement(
    node: &Node,
    key: &ClaimKey,
    issuer: &Member,
    settlement: Outgoing,
) -> Result<Vec<u8>, DeliveryError> {
    let record = match settlement {
        Outgoing::Signed(bytes) => return Ok(bytes),
        Outgoing::Unsigned(record) => record,
    };
    let serial = schein_proto::Serial::from_slice(&record.serial)
        .map_err(|_| StoreError::Corrupt("a stored record without a serial".into()))?;
    let status = crate::domain::verify::issuer_status(node, issuer, serial)
        .await
        .ok_or_else(|| DeliveryError::Unasked(issuer.id().to_owned()))?;
    let service_date = node
        .store
        .claim(key)?
        .and_then(|claim| claim.service_date)
        .map(Day::from)
        .ok_or(StoreError::UnknownClaim)?;
    let signed = sign_record(
        node,
        record,
        served_before_revocation(service_date, status.revoked_on),
    );
    Ok(node.store.sign_settlement(key, signed).await?)
}

#[cfg(test)]
mod tests {
    use schein_proto::error::refusal;
    use schein_proto::v1::ErrorReason;

    use super::*;
    use crate::peers::PeerError;

    fn refused(reason: ErrorReason) -> DeliveryError {
        DeliveryError::Peer(PeerError::Call {
            member: "leipzig".into(),
            status: Box::new(refusal(reason, "why")),
        })
    }

    /// Only what the issuer would refuse again, byte for byte, ends a claim; an issuer that is
    /// down, busy, over its quota or does not know this node yet is asked again.
    #[test]
    fn only_refusals_of_the_record_itself_are_final() {
        for reason in [
            ErrorReason::InvalidArgument,
            ErrorReason::BadSignature,
            ErrorReason::WrongNode,
            ErrorReason::ClaimIdReused,
        ] {
            assert_eq!(
                refused(reason).permanent().as_deref(),
                Some("why"),
                "{reason:?}"
            );
        }
        for reason in [
            ErrorReason::TooMany,
            ErrorReason::PeerUnreachable,
            ErrorReason::UnknownIdentity,
            ErrorReason::Storage,
            ErrorReason::Internal,
            ErrorReason::WireVersion,
        ] {
            assert_eq!(refused(reason).permanent(), None, "{reason:?}");
        }
        let down = DeliveryError::Peer(PeerError::Call {
            member: "leipzig".into(),
            status: Box::new(tonic::Status::unavailable("connection refused")),
        });
        assert_eq!(down.permanent(), None);
        assert_eq!(DeliveryError::UnknownIssuer("x".into()).permanent(), None);
        assert!(
            DeliveryError::Refused(SettleError::ClaimIdReused)
                .permanent()
                .is_some()
        );
        assert_eq!(
            DeliveryError::Refused(SettleError::TooMany("records", 1_000)).permanent(),
            None
        );
    }
}
