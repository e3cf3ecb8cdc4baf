//! Claims at the redeeming node (DESIGN.md, flows 3 and 4): check a provider's bill against the
//! voucher and the issuer's fee schedule and ceilings, store it durably with its outbox entry,
//! and hand it to the [`super::outbox`] for delivery, at once or — if the issuer is down —
//! later. The issuer learns only what privacy rule 3 allows. Also the claim's status, the
//! provider's list of claims, and the office's decision on claims held as possible duplicates.

use schein_proto::money::Cents;
use schein_proto::signed::{self, Kind};
use schein_proto::v1::{
    Category, ClaimRecord, ClaimState, ErrorReason, ListClaimsRequest, ListClaimsResponse,
    ProviderKind, Scope, SettlementRecord, SubmitClaimRequest,
};
use schein_proto::voucher::claim_deadline;
use schein_proto::{Day, KeyId};
use sha2::Digest;

use super::outbox::deliver;
use super::verify::{IssuerStatus, Resolved, ResolvedVoucher, resolve};
use super::{Refusal, page};
use crate::fees::{CatalogueCategory, FeeError};
use crate::node::Node;
use crate::pki::Identity;
use crate::roster::Member;
use crate::store::{ClaimKey, NewClaim, Outgoing, StoreError};

/// Why a claim was refused before it was stored (nothing was), or a request about claims.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotClaimable(String),
    #[error("{0}")]
    IssuerUnreachable(String),
    #[error("{0}")]
    PeriodClosed(String),
    #[error(transparent)]
    FeeItem(FeeError),
    #[error("{0}")]
    OverCeiling(String),
    #[error("this claim id was used before for a different claim; use a new claim id")]
    ClaimIdReused,
    #[error("there is no claim with this id")]
    UnknownClaim,
    #[error("this claim is not held for confirmation")]
    NotHeld,
    #[error(
        "your practice has submitted {0} new claims today, the most this node accepts from one provider in a day; submit the others tomorrow, or ask your clearing office"
    )]
    TooMany(u32),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ClaimError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::ClaimIdReused => ClaimError::ClaimIdReused,
            StoreError::UnknownClaim => ClaimError::UnknownClaim,
            StoreError::NotHeld => ClaimError::NotHeld,
            other => ClaimError::Store(other),
        }
    }
}

impl Refusal for ClaimError {
    fn reason(&self) -> ErrorReason {
        match self {
            ClaimError::Invalid(_) | ClaimError::NotHeld => ErrorReason::InvalidArgument,
            ClaimError::NotClaimable(_) => ErrorReason::VoucherNotClaimable,
            ClaimError::IssuerUnreachable(_) => ErrorReason::PeerUnreachable,
            ClaimError::PeriodClosed(_) => ErrorReason::PeriodClosed,
            ClaimError::FeeItem(_) => ErrorReason::FeeItem,
            ClaimError::OverCeiling(_) => ErrorReason::OverCeiling,
            ClaimError::ClaimIdReused => ErrorReason::ClaimIdReused,
            ClaimError::UnknownClaim => ErrorReason::UnknownClaim,
            ClaimError::TooMany(_) => ErrorReason::TooMany,
            ClaimError::Store(error) => error.reason(),
        }
    }
}

fn invalid(message: impl Into<String>) -> ClaimError {
    ClaimError::Invalid(message.into())
}

fn not_claimable(message: impl Into<String>) -> ClaimError {
    ClaimError::NotClaimable(message.into())
}

/// A new id under which the issuer will know a claim: random, so that it reveals nothing of the
/// provider or its own claim id. Stored with the claim; retries reuse the stored one.
fn new_settlement_id() -> String {
    data_encoding::HEXLOWER.encode(schein_proto::Serial::random().as_bytes())
}

/// Longest voucher code accepted in a claim.
const MAX_CODE_LEN: usize = 2048;

