//! The office's vouchers: issue, revoke, show, list, raise a cap, and the issuer's answer about
//! one of its vouchers to another member. The issuing rules (validity window, the signing key's
//! window, the cap and its second approval, the emergency voucher's bound provider, a fresh
//! serial) live here and only here.

use schein_proto::code::{VoucherCode, prefix_key};
use schein_proto::money::{Cents, MAX_CENTS};
use schein_proto::v1::{
    ApproveCapResponse, ErrorReason, IssueVoucherRequest, ListVouchersRequest,
    ListVouchersResponse, RevocationReason, Scope, VoucherRecord, VoucherState,
    VoucherStatusResponse,
};
use schein_proto::voucher::{MAX_BACKDATE_DAYS, MAX_VALIDITY_DAYS, new_body};
use schein_proto::{Day, FullCode, Serial, SignedVoucher};

use super::{Refusal, page};
use crate::node::Node;
use crate::pki::Identity;
use crate::roster::MemberKind;
use crate::store::{CapApproval, StoreError, StoredVoucher};

/// A default validity that would end sooner than this runs to the end of the next quarter
/// instead: a card issued on the last days of a quarter must still be usable.
const MIN_DEFAULT_VALIDITY_DAYS: i32 = 14;

/// Why an office's request about its vouchers was refused.
#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    #[error("{0}")]
    Invalid(String),
    #[error("the voucher code cannot be read: {0}")]
    MalformedCode(String),
    #[error("this voucher was not issued by {0}; only its issuing office can change it")]
    NotIssuedHere(String),
    #[error("no voucher with this code was issued by this office")]
    UnknownVoucher,
    #[error("this voucher is revoked already")]
    AlreadyRevoked,
    #[error(
        "no provider '{name}' is enrolled at node '{node}': check the name with that node's operator"
    )]
    UnknownProvider { node: String, name: String },
    #[error(
        "{node} could not be asked whether '{name}' is enrolled there ({why}); nothing was issued, try again"
    )]
    ProviderNodeUnreachable {
        node: String,
        name: String,
        why: String,
    },
    #[error(
        "you approved this cap already; a second, different office identity must approve it too"
    )]
    NeedsSecondApproval,
    #[error("this node cannot read its register of identities; tell its operator")]
    Register,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for VoucherError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownVoucher => VoucherError::UnknownVoucher,
            StoreError::AlreadyRevoked => VoucherError::AlreadyRevoked,
            StoreError::NeedsSecondApproval => VoucherError::NeedsSecondApproval,
            StoreError::Settle(error) => VoucherError::Invalid(error.to_string()),
            other => VoucherError::Store(other),
        }
    }
}

impl From<crate::enrolled::RegisterError> for VoucherError {
    fn from(_: crate::enrolled::RegisterError) -> Self {
        VoucherError::Register
    }
}

impl Refusal for VoucherError {
    fn reason(&self) -> ErrorReason {
        match self {
            VoucherError::Invalid(_) => ErrorReason::InvalidArgument,
            VoucherError::MalformedCode(_) => ErrorReason::MalformedCode,
            VoucherError::NotIssuedHere(_) => ErrorReason::NotIssuedHere,
            VoucherError::UnknownVoucher => ErrorReason::UnknownVoucher,
            VoucherError::AlreadyRevoked => ErrorReason::AlreadyRevoked,
            VoucherError::UnknownProvider { .. } => ErrorReason::UnknownProvider,
            VoucherError::ProviderNodeUnreachable { .. } => ErrorReason::PeerUnreachable,
            VoucherError::NeedsSecondApproval => ErrorReason::NeedsSecondApproval,
            VoucherError::Register => ErrorReason::Internal,
            VoucherError::Store(error) => error.reason(),
        }
    }
}

fn invalid(message: impl Into<String>) -> VoucherError {
    VoucherError::Invalid(message.into())
}

