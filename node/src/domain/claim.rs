//! Claims at the redeeming node (DESIGN.md, flows 3 and 4): check a provider's bill against the
//! voucher and the issuer's fee schedule, store it durably with its outbox entry, and deliver
//! the signed settlement record to the issuer, now or — if the issuer is down — later, with
//! backoff, until its receipt arrives. The issuer learns only what privacy rule 3 allows.

use std::sync::Arc;
use std::time::Duration;

use schein_proto::error::refusal;
use schein_proto::money::Cents;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::{
    Category, ClaimRecord, ClaimState, ErrorReason, Outcome, ProviderKind, Receipt, RejectReason,
    Scope, SettlementRecord, SubmitClaimRequest,
};
use schein_proto::voucher::claim_deadline;
use schein_proto::{Day, KeyId, ShortCode};
use sha2::Digest;
use tokio::sync::watch;
use tonic::Status;

use crate::domain::verify::{IssuerStatus, Resolved, ResolvedVoucher, resolve};
use crate::fees::CatalogueCategory;
use crate::node::Node;
use crate::pki::Identity;
use crate::roster::Member;
use crate::store::{Ceilings, ClaimKey, DueSettlement, NewClaim, Outgoing, StoreError};

/// Backoff of the outbox: doubling from half a second up to a minute.
const FIRST_BACKOFF_MS: i64 = 500;
const MAX_BACKOFF_MS: i64 = 60_000;
/// How often the outbox looks for due records.
const OUTBOX_TICK: Duration = Duration::from_millis(250);

fn invalid(message: impl Into<String>) -> Status {
    refusal(ErrorReason::InvalidArgument, message)
}

fn not_claimable(message: impl Into<String>) -> Status {
    refusal(ErrorReason::VoucherNotClaimable, message)
}

/// A new id under which the issuer will know a claim: random, so that it reveals nothing of the
/// provider or its own claim id. Stored with the claim; retries reuse the stored one.
fn new_settlement_id() -> String {
    data_encoding::HEXLOWER.encode(schein_proto::Serial::random().as_bytes())
}

/// Longest voucher code accepted in a claim.
const MAX_CODE_LEN: usize = 2048;

fn validate_claim_id(claim_id: &str) -> Result<(), Status> {
    let ok = (1..=64).contains(&claim_id.len())
        && claim_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "a claim id has 1 to 64 letters, digits, '-', '_' or '.'",
        ))
    }
}

