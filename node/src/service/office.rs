//! The office service: issue, revoke, show and list this node's vouchers. Only office staff of
//! this node may call it.

use std::sync::Arc;

use schein_proto::code::{VoucherCode, prefix_key};
use schein_proto::error::refusal;
use schein_proto::money::Cents;
use schein_proto::money::MAX_CENTS;
use schein_proto::v1::office_server::Office;
use schein_proto::v1::{
    ApproveCapRequest, ApproveCapResponse, ClaimRecord, ClaimState, ClearingRequest,
    ClearingResult, DecideHeldClaimRequest, ErrorReason, IssueVoucherRequest, LedgerHead,
    LedgerRequest, LedgerResponse, ListClaimsRequest, ListClaimsResponse, ListVouchersRequest,
    ListVouchersResponse, RevocationReason, RevokeVoucherRequest, Scope, ShowVoucherRequest,
    VoucherRecord, VoucherState,
};
use schein_proto::voucher::{MAX_BACKDATE_DAYS, MAX_VALIDITY_DAYS, new_body};
use schein_proto::{Day, FullCode, KeyId, Serial, ShortCode, SignedVoucher, VoucherError};
use tonic::{Request, Response, Status};

use super::authorize;
use super::invalid_argument;
use crate::domain::access::Operation;
use crate::node::Node;
use crate::store::{CapApproval, ClaimKey, StoreError, StoredVoucher};

/// A default validity that would end sooner than this runs to the end of the next quarter
/// instead: a card issued on the last days of a quarter must still be usable.
const MIN_DEFAULT_VALIDITY_DAYS: i32 = 14;

#[derive(Debug, Clone)]
pub struct OfficeService {
    node: Arc<Node>,
}