/// The serial of one of `node`'s vouchers, from a full or short code (any of its keys, also
/// retired ones: old vouchers stay manageable).
pub fn own_serial(node: &Node, code: &str) -> Result<Serial, VoucherError> {
    let not_here = || VoucherError::NotIssuedHere(node.name.clone());
    let damaged = |error: &dyn std::fmt::Display| VoucherError::MalformedCode(error.to_string());
    match VoucherCode::parse(code) {
        Ok(VoucherCode::Full(FullCode(signed))) => {
            let (issuer, key_id) = signed.claimed_key().map_err(|e| damaged(&e))?;
            if issuer != node.id {
                return Err(not_here());
            }
            let roster = node.roster();
            let key = roster
                .member(&node.id)
                .and_then(|me| me.key(&key_id).ok())
                .ok_or_else(not_here)?;
            match signed.verify(&key.public_key) {
                Ok(voucher) => Ok(voucher.serial),
                Err(schein_proto::VoucherError::BadSignature) => {
                    Err(damaged(&"it was altered (its signature does not match)"))
                }
                Err(other) => Err(damaged(&other)),
            }
        }
        Ok(VoucherCode::Short(short)) => {
            if short.prefix_key() != prefix_key(&node.prefix) {
                return Err(not_here());
            }
            Ok(short.serial())
        }
        Err(error) => Err(damaged(&error)),
    }
}

/// Where a voucher stands today, within the tolerated clock skew.
pub fn state(node: &Node, stored: &StoredVoucher) -> VoucherState {
    let (earliest, latest) = node.today_range();
    if stored.revoked_on.is_some() {
        VoucherState::Revoked
    } else if earliest > stored.voucher.valid_until {
        VoucherState::Expired
    } else if latest < stored.voucher.valid_from {
        VoucherState::NotYetValid
    } else {
        VoucherState::Active
    }
}

/// A stored voucher as its office sees it.
pub fn record(node: &Node, stored: StoredVoucher) -> VoucherRecord {
    let state = state(node, &stored);
    let voucher = &stored.voucher;
    VoucherRecord {
        full_code: FullCode(stored.signed.clone()).to_string(),
        short_code: node.short_code(voucher.serial),
        issuer: voucher.issuer.clone(),
        valid_from: Some(voucher.valid_from.into()),
        valid_until: Some(voucher.valid_until.into()),
        scope: voucher.scope.iter().map(|&s| s as i32).collect(),
        cap_cents: stored.cap_cents,
        state: state as i32,
        issued_on: Some(stored.issued_on.into()),
        revoked_on: stored.revoked_on.map(Into::into),
        revocation_reason: stored.revocation_reason as i32,
        claimed_cents: stored.claimed_cents,
        emergency: voucher.emergency,
        bound_provider: voucher.bound_provider.clone().unwrap_or_default(),
        medication_cents: stored.medication_cents,
        pending_cap_cents: stored.pending_cap_cents,
    }
}

/// The first and last day of a new voucher: as asked, or the defaults, checked against today.
pub fn validity(request: &IssueVoucherRequest, today: Day) -> Result<(Day, Day), VoucherError> {
    let out_of_range = || invalid("the first day of validity is out of range");
    let valid_from = request.valid_from.map(Day::from).unwrap_or(today);
    let valid_until = match request.valid_until {
        Some(day) => Day::from(day),
        None => {
            // The current quarter, or the one the voucher begins in if that is later.
            let start = valid_from.max(today);
            let end = start.end_of_quarter().ok_or_else(out_of_range)?;
            let soon = start
                .checked_add_days(MIN_DEFAULT_VALIDITY_DAYS)
                .ok_or_else(out_of_range)?;
            if end < soon {
                let next_quarter = end.checked_add_days(1).ok_or_else(out_of_range)?;
                next_quarter.end_of_quarter().ok_or_else(out_of_range)?
            } else {
                end
            }
        }
    };
    let earliest = today
        .checked_add_days(-MAX_BACKDATE_DAYS)
        .ok_or_else(|| invalid("today is out of range"))?;
    if valid_from < earliest {
        return Err(invalid(format!(
            "a voucher can begin at most {MAX_BACKDATE_DAYS} days in the past (not {valid_from})"
        )));
    }
    if valid_until < today {
        return Err(invalid(format!(
            "the voucher would have expired already ({valid_until})"
        )));
    }
    if valid_until < valid_from {
        return Err(invalid(format!(
            "the last day of validity ({valid_until}) is before the first ({valid_from})"
        )));
    }
    if valid_until.days_since_epoch() - valid_from.days_since_epoch() >= MAX_VALIDITY_DAYS {
        return Err(invalid(format!(
            "a voucher can be valid for at most {MAX_VALIDITY_DAYS} days"
        )));
    }
    Ok((valid_from, valid_until))
}