/// Submits a provider's claim: validated, stored, and settled at once if the issuer answers.
pub async fn submit(
    node: &Node,
    provider: &Identity,
    request: SubmitClaimRequest,
) -> Result<ClaimRecord, Status> {
    validate_claim_id(&request.claim_id)?;
    if request.code.len() > MAX_CODE_LEN {
        return Err(invalid("the code is far too long to be a voucher code"));
    }
    let kind = ProviderKind::try_from(request.provider_kind)
        .ok()
        .filter(|k| *k != ProviderKind::Unspecified)
        .ok_or_else(|| invalid("say what kind of provider you are (practice, dentist, hospital, pharmacy, interpreter)"))?;
    let category = Category::try_from(request.category)
        .ok()
        .filter(|c| *c != Category::Unspecified)
        .ok_or_else(|| invalid("say whether the claim is for treatment or medication"))?;
    let service_date: Day = request
        .service_date
        .ok_or_else(|| invalid("the claim needs the date of the service"))?
        .into();
    let (_, latest_today) = node.today_range();
    if service_date > latest_today {
        return Err(invalid(format!(
            "the service date {service_date} lies in the future"
        )));
    }
    let resolved = match resolve(node, &request.code).await {
        Resolved::Voucher(resolved) => *resolved,
        Resolved::Invalid(message) => return Err(not_claimable(message)),
        Resolved::Unreachable(message) => {
            return Err(refusal(ErrorReason::PeerUnreachable, message));
        }
    };
    let ResolvedVoucher {
        issuer,
        voucher,
        signed: signed_voucher,
        status,
    } = resolved;
    if service_date < voucher.valid_from || service_date > voucher.valid_until {
        return Err(not_claimable(format!(
            "the voucher is valid from {} to {}; the service on {service_date} is outside",
            voucher.valid_from, voucher.valid_until
        )));
    }
    // The deadline is judged by the day this node accepts the claim, which the record carries:
    // a claim accepted in time is paid even if the issuer is down until after the deadline.
    let accepted_on = Day::today();
    let deadline = claim_deadline(voucher.valid_until);
    if accepted_on > deadline {
        return Err(not_claimable(format!(
            "claims on this voucher had to be made by {deadline} (3 months after it expired)"
        )));
    }
    if category == Category::Medication && !voucher.covers(Scope::Medication) {
        return Err(not_claimable("this voucher does not cover medication"));
    }
    let provider_name = format!("{}/{}", provider.node, provider.name);
    if let Some(bound) = &voucher.bound_provider
        && bound != &provider_name
    {
        return Err(not_claimable(format!(
            "this emergency voucher was issued for {bound}; only that provider may claim on it"
        )));
    }
    if let Some(revoked_on) = status.and_then(|s| s.revoked_on)
        && service_date >= revoked_on
    {
        return Err(not_claimable(format!(
            "the voucher was revoked on {revoked_on}; services from that day on are not paid (services before it are)"
        )));
    }
    let service_month = service_date
        .month()
        .ok_or_else(|| invalid("the service date is out of range"))?;
    if node
        .store
        .pair_closed_for_month(issuer.id(), service_month)?
    {
        return Err(refusal(
            ErrorReason::PeriodClosed,
            format!(
                "the period of {service_date} is closed in clearing between {} and {}; claims for it are no longer accepted",
                node.name,
                issuer.name()
            ),
        ));
    }
    let catalogue_category = match category {
        Category::Medication => CatalogueCategory::Medication,
        _ => CatalogueCategory::Treatment,
    };
    let amount = issuer
        .fee_schedule()
        .check(&request.items, catalogue_category)
        .map_err(|e| refusal(ErrorReason::FeeItem, e.to_string()))?;
    check_ceilings(&issuer, category, amount, status.as_ref())?;

    let settlement_id = new_settlement_id();
    let record = SettlementRecord {
        claim_id: settlement_id.clone(),
        serial: voucher.serial.as_bytes().to_vec(),
        issuer: issuer.id().to_owned(),
        amount_cents: amount,
        category: category as i32,
        service_month,
        redeemer: node.id.clone(),
        key_id: KeyId::of(&node.signing_key.verifying_key()).0,
        voucher_hash: sha2::Sha256::digest(signed_voucher.to_bytes()).to_vec(),
        accepted_on: Some(accepted_on.into()),
        served_before_revocation: false,
    };
    // Whether the service came before a revocation is known only once the issuer answered; a
    // record whose issuer could not be asked is signed at its first delivery.
    let settlement = match status {
        Some(status) => Outgoing::Signed(sign_record(
            node,
            record,
            served_before_revocation(service_date, status.revoked_on),
        )),
        None => Outgoing::Unsigned(record),
    };
    let short_code = issuer
        .entry
        .prefix
        .as_deref()
        .and_then(|p| ShortCode::new(p, voucher.serial).ok())
        .map(|c| c.to_string())
        .unwrap_or_default();

    // What makes two submissions the same claim: voucher, date, kind, category and items.
    let mut fingerprint = sha2::Sha256::new();
    fingerprint.update(voucher.serial.as_bytes());
    fingerprint.update(service_date.days_since_epoch().to_be_bytes());
    fingerprint.update([kind as u8, category as u8]);
    for item in &request.items {
        fingerprint.update(item.fee_code.as_bytes());
        fingerprint.update([0]);
        fingerprint.update(item.count.to_be_bytes());
        fingerprint.update(item.amount_cents.to_be_bytes());
    }
    let duplicate_keys = request
        .items
        .iter()
        .map(|item| {
            let mut key = voucher.serial.as_bytes().to_vec();
            key.extend_from_slice(provider.name.as_bytes());
            key.push(0);
            key.extend_from_slice(&service_date.days_since_epoch().to_be_bytes());
            key.extend_from_slice(item.fee_code.as_bytes());
            key
        })
        .collect();
    let key = ClaimKey::new(&provider.name, &request.claim_id);
    let claim = NewClaim {
        key: key.clone(),
        record: ClaimRecord {
            claim_id: request.claim_id.clone(),
            state: ClaimState::Pending as i32,
            voucher_short_code: short_code,
            issuer: issuer.id().to_owned(),
            service_date: Some(service_date.into()),
            provider_kind: kind as i32,
            category: category as i32,
            items: request.items.clone(),
            amount_cents: amount,
            provider: provider.name.clone(),
            ..Default::default()
        },
        settlement_id,
        settlement,
        fingerprint: fingerprint.finalize().to_vec(),
        duplicate_keys,
    };
    let (record, created) = node.store.submit_claim(claim).await?;
    if created {
        tracing::info!(issuer = issuer.id(), amount_cents = amount, "claim stored");
        tracing::debug!(tag = %node.log_tag(voucher.serial), "claim stored");
    }
    if record.state != ClaimState::Pending as i32 {
        return Ok(record);
    }
    // A retry of a stored claim delivers the record stored with it, not the one made now.
    let (settlement_id, settlement) = node.store.settlement_of(&key)?;
    match deliver(node, &key, &settlement_id, issuer.id(), settlement).await {
        Ok(record) => Ok(record),
        Err(error) => {
            tracing::info!(issuer = issuer.id(), %error, "claim left in the outbox");
            Ok(node.store.claim(&key)?.unwrap_or(record))
        }
    }
}

