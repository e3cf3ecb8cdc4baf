//! The federation service: what member nodes ask this node — about its vouchers, to settle
//! claims on them, to clear periods, about its member entry and providers. Each RPC authorises,
//! calls the domain core, answers.

use std::sync::Arc;

use schein_proto::error::refusal;
use schein_proto::v1;
use schein_proto::v1::federation_server::Federation;
use schein_proto::v1::{
    ClosePeriodRequest, ClosePeriodResponse, ErrorReason, LedgerProofRequest, LedgerProofResponse,
    Member, MemberEntryRequest, ProviderKnownRequest, ProviderKnownResponse, ReceiptsForRequest,
    ReceiptsForResponse, RevokedIdentitiesRequest, RevokedIdentitiesResponse, SettleAnswer,
    SettleBatchRequest, SettleBatchResponse, SettleRequest, SettleResponse, StatementRequest,
    StatementResponse, VoucherStatusRequest, VoucherStatusResponse, VoucherStatusesRequest,
    VoucherStatusesResponse,
};
use tonic::{Request, Response, Status};

use super::authorize;
use crate::domain::access::Operation;
use crate::domain::recovery::refuse_while_recovering;
use crate::domain::{clearing, members, recovery, settle, vouchers, witness};
use crate::node::Node;

/// Refuses a calling node more than one wire version ahead of this one (see
/// `schein_proto::version`), before any handler runs.
#[allow(clippy::result_large_err)]
pub(crate) fn check_wire_version(request: Request<()>) -> Result<Request<()>, Status> {
    schein_proto::version::check_caller(request.metadata(), schein_proto::version::WIRE_VERSION)?;
    Ok(request)
}

#[derive(Debug, Clone)]
pub struct FederationService {
    node: Arc<Node>,
}