/// A voucher's cap as asked or the node's default: within range, and not above the second
/// approval's threshold (a cap that would need two signatures as an approval needs them at issue
/// too).
pub fn cap(
    asked: Option<i64>,
    default_cents: i64,
    second_approval_above: i64,
) -> Result<i64, VoucherError> {
    let cap_cents = asked.unwrap_or(default_cents);
    if cap_cents > second_approval_above && cap_cents > default_cents {
        return Err(invalid(format!(
            "a cap above {} needs two office identities: issue the voucher with a lower cap, then approve the higher one",
            Cents(second_approval_above)
        )));
    }
    if !(1..=MAX_CENTS).contains(&cap_cents) {
        return Err(invalid(format!(
            "the cap must be between 1 cent and {}",
            Cents(MAX_CENTS)
        )));
    }
    Ok(cap_cents)
}

/// Checks that one of the node's signing keys signs on `from` (today: the issue day).
fn key_window_fits(node: &Node, from: Day) -> Result<(), VoucherError> {
    let roster = node.roster();
    let me = roster.member(&node.id);
    if me.and_then(|me| me.signing_key_on(from)).is_some() {
        return Ok(());
    }
    let windows = me
        .map(|me| {
            me.signing_keys
                .iter()
                .map(|k| {
                    let last = k
                        .valid_until
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "open".into());
                    format!("{} to {last}", k.valid_from)
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Err(invalid(format!(
        "no signing key of this node signs on {from} (its keys sign {windows}): the operator must rotate the key (`schein-node key rotate`)"
    )))
}

/// An emergency voucher names its provider, and only an emergency voucher does; the provider
/// must be enrolled at the node it names (asked of that node), or the voucher could never be
/// claimed.
async fn bound_provider(
    node: &Node,
    request: &IssueVoucherRequest,
) -> Result<String, VoucherError> {
    let bound = request.bound_provider.trim().to_owned();
    match (request.emergency, bound.is_empty()) {
        (true, true) => {
            return Err(invalid(
                "an emergency voucher is issued for one provider: name it as node/name, e.g. leipzig/klinikum-sued",
            ));
        }
        (false, false) => {
            return Err(invalid(
                "only emergency vouchers are bound to a provider: add emergency, or leave the provider out",
            ));
        }
        (false, true) => return Ok(bound),
        (true, false) => {}
    }
    let Some((node_id, name)) = bound.split_once('/').filter(|(node, name)| {
        crate::pki::validate_node_id(node).is_ok() && crate::pki::validate_name(name).is_ok()
    }) else {
        return Err(invalid(
            "name the provider as node/name, e.g. leipzig/klinikum-sued",
        ));
    };
    let unknown = || VoucherError::UnknownProvider {
        node: node_id.to_owned(),
        name: name.to_owned(),
    };
    let known = if node_id == node.id {
        super::members::provider_known(node, name)?
    } else {
        let roster = node.roster();
        let member = roster
            .member(node_id)
            .filter(|m| m.entry.kind == MemberKind::Node)
            .ok_or_else(unknown)?;
        node.peers
            .provider_known(member, name)
            .await
            .map_err(|error| VoucherError::ProviderNodeUnreachable {
                node: member.name().to_owned(),
                name: name.to_owned(),
                why: error.to_string(),
            })?
    };
    if known { Ok(bound) } else { Err(unknown()) }
}

/// Issues a voucher for the office identity `office`: draws a serial, signs, stores.
pub async fn issue(
    node: &Node,
    office: &Identity,
    request: &IssueVoucherRequest,
) -> Result<VoucherRecord, VoucherError> {
    let today = Day::today();
    let (valid_from, valid_until) = validity(request, today)?;
    key_window_fits(node, today)?;
    let cap_cents = cap(
        request.cap_cents,
        node.default_cap_cents,
        node.second_approval_above_cents,
    )?;
    let bound_provider = bound_provider(node, request).await?;
    let scope = request
        .scope
        .iter()
        .map(|&s| Scope::try_from(s).map_err(|_| invalid(format!("unknown scope {s}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let key = &node.signing_key_on(today);
    // 80 random bits collide practically never; retry anyway rather than fail.
    for _ in 0..3 {
        let serial = Serial::random();
        let mut body = new_body(
            &node.id,
            serial,
            &key.verifying_key(),
            valid_from,
            valid_until,
            &scope,
            Some(cap_cents),
        );
        body.emergency = request.emergency;
        body.bound_provider = bound_provider.clone();
        body.issued_on = Some(today.into());
        let signed = SignedVoucher::sign(&body, key);
        match node.store.issue(&signed, today).await {
            Ok(()) => {
                tracing::info!(office = %office.name, %valid_until, cap_cents, "voucher issued");
                tracing::debug!(tag = %node.log_tag(serial), "voucher issued");
                let stored = node
                    .store
                    .voucher(serial)?
                    .ok_or(VoucherError::UnknownVoucher)?;
                return Ok(record(node, stored));
            }
            Err(StoreError::SerialTaken) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(StoreError::SerialTaken.into())
}

/// Revokes one of the node's vouchers (lost, stolen, issued in error, replaced) from today on.
pub async fn revoke(
    node: &Node,
    office: &Identity,
    code: &str,
    reason: i32,
) -> Result<VoucherRecord, VoucherError> {
    let reason = RevocationReason::try_from(reason)
        .ok()
        .filter(|r| *r != RevocationReason::Unspecified)
        .ok_or_else(|| {
            invalid("say why the voucher is revoked: lost, stolen, issued in error or replaced")
        })?;
    let serial = own_serial(node, code)?;
    let stored = node.store.revoke(serial, reason, Day::today()).await?;
    tracing::info!(office = %office.name, reason = reason.as_str_name(), "voucher revoked");
    tracing::debug!(tag = %node.log_tag(serial), "voucher revoked");
    Ok(record(node, stored))
}

/// One of the node's vouchers.
pub fn show(node: &Node, code: &str) -> Result<VoucherRecord, VoucherError> {
    let serial = own_serial(node, code)?;
    let stored = node
        .store
        .voucher(serial)?
        .ok_or(VoucherError::UnknownVoucher)?;
    Ok(record(node, stored))
}

/// A page of the node's vouchers, newest first, in one state or all.
pub fn list(
    node: &Node,
    request: &ListVouchersRequest,
) -> Result<ListVouchersResponse, VoucherError> {
    let limit = page::size(request.limit);
    let after = page::decode(&request.page_token).map_err(|e| invalid(e.to_string()))?;
    let wanted =
        VoucherState::try_from(request.state).map_err(|_| invalid("unknown voucher state"))?;
    let (found, next) = node.store.list(after, limit, |stored| {
        wanted == VoucherState::Unspecified || state(node, stored) == wanted
    })?;
    Ok(ListVouchersResponse {
        vouchers: found.into_iter().map(|v| record(node, v)).collect(),
        next_page_token: page::encode(next),
    })
}

/// The node's vouchers whose raised cap waits for a second office identity (at most a page,
/// newest first).
pub fn pending_caps(node: &Node) -> Result<Vec<VoucherRecord>, VoucherError> {
    let (found, _) = node.store.list(None, page::size(0) * 4, |stored| {
        stored.pending_cap_cents.is_some()
    })?;
    Ok(found.into_iter().map(|v| record(node, v)).collect())
}

/// One office identity's approval of a higher cap: at once up to the node's threshold, above it
/// once a second, different identity approves the same amount.
pub async fn approve_cap(
    node: &Node,
    office: &Identity,
    code: &str,
    new_cap_cents: i64,
) -> Result<ApproveCapResponse, VoucherError> {
    if !(1..=MAX_CENTS).contains(&new_cap_cents) {
        return Err(invalid("the new cap is out of range"));
    }
    let serial = own_serial(node, code)?;
    let threshold = node.second_approval_above_cents;
    let approval = node
        .store
        .approve_cap(serial, new_cap_cents, &office.name, threshold)
        .await?;
    let new_cap = Cents(new_cap_cents);
    let (applied, stored, message) = match approval {
        CapApproval::Applied(stored) => {
            tracing::info!(office = %office.name, new_cap_cents, "cap raised");
            tracing::debug!(tag = %node.log_tag(serial), "cap raised");
            (true, stored, format!("The cap is now {new_cap}."))
        }
        CapApproval::Pending(stored) => (
            false,
            stored,
            format!(
                "Recorded. A cap above {} needs a second office identity: another colleague approves {new_cap} the same way.",
                Cents(threshold)
            ),
        ),
    };
    Ok(ApproveCapResponse {
        voucher: Some(record(node, stored)),
        applied,
        message,
    })
}

/// The node's word as issuer on the vouchers a member node `peer` asks about (up to
/// [`super::verify::MAX_BATCH`] serials), in the order asked.
pub fn statuses(
    node: &Node,
    peer: &Identity,
    serials: &[Vec<u8>],
) -> Result<Vec<VoucherStatusResponse>, VoucherError> {
    let most = super::verify::MAX_BATCH;
    if serials.len() > most {
        return Err(invalid(format!(
            "at most {most} serials per request, not {}",
            serials.len()
        )));
    }
    let statuses = serials
        .iter()
        .map(|bytes| {
            let serial = Serial::from_slice(bytes).map_err(|_| invalid("a serial has 10 bytes"))?;
            let status = status_of(node, serial)?;
            tracing::debug!(tag = %node.log_tag(serial), known = status.known, "voucher status asked");
            Ok(status)
        })
        .collect::<Result<Vec<_>, VoucherError>>()?;
    let known = statuses.iter().filter(|s| s.known).count();
    tracing::info!(peer = %peer.node, asked = statuses.len(), known, "voucher statuses asked");
    Ok(statuses)
}

/// The node's word as issuer on `serial`, for another member.
pub fn status_of(node: &Node, serial: Serial) -> Result<VoucherStatusResponse, StoreError> {
    Ok(match node.store.voucher(serial)? {
        Some(stored) => VoucherStatusResponse {
            known: true,
            signed_voucher: stored.signed.to_bytes(),
            revoked: stored.revoked_on.is_some(),
            remaining_cap_cents: stored.remaining_cap_cents(),
            revoked_on: stored.revoked_on.map(Into::into),
            remaining_medication_cents: stored
                .remaining_medication_cents(node.limits().medication_per_voucher_cents),
        },
        None => VoucherStatusResponse::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Day {
        Day::parse(text).unwrap()
    }

    fn request(from: Option<&str>, until: Option<&str>) -> IssueVoucherRequest {
        IssueVoucherRequest {
            valid_from: from.map(|d| day(d).into()),
            valid_until: until.map(|d| day(d).into()),
            ..Default::default()
        }
    }

    #[test]
    fn default_validity_runs_to_the_quarters_end_or_the_next_ones() {
        let today = day("2026-11-30");
        assert_eq!(
            validity(&request(None, None), today).unwrap(),
            (today, day("2026-12-31"))
        );
        let late = day("2026-12-20");
        assert_eq!(
            validity(&request(None, None), late).unwrap(),
            (late, day("2027-03-31")),
            "fewer than 14 days left: the next quarter too"
        );
        assert!(
            validity(&request(Some("2026-10-01"), None), today).is_err(),
            "backdated too far"
        );
        assert!(
            validity(&request(None, Some("2026-11-29")), today).is_err(),
            "expired"
        );
        assert!(
            validity(&request(None, Some("2027-12-31")), today).is_err(),
            "over a year"
        );
    }

    #[test]
    fn caps_above_the_second_approval_need_it_at_issue_too() {
        assert_eq!(cap(None, 50_000, 100_000).unwrap(), 50_000);
        assert_eq!(cap(Some(80_000), 50_000, 100_000).unwrap(), 80_000);
        assert!(cap(Some(100_001), 50_000, 100_000).is_err());
        assert!(cap(Some(0), 50_000, 100_000).is_err());
        assert!(cap(Some(-5), 50_000, 100_000).is_err());
    }
}