/// The ceilings the issuer publishes, checked here for a fast answer (the issuer checks again,
/// as the authority): the amount of one claim, and medication per voucher.
fn check_ceilings(
    issuer: &Member,
    category: Category,
    amount: i64,
    status: Option<&IssuerStatus>,
) -> Result<(), Status> {
    let limits = issuer.limits();
    let over = |message: String| refusal(ErrorReason::OverCeiling, message);
    if amount > limits.per_claim_cents {
        return Err(over(format!(
            "{} is more than {} pays for one claim ({}); bill the services in several claims, or ask the clearing office",
            Cents(amount),
            issuer.name(),
            Cents(limits.per_claim_cents)
        )));
    }
    if category == Category::Medication {
        let left = status
            .and_then(|s| s.remaining_medication_cents)
            .unwrap_or(limits.medication_per_voucher_cents);
        if amount > left {
            return Err(over(format!(
                "{} pays at most {} of medication on one voucher; {} is left on this one, not {}",
                issuer.name(),
                Cents(limits.medication_per_voucher_cents),
                Cents(left),
                Cents(amount)
            )));
        }
    }
    Ok(())
}

/// Whether a service on `service_date` came before the voucher's revocation (a service on the
/// day of the revocation does not: only days are known, and the safe side is the issuer's).
fn served_before_revocation(service_date: Day, revoked_on: Option<Day>) -> bool {
    revoked_on.is_none_or(|revoked| service_date < revoked)
}

fn sign_record(node: &Node, record: SettlementRecord, served_before_revocation: bool) -> Vec<u8> {
    let record = SettlementRecord {
        served_before_revocation,
        ..record
    };
    signed::seal(Kind::Settlement, &record, &node.signing_key)
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
        .map_err(|e| DeliveryError::Refused(e.to_string()))?;
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
    Refused(String),
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
    let signed_record_copy = signed_record.clone();
    let signed_receipt = if issuer.id() == node.id {
        let record: SettlementRecord =
            signed::peek(&signed_record).map_err(|e| DeliveryError::Refused(e.to_string()))?;
        settle_here(node, &record)
            .await
            .map_err(|s| DeliveryError::Refused(s.message().to_owned()))?
    } else {
        node.peers.settle(issuer, signed_record).await?
    };
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
    tracing::info!(
        issuer = issuer.id(),
        outcome = Outcome::try_from(receipt.outcome)
            .map(|o| o.as_str_name())
            .unwrap_or("?"),
        ledger_seq = receipt.ledger_seq,
        "claim decided"
    );
    Ok(record)
}

/// Checks a receipt's signature with the issuer's key from the roster, in use today.
pub fn open_receipt(issuer: &Member, signed_receipt: &[u8]) -> Result<Receipt, DeliveryError> {
    let bad = |e: &dyn std::fmt::Display| DeliveryError::BadReceipt(e.to_string());
    let claimed: Receipt = signed::peek(signed_receipt).map_err(|e| bad(&e))?;
    let key = issuer
        .key_in_use(&KeyId(claimed.key_id), Day::today())
        .map_err(|e| bad(&e))?;
    signed::open(Kind::Receipt, signed_receipt, &key.public_key).map_err(|e| bad(&e))
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

/// The issuer's side: decides on a settlement record whose sender has been checked.
pub async fn settle_here(node: &Node, record: &SettlementRecord) -> Result<Vec<u8>, Status> {
    let key = node.signing_key.clone();
    let key_id = KeyId::of(&key.verifying_key()).0;
    let signed_receipt = node
        .store
        .settle(&node.id, record, Day::today(), ceilings(node), |receipt| {
            let receipt = Receipt {
                key_id: key_id.clone(),
                ..receipt.clone()
            };
            signed::seal(Kind::Receipt, &receipt, &key)
        })
        .await?;
    Ok(signed_receipt)
}

/// The issuer's ceilings, from this node's own member entry (what it published).
fn ceilings(node: &Node) -> Ceilings {
    let limits = node.limits();
    Ceilings {
        medication_per_voucher_cents: limits.medication_per_voucher_cents,
        per_claim_cents: limits.per_claim_cents,
    }
}

/// Opens a settlement record sent by `redeemer` with that member's key.
pub fn open_record(redeemer: &Member, signed_record: &[u8]) -> Result<SettlementRecord, Status> {
    let bad = |what: String| refusal(ErrorReason::BadSignature, what);
    let claimed: SettlementRecord = signed::peek(signed_record)
        .map_err(|e| bad(format!("the settlement record cannot be read: {e}")))?;
    let key = redeemer
        .key_in_use(&KeyId(claimed.key_id), Day::today())
        .map_err(|_| bad("the settlement record names a key its sender does not use".into()))?;
    signed::open(Kind::Settlement, signed_record, &key.public_key)
        .map_err(|e| bad(format!("the settlement record is not genuine: {e}")))
}

/// One delivery from the outbox; on failure, the next attempt is put off with backoff.
async fn deliver_due(node: &Node, due: DueSettlement, now_ms: i64) {
    let DueSettlement {
        key,
        settlement_id,
        issuer,
        settlement,
        attempts,
    } = due;
    if let Err(error) = deliver(node, &key, &settlement_id, &issuer, settlement).await {
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