fn validate_claim_id(claim_id: &str) -> Result<(), ClaimError> {
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
) -> Result<ClaimRecord, ClaimError> {
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
        Resolved::Unreachable(message) => return Err(ClaimError::IssuerUnreachable(message)),
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
        return Err(ClaimError::PeriodClosed(format!(
            "the period of {service_date} is closed in clearing between {} and {}; claims for it are no longer accepted",
            node.name,
            issuer.name()
        )));
    }
    let catalogue_category = match category {
        Category::Medication => CatalogueCategory::Medication,
        _ => CatalogueCategory::Treatment,
    };
    let amount = issuer
        .fee_schedule()
        .check(&request.items, catalogue_category)
        .map_err(ClaimError::FeeItem)?;
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
        key_id: KeyId::of(&node.signing_key().verifying_key()).0,
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
    let short_code = issuer.short_code(voucher.serial);

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
    // Checked before storing, counted once stored: a retry of a stored claim is always
    // answered. Concurrent submissions may pass the check together, a few over the limit.
    let today = Day::today();
    let quota_holder = format!("{}/{}", provider.node, provider.name);
    if node.store.claim(&key)?.is_none() && node.claims_per_provider.exhausted(&quota_holder, today)
    {
        tracing::warn!("refused: a provider's claims for today are used up");
        return Err(ClaimError::TooMany(node.claims_per_provider.limit()));
    }
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
        node.claims_per_provider.admit(&quota_holder, today);
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
) -> Result<(), ClaimError> {
    let limits = issuer.limits();
    let over = ClaimError::OverCeiling;
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
pub(crate) fn served_before_revocation(service_date: Day, revoked_on: Option<Day>) -> bool {
    revoked_on.is_none_or(|revoked| service_date < revoked)
}

pub(crate) fn sign_record(
    node: &Node,
    record: SettlementRecord,
    served_before_revocation: bool,
) -> Vec<u8> {
    let record = SettlementRecord {
        served_before_revocation,
        ..record
    };
    signed::seal(Kind::Settlement, &record, &node.signing_key())
}

/// One of `provider`'s claims.
pub fn status(node: &Node, provider: &Identity, claim_id: &str) -> Result<ClaimRecord, ClaimError> {
    let key = ClaimKey::new(&provider.name, claim_id);
    node.store.claim(&key)?.ok_or(ClaimError::UnknownClaim)
}

/// A page of this node's claims that `keep` accepts, newest first.
fn list(
    node: &Node,
    request: &ListClaimsRequest,
    keep: impl Fn(&ClaimRecord) -> bool,
) -> Result<ListClaimsResponse, ClaimError> {
    let after = page::decode(&request.page_token).map_err(|e| invalid(e.to_string()))?;
    let (claims, next) = node
        .store
        .list_claims(after, page::size(request.limit), keep)?;
    Ok(ListClaimsResponse {
        claims,
        next_page_token: page::encode(next),
    })
}

/// A page of `provider`'s own claims (only those still pending, if asked).
pub fn list_own(
    node: &Node,
    provider: &Identity,
    request: &ListClaimsRequest,
) -> Result<ListClaimsResponse, ClaimError> {
    list(node, request, |claim| {
        claim.provider == provider.name
            && (!request.pending_only || claim.state == ClaimState::Pending as i32)
    })
}

/// The claims of this node's providers still waiting for their receipt (at most a page).
pub fn list_pending(node: &Node) -> Result<Vec<ClaimRecord>, ClaimError> {
    let request = ListClaimsRequest {
        pending_only: true,
        limit: 1000,
        ..Default::default()
    };
    list(node, &request, |claim| {
        claim.state == ClaimState::Pending as i32
    })
    .map(|page| page.claims)
}

/// A page of the claims of this node's providers held as possible duplicates; or, if the
/// request asks for them, of those whose settlement record the issuer refused for good.
pub fn list_held(
    node: &Node,
    request: &ListClaimsRequest,
) -> Result<ListClaimsResponse, ClaimError> {
    if request.undeliverable_only {
        return list_undeliverable(node, request);
    }
    list(node, request, |claim| {
        claim.state == ClaimState::Held as i32
    })
}

/// A page of the claims that ended undeliverable; the page token is the last claim key, in hex.
fn list_undeliverable(
    node: &Node,
    request: &ListClaimsRequest,
) -> Result<ListClaimsResponse, ClaimError> {
    let after = match request.page_token.as_str() {
        "" => None,
        token => Some(
            (0..token.len())
                .step_by(2)
                .map(|i| {
                    token
                        .get(i..i + 2)
                        .and_then(|b| u8::from_str_radix(b, 16).ok())
                })
                .collect::<Option<Vec<u8>>>()
                .ok_or_else(|| invalid("the page token is not one this node gave"))?,
        ),
    };
    let (claims, next) = node
        .store
        .list_undeliverable(after.as_deref(), page::size(request.limit))?;
    Ok(ListClaimsResponse {
        claims,
        next_page_token: next
            .map(|key| key.iter().map(|b| format!("{b:02x}")).collect())
            .unwrap_or_default(),
    })
}

/// The office's decision on a held claim: released for settlement (delivered at once if the
/// issuer answers), or rejected as a duplicate.
pub async fn decide_held(
    node: &Node,
    office: &Identity,
    provider: &str,
    claim_id: &str,
    release: bool,
) -> Result<ClaimRecord, ClaimError> {
    let key = ClaimKey::new(provider, claim_id);
    let record = node.store.decide_held(&key, release).await?;
    tracing::info!(office = %office.name, release, "held claim decided");
    if record.state == ClaimState::Pending as i32 {
        let (settlement_id, settlement) = node.store.settlement_of(&key)?;
        if let Ok(settled) = deliver(node, &key, &settlement_id, &record.issuer, settlement).await {
            return Ok(settled);
        }
    }
    Ok(record)
}
