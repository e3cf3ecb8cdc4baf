//! The federation service: what member nodes ask this node as an issuer.

use std::sync::Arc;

use schein_proto::error::refusal;
use schein_proto::v1::federation_server::Federation;
use schein_proto::v1::{
    ClosePeriodRequest, ClosePeriodResponse, ErrorReason, Member, MemberEntryRequest,
    ProviderKnownRequest, ProviderKnownResponse, SettleRequest, SettleResponse, StatementRequest,
    StatementResponse, VoucherStatusRequest, VoucherStatusResponse, VoucherStatusesRequest,
    VoucherStatusesResponse,
};
use schein_proto::{Day, Serial};
use tonic::{Request, Response, Status};

use super::authorize;
use super::invalid_argument;
use crate::domain::access::Operation;
use crate::domain::verify::MAX_BATCH;
use crate::node::Node;

#[derive(Debug, Clone)]
pub struct FederationService {
    node: Arc<Node>,
}

impl FederationService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// This node's word as issuer on `serial`.
    fn status_of(&self, serial: Serial) -> Result<VoucherStatusResponse, Status> {
        Ok(match self.node.store.voucher(serial)? {
            Some(stored) => VoucherStatusResponse {
                known: true,
                signed_voucher: stored.signed.to_bytes(),
                revoked: stored.revoked_on.is_some(),
                remaining_cap_cents: stored.remaining_cap_cents(),
                revoked_on: stored.revoked_on.map(Into::into),
                remaining_medication_cents: stored
                    .remaining_medication_cents(self.node.limits().medication_per_voucher_cents),
            },
            None => VoucherStatusResponse::default(),
        })
    }
}

#[tonic::async_trait]
impl Federation for FederationService {
    async fn voucher_status(
        &self,
        request: Request<VoucherStatusRequest>,
    ) -> Result<Response<VoucherStatusResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::VoucherStatus)?;
        let serial = Serial::from_slice(&request.get_ref().serial)
            .map_err(|_| invalid_argument("a serial has 10 bytes"))?;
        let response = self.status_of(serial)?;
        tracing::info!(peer = %peer.node, known = response.known, "voucher status asked");
        tracing::debug!(tag = %self.node.log_tag(serial), "voucher status asked");
        Ok(Response::new(response))
    }

    async fn voucher_statuses(
        &self,
        request: Request<VoucherStatusesRequest>,
    ) -> Result<Response<VoucherStatusesResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::VoucherStatuses)?;
        let serials = &request.get_ref().serials;
        if serials.len() > MAX_BATCH {
            return Err(invalid_argument(format!(
                "at most {MAX_BATCH} serials per request, not {}",
                serials.len()
            )));
        }
        let statuses = serials
            .iter()
            .map(|bytes| {
                let serial = Serial::from_slice(bytes)
                    .map_err(|_| invalid_argument("a serial has 10 bytes"))?;
                self.status_of(serial)
            })
            .collect::<Result<Vec<_>, Status>>()?;
        let known = statuses.iter().filter(|s| s.known).count();
        tracing::info!(peer = %peer.node, asked = statuses.len(), known, "voucher statuses asked");
        Ok(Response::new(VoucherStatusesResponse { statuses }))
    }

    async fn member_entry(
        &self,
        request: Request<MemberEntryRequest>,
    ) -> Result<Response<Member>, Status> {
        authorize(&request, &self.node, Operation::MemberEntry)?;
        let roster = self.node.roster();
        let me = roster.member(&self.node.id).ok_or_else(|| {
            refusal(
                ErrorReason::Unspecified,
                "this node is missing from its own roster",
            )
        })?;
        Ok(Response::new(me.to_proto()))
    }

    async fn settle(
        &self,
        request: Request<SettleRequest>,
    ) -> Result<Response<SettleResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::Settle)?;
        let roster = self.node.roster();
        let redeemer = roster.member(&peer.node).ok_or_else(|| {
            refusal(
                ErrorReason::UnknownIdentity,
                "you are not a member of this roster",
            )
        })?;
        let record = crate::domain::claim::open_record(redeemer, &request.get_ref().signed_record)?;
        if record.redeemer != peer.node {
            tracing::warn!(peer = %peer.node, "refused: settlement record of another node");
            return Err(refusal(
                ErrorReason::WrongNode,
                "a node may only send its own settlement records",
            ));
        }
        let signed_receipt = crate::domain::claim::settle_here(&self.node, &record).await?;
        Ok(Response::new(SettleResponse { signed_receipt }))
    }

    async fn close_period(
        &self,
        request: Request<ClosePeriodRequest>,
    ) -> Result<Response<ClosePeriodResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::ClosePeriod)?;
        let roster = self.node.roster();
        let caller = roster.member(&peer.node).ok_or_else(|| {
            refusal(
                ErrorReason::UnknownIdentity,
                "you are not a member of this roster",
            )
        })?;
        let request = request.into_inner();
        let period = crate::domain::clearing::parse_period(&request.period)?;
        let (signed_statement, deadline) =
            crate::domain::clearing::closed_by_peer(&self.node, caller, period, request.early)
                .await?;
        Ok(Response::new(ClosePeriodResponse {
            signed_statement,
            deadline: Some(deadline.into()),
        }))
    }

    async fn provider_known(
        &self,
        request: Request<ProviderKnownRequest>,
    ) -> Result<Response<ProviderKnownResponse>, Status> {
        authorize(&request, &self.node, Operation::ProviderKnown)?;
        let name = &request.get_ref().name;
        if crate::pki::validate_name(name).is_err() {
            return Ok(Response::new(ProviderKnownResponse { known: false }));
        }
        let known = crate::enrolled::provider_known(&self.node.base_dir, name, Day::today())
            .map_err(|error| {
                tracing::error!(%error, "reading the register of identities failed");
                refusal(
                    ErrorReason::Internal,
                    "this node cannot read its register of identities",
                )
            })?;
        Ok(Response::new(ProviderKnownResponse { known }))
    }

    async fn statement(
        &self,
        request: Request<StatementRequest>,
    ) -> Result<Response<StatementResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::Statement)?;
        let period = crate::domain::clearing::parse_period(&request.get_ref().period)?;
        let signed_statement = crate::domain::clearing::statement(&self.node, &peer.node, period)?;
        Ok(Response::new(StatementResponse { signed_statement }))
    }
}