impl FederationService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Federation for FederationService {
    async fn voucher_status(
        &self,
        request: Request<VoucherStatusRequest>,
    ) -> Result<Response<VoucherStatusResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::VoucherStatus)?;
        // A restored node's sums are those of its backup until it recovered.
        refuse_while_recovering(&self.node)?;
        let asked = std::slice::from_ref(&request.get_ref().serial);
        let mut statuses = vouchers::statuses(&self.node, &peer, asked)?;
        Ok(Response::new(statuses.pop().unwrap_or_default()))
    }

    async fn voucher_statuses(
        &self,
        request: Request<VoucherStatusesRequest>,
    ) -> Result<Response<VoucherStatusesResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::VoucherStatuses)?;
        refuse_while_recovering(&self.node)?;
        let statuses = vouchers::statuses(&self.node, &peer, &request.get_ref().serials)?;
        Ok(Response::new(VoucherStatusesResponse { statuses }))
    }

    async fn member_entry(
        &self,
        request: Request<MemberEntryRequest>,
    ) -> Result<Response<Member>, Status> {
        authorize(&request, &self.node, Operation::MemberEntry)?;
        let entry = members::member_entry(&self.node).ok_or_else(|| {
            refusal(
                ErrorReason::Internal,
                "this node is missing from its own roster",
            )
        })?;
        Ok(Response::new(entry))
    }

    async fn settle(
        &self,
        request: Request<SettleRequest>,
    ) -> Result<Response<SettleResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::Settle)?;
        refuse_while_recovering(&self.node)?;
        let signed_receipt =
            settle::settle(&self.node, &peer, &request.get_ref().signed_record).await?;
        Ok(Response::new(SettleResponse { signed_receipt }))
    }

    async fn settle_batch(
        &self,
        request: Request<SettleBatchRequest>,
    ) -> Result<Response<SettleBatchResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::SettleBatch)?;
        refuse_while_recovering(&self.node)?;
        let answers = settle::settle_batch(&self.node, &peer, &request.get_ref().signed_records)
            .await?
            .into_iter()
            .map(|answer| match answer {
                Ok(signed_receipt) => SettleAnswer {
                    signed_receipt,
                    ..Default::default()
                },
                Err(error) => {
                    let status = Status::from(error);
                    SettleAnswer {
                        refusal: schein_proto::error::reason_of(&status)
                            .unwrap_or(ErrorReason::Unspecified)
                            as i32,
                        message: status.message().to_owned(),
                        ..Default::default()
                    }
                }
            })
            .collect();
        Ok(Response::new(SettleBatchResponse { answers }))
    }

    async fn ledger_proof(
        &self,
        request: Request<LedgerProofRequest>,
    ) -> Result<Response<LedgerProofResponse>, Status> {
        authorize(&request, &self.node, Operation::LedgerProof)?;
        // A restored ledger is short of what the witnesses saw until it is rebuilt: showing it
        // would look like a rewritten past.
        refuse_while_recovering(&self.node)?;
        let LedgerProofRequest { from_seq, limit } = *request.get_ref();
        Ok(Response::new(witness::proof(&self.node, from_seq, limit)?))
    }

    async fn receipts_for(
        &self,
        request: Request<ReceiptsForRequest>,
    ) -> Result<Response<ReceiptsForResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::ReceiptsFor)?;
        let ReceiptsForRequest { after, limit } = request.get_ref();
        Ok(Response::new(recovery::receipts_for(
            &self.node, &peer.node, after, *limit,
        )?))
    }

    async fn revoked_identities(
        &self,
        request: Request<RevokedIdentitiesRequest>,
    ) -> Result<Response<RevokedIdentitiesResponse>, Status> {
        authorize(&request, &self.node, Operation::RevokedIdentities)?;
        Ok(Response::new(RevokedIdentitiesResponse {
            signed_list: self.node.revocations.signed_own(&self.node.signing_key()),
        }))
    }

    async fn roster_since(
        &self,
        request: Request<v1::RosterSinceRequest>,
    ) -> Result<Response<v1::RosterSinceResponse>, Status> {
        authorize(&request, &self.node, Operation::RosterSince)?;
        let history = crate::quorum::History::beside(&self.node.roster_path);
        let versions = history
            .since(
                request.get_ref().version,
                crate::quorum::MAX_VERSIONS_PER_ANSWER,
            )
            .iter()
            .map(crate::quorum::SignedRoster::to_proto)
            .collect();
        Ok(Response::new(v1::RosterSinceResponse { versions }))
    }

    async fn statement(
        &self,
        request: Request<StatementRequest>,
    ) -> Result<Response<StatementResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::Statement)?;
        let StatementRequest {
            period,
            page_token,
            page_limit,
            page_bytes,
        } = request.get_ref();
        let period = clearing::parse_period(period)?;
        let page = clearing::StatementPage {
            token: page_token,
            limit: *page_limit,
            bytes: *page_bytes,
        };
        let signed_statement = clearing::statement(&self.node, &peer.node, period, page)?;
        Ok(Response::new(StatementResponse { signed_statement }))
    }

    async fn close_period(
        &self,
        request: Request<ClosePeriodRequest>,
    ) -> Result<Response<ClosePeriodResponse>, Status> {
        let peer = authorize(&request, &self.node, Operation::ClosePeriod)?;
        let caller = clearing::member_of(&self.node, &peer)?;
        let ClosePeriodRequest {
            period,
            early,
            page_limit,
            page_bytes,
        } = request.get_ref();
        let period = clearing::parse_period(period)?;
        let page = clearing::StatementPage {
            token: "",
            limit: *page_limit,
            bytes: *page_bytes,
        };
        let (signed_statement, deadline) =
            clearing::closed_by_peer(&self.node, &caller, period, *early, page).await?;
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
        let known = members::provider_known(&self.node, &request.get_ref().name).map_err(|_| {
            refusal(
                ErrorReason::Internal,
                "this node cannot read its register of identities",
            )
        })?;
        Ok(Response::new(ProviderKnownResponse { known }))
    }
}