impl OfficeService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// The serial of one of this node's vouchers, from a full or short code.
    fn own_serial(&self, code: &str) -> Result<Serial, Status> {
        let not_here = || {
            refusal(
                ErrorReason::NotIssuedHere,
                format!(
                    "this voucher was not issued by {}; only its issuing office can change it",
                    self.node.name
                ),
            )
        };
        let damaged = |error: &dyn std::fmt::Display| {
            refusal(
                ErrorReason::MalformedCode,
                format!("the voucher code cannot be read: {error}"),
            )
        };
        match VoucherCode::parse(code) {
            Ok(VoucherCode::Full(FullCode(signed))) => {
                let (issuer, key_id) = signed.claimed_key().map_err(|e| damaged(&e))?;
                if issuer != self.node.id {
                    return Err(not_here());
                }
                // Any of this node's keys, also retired ones: old vouchers stay manageable.
                let roster = self.node.roster();
                let key = roster
                    .member(&self.node.id)
                    .and_then(|me| me.key(&key_id).ok())
                    .ok_or_else(not_here)?;
                match signed.verify(&key.public_key) {
                    Ok(voucher) => Ok(voucher.serial),
                    Err(VoucherError::BadSignature) => {
                        Err(damaged(&"it was altered (its signature does not match)"))
                    }
                    Err(other) => Err(damaged(&other)),
                }
            }
            Ok(VoucherCode::Short(short)) => {
                if short.prefix_key() != prefix_key(&self.node.prefix) {
                    return Err(not_here());
                }
                Ok(short.serial())
            }
            Err(error) => Err(damaged(&error)),
        }
    }

    /// Refuses a bound provider that is not enrolled at the node it names: an emergency voucher
    /// for a name nobody holds could never be claimed.
    async fn check_provider_exists(&self, bound: &str) -> Result<(), Status> {
        let Some((node_id, name)) = bound.split_once('/').filter(|(node, name)| {
            crate::pki::validate_node_id(node).is_ok() && crate::pki::validate_name(name).is_ok()
        }) else {
            return Err(invalid_argument(
                "name the provider as node/name, e.g. leipzig/klinikum-sued",
            ));
        };
        let unknown = || {
            refusal(
                ErrorReason::UnknownProvider,
                format!(
                    "no provider '{name}' is enrolled at node '{node_id}': check the name with that node's operator"
                ),
            )
        };
        let known = if node_id == self.node.id {
            crate::enrolled::provider_known(&self.node.base_dir, name, Day::today()).map_err(
                |error| {
                    tracing::error!(%error, "reading the register of identities failed");
                    refusal(
                        ErrorReason::Internal,
                        "this node cannot read its register of identities; tell its operator",
                    )
                },
            )?
        } else {
            let roster = self.node.roster();
            let member = roster
                .member(node_id)
                .filter(|m| m.entry.kind == crate::roster::MemberKind::Node)
                .ok_or_else(unknown)?;
            self.node
                .peers
                .provider_known(member, name)
                .await
                .map_err(|error| {
                    refusal(
                        ErrorReason::PeerUnreachable,
                        format!(
                            "{} could not be asked whether '{name}' is enrolled there ({error}); nothing was issued, try again",
                            member.name()
                        ),
                    )
                })?
        };
        if known { Ok(()) } else { Err(unknown()) }
    }

    fn state(&self, stored: &StoredVoucher) -> VoucherState {
        let (earliest, latest) = self.node.today_range();
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

    fn record(&self, stored: StoredVoucher) -> VoucherRecord {
        let state = self.state(&stored);
        let voucher = &stored.voucher;
        let short_code = ShortCode::new(&self.node.prefix, voucher.serial)
            .map(|c| c.to_string())
            .unwrap_or_default();
        VoucherRecord {
            full_code: FullCode(stored.signed.clone()).to_string(),
            short_code,
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
}

/// Checks an issue request against today and fills in the defaults.
fn validity(request: &IssueVoucherRequest, today: Day) -> Result<(Day, Day), Status> {
    let out_of_range = || invalid_argument("the first day of validity is out of range");
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
        .ok_or_else(|| invalid_argument("today is out of range"))?;
    if valid_from < earliest {
        return Err(invalid_argument(format!(
            "a voucher can begin at most {MAX_BACKDATE_DAYS} days in the past (not {valid_from})"
        )));
    }
    if valid_until < today {
        return Err(invalid_argument(format!(
            "the voucher would have expired already ({valid_until})"
        )));
    }
    if valid_until < valid_from {
        return Err(invalid_argument(format!(
            "the last day of validity ({valid_until}) is before the first ({valid_from})"
        )));
    }
    if valid_until.days_since_epoch() - valid_from.days_since_epoch() >= MAX_VALIDITY_DAYS {
        return Err(invalid_argument(format!(
            "a voucher can be valid for at most {MAX_VALIDITY_DAYS} days"
        )));
    }
    Ok((valid_from, valid_until))
}

#[tonic::async_trait]
impl Office for OfficeService {
    async fn issue_voucher(
        &self,
        request: Request<IssueVoucherRequest>,
    ) -> Result<Response<VoucherRecord>, Status> {
        let caller = authorize(&request, &self.node, Operation::IssueVoucher)?;
        let request = request.into_inner();
        let (valid_from, valid_until) = validity(&request, Day::today())?;
        let key = &self.node.signing_key;
        let key_id = KeyId::of(&key.verifying_key());
        let roster = self.node.roster();
        let window = roster
            .member(&self.node.id)
            .and_then(|me| me.key(&key_id).ok())
            .map(|k| (k.valid_from, k.valid_until));
        let fits = window.is_some_and(|(first, last)| {
            first <= valid_from && last.is_none_or(|last| valid_until <= last)
        });
        if !fits {
            let window = window
                .map(|(first, last)| {
                    let last = last.map(|d| d.to_string()).unwrap_or_else(|| "open".into());
                    format!("{first} to {last}")
                })
                .unwrap_or_else(|| "missing from the roster".into());
            return Err(invalid_argument(format!(
                "this node's signing key covers vouchers from {window}; {valid_from} to {valid_until} lies outside"
            )));
        }
        let cap_cents = request.cap_cents.unwrap_or(self.node.default_cap_cents);
        // A cap that would need two signatures as an approval needs them at issue too.
        let threshold = self.node.second_approval_above_cents;
        if cap_cents > threshold && cap_cents > self.node.default_cap_cents {
            return Err(invalid_argument(format!(
                "a cap above {} needs two office identities: issue the voucher with a lower cap, then approve the higher one",
                Cents(threshold)
            )));
        }
        if !(1..=MAX_CENTS).contains(&cap_cents) {
            return Err(invalid_argument(format!(
                "the cap must be between 1 cent and {}",
                schein_proto::money::Cents(MAX_CENTS)
            )));
        }
        let bound_provider = request.bound_provider.trim().to_owned();
        match (request.emergency, bound_provider.is_empty()) {
            (true, true) => {
                return Err(invalid_argument(
                    "an emergency voucher is issued for one provider: name it as node/name, e.g. leipzig/klinikum-sued",
                ));
            }
            (false, false) => {
                return Err(invalid_argument(
                    "only emergency vouchers are bound to a provider: add emergency, or leave the provider out",
                ));
            }
            (true, false) => self.check_provider_exists(&bound_provider).await?,
            (false, true) => {}
        }
        let scope = request
            .scope
            .iter()
            .map(|&s| {
                Scope::try_from(s).map_err(|_| invalid_argument(format!("unknown scope {s}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // 80 random bits collide practically never; retry anyway rather than fail.
        for _ in 0..3 {
            let serial = Serial::random();
            let body = new_body(
                &self.node.id,
                serial,
                &key.verifying_key(),
                valid_from,
                valid_until,
                &scope,
                Some(cap_cents),
            );
            let mut body = body;
            body.emergency = request.emergency;
            body.bound_provider = bound_provider.clone();
            let signed = SignedVoucher::sign(&body, key);
            match self.node.store.issue(&signed, Day::today()).await {
                Ok(()) => {
                    tracing::info!(office = %caller.name, %valid_until, cap_cents, "voucher issued");
                    tracing::debug!(tag = %self.node.log_tag(serial), "voucher issued");
                    let stored = self
                        .node
                        .store
                        .voucher(serial)?
                        .ok_or(StoreError::UnknownVoucher)?;
                    return Ok(Response::new(self.record(stored)));
                }
                Err(StoreError::SerialTaken) => continue,
                Err(other) => return Err(other.into()),
            }
        }
        Err(StoreError::SerialTaken.into())
    }

    async fn revoke_voucher(
        &self,
        request: Request<RevokeVoucherRequest>,
    ) -> Result<Response<VoucherRecord>, Status> {
        let caller = authorize(&request, &self.node, Operation::RevokeVoucher)?;
        let request = request.into_inner();
        let reason = RevocationReason::try_from(request.reason)
            .ok()
            .filter(|r| *r != RevocationReason::Unspecified)
            .ok_or_else(|| {
                invalid_argument(
                    "say why the voucher is revoked: lost, stolen, issued in error or replaced",
                )
            })?;
        let serial = self.own_serial(&request.code)?;
        let stored = self.node.store.revoke(serial, reason, Day::today()).await?;
        tracing::info!(office = %caller.name, reason = reason.as_str_name(), "voucher revoked");
        tracing::debug!(tag = %self.node.log_tag(serial), "voucher revoked");
        Ok(Response::new(self.record(stored)))
    }

    async fn show_voucher(
        &self,
        request: Request<ShowVoucherRequest>,
    ) -> Result<Response<VoucherRecord>, Status> {
        authorize(&request, &self.node, Operation::ShowVoucher)?;
        let serial = self.own_serial(&request.get_ref().code)?;
        let stored = self
            .node
            .store
            .voucher(serial)?
            .ok_or(StoreError::UnknownVoucher)?;
        Ok(Response::new(self.record(stored)))
    }

    async fn list_vouchers(
        &self,
        request: Request<ListVouchersRequest>,
    ) -> Result<Response<ListVouchersResponse>, Status> {
        authorize(&request, &self.node, Operation::ListVouchers)?;
        let request = request.into_inner();
        let limit = super::page_size(request.limit);
        let after = super::decode_page_token(&request.page_token)?;
        let wanted = VoucherState::try_from(request.state)
            .map_err(|_| invalid_argument("unknown voucher state"))?;
        let (page, next) = self.node.store.list(after, limit, |stored| {
            wanted == VoucherState::Unspecified || self.state(stored) == wanted
        })?;
        Ok(Response::new(ListVouchersResponse {
            vouchers: page.into_iter().map(|v| self.record(v)).collect(),
            next_page_token: super::encode_page_token(next),
        }))
    }
    async fn approve_cap(
        &self,
        request: Request<ApproveCapRequest>,
    ) -> Result<Response<ApproveCapResponse>, Status> {
        let caller = authorize(&request, &self.node, Operation::ApproveCap)?;
        let request = request.into_inner();
        if !(1..=MAX_CENTS).contains(&request.new_cap_cents) {
            return Err(invalid_argument("the new cap is out of range"));
        }
        let serial = self.own_serial(&request.code)?;
        let threshold = self.node.second_approval_above_cents;
        let approval = self
            .node
            .store
            .approve_cap(serial, request.new_cap_cents, &caller.name, threshold)
            .await?;
        let new_cap = Cents(request.new_cap_cents);
        let (applied, stored, message) = match approval {
            CapApproval::Applied(stored) => {
                tracing::info!(office = %caller.name, new_cap_cents = request.new_cap_cents, "cap raised");
                tracing::debug!(tag = %self.node.log_tag(serial), "cap raised");
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
        Ok(Response::new(ApproveCapResponse {
            voucher: Some(self.record(stored)),
            applied,
            message,
        }))
    }

    async fn list_held_claims(
        &self,
        request: Request<ListClaimsRequest>,
    ) -> Result<Response<ListClaimsResponse>, Status> {
        authorize(&request, &self.node, Operation::ListHeldClaims)?;
        let response = super::list_claims(&self.node, request.get_ref(), |claim| {
            claim.state == ClaimState::Held as i32
        })?;
        Ok(Response::new(response))
    }

    async fn decide_held_claim(
        &self,
        request: Request<DecideHeldClaimRequest>,
    ) -> Result<Response<ClaimRecord>, Status> {
        let caller = authorize(&request, &self.node, Operation::DecideHeldClaim)?;
        let request = request.into_inner();
        let key = ClaimKey::new(&request.provider, &request.claim_id);
        let record = self.node.store.decide_held(&key, request.release).await?;
        tracing::info!(office = %caller.name, release = request.release, "held claim decided");
        if record.state == ClaimState::Pending as i32 {
            let (settlement_id, signed_record) = self.node.store.settlement_of(&key)?;
            if let Ok(settled) = crate::domain::claim::deliver(
                &self.node,
                &key,
                &settlement_id,
                &record.issuer,
                signed_record,
            )
            .await
            {
                return Ok(Response::new(settled));
            }
        }
        Ok(Response::new(record))
    }

    async fn ledger(
        &self,
        request: Request<LedgerRequest>,
    ) -> Result<Response<LedgerResponse>, Status> {
        authorize(&request, &self.node, Operation::Ledger)?;
        let request = request.into_inner();
        // The head first, and entries only up to it: a settlement in between must not make a
        // consistent ledger look broken.
        let head = self.node.store.ledger_head()?;
        let from = request.from_seq.max(1);
        let limit = super::page_size(request.limit).min(
            usize::try_from(head.seq.saturating_add(1).saturating_sub(from)).unwrap_or(usize::MAX),
        );
        let entries = self.node.store.ledger_entries(from, limit)?;
        let key_id = KeyId::of(&self.node.signing_key.verifying_key());
        let signed_head = schein_proto::signed::seal(
            schein_proto::signed::Kind::LedgerHead,
            &LedgerHead {
                node: self.node.id.clone(),
                seq: head.seq,
                hash: head.hash.to_vec(),
                key_id: key_id.0,
            },
            &self.node.signing_key,
        );
        let roster = self.node.roster();
        let signing_keys = roster
            .member(&self.node.id)
            .map(|me| me.to_proto().signing_keys)
            .unwrap_or_default();
        Ok(Response::new(LedgerResponse {
            entries,
            signed_head,
            signing_keys,
        }))
    }

    async fn close_clearing(
        &self,
        request: Request<ClearingRequest>,
    ) -> Result<Response<ClearingResult>, Status> {
        let caller = authorize(&request, &self.node, Operation::CloseClearing)?;
        let period = crate::domain::clearing::parse_period(&request.get_ref().period)?;
        Ok(Response::new(
            crate::domain::clearing::close(&self.node, &caller.name, period).await?,
        ))
    }

    async fn show_clearing(
        &self,
        request: Request<ClearingRequest>,
    ) -> Result<Response<ClearingResult>, Status> {
        authorize(&request, &self.node, Operation::ShowClearing)?;
        let period = crate::domain::clearing::parse_period(&request.get_ref().period)?;
        Ok(Response::new(crate::domain::clearing::view(
            &self.node, period,
        )?))
    }
}
