//! The office service: this node's clearing office manages its vouchers, decides on held claims,
//! reads its ledger and clears periods. Each RPC authorises, calls the domain core, answers.

use std::sync::Arc;

use schein_proto::v1::office_server::Office;
use schein_proto::v1::{
    ApproveCapRequest, ApproveCapResponse, ClaimRecord, ClearingRequest, ClearingResult,
    DecideHeldClaimRequest, IssueVoucherRequest, LedgerRequest, LedgerResponse, ListClaimsRequest,
    ListClaimsResponse, ListVouchersRequest, ListVouchersResponse, PeerLedgerCheck,
    PeerLedgerRequest, RevokeVoucherRequest, ShowVoucherRequest, VoucherRecord,
};
use tonic::{Request, Response, Status};

use super::authorize;
use crate::domain::access::Operation;
use crate::domain::{claim, clearing, ledger, vouchers, witness};
use crate::node::Node;

#[derive(Debug, Clone)]
pub struct OfficeService {
    node: Arc<Node>,
}

impl OfficeService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Office for OfficeService {
    async fn issue_voucher(
        &self,
        request: Request<IssueVoucherRequest>,
    ) -> Result<Response<VoucherRecord>, Status> {
        let office = authorize(&request, &self.node, Operation::IssueVoucher)?;
        let record = vouchers::issue(&self.node, &office, request.get_ref()).await?;
        Ok(Response::new(record))
    }

    async fn revoke_voucher(
        &self,
        request: Request<RevokeVoucherRequest>,
    ) -> Result<Response<VoucherRecord>, Status> {
        let office = authorize(&request, &self.node, Operation::RevokeVoucher)?;
        let RevokeVoucherRequest { code, reason } = request.get_ref();
        let record = vouchers::revoke(&self.node, &office, code, *reason).await?;
        Ok(Response::new(record))
    }

    async fn show_voucher(
        &self,
        request: Request<ShowVoucherRequest>,
    ) -> Result<Response<VoucherRecord>, Status> {
        authorize(&request, &self.node, Operation::ShowVoucher)?;
        Ok(Response::new(vouchers::show(
            &self.node,
            &request.get_ref().code,
        )?))
    }

    async fn list_vouchers(
        &self,
        request: Request<ListVouchersRequest>,
    ) -> Result<Response<ListVouchersResponse>, Status> {
        authorize(&request, &self.node, Operation::ListVouchers)?;
        Ok(Response::new(vouchers::list(
            &self.node,
            request.get_ref(),
        )?))
    }

    async fn approve_cap(
        &self,
        request: Request<ApproveCapRequest>,
    ) -> Result<Response<ApproveCapResponse>, Status> {
        let office = authorize(&request, &self.node, Operation::ApproveCap)?;
        let ApproveCapRequest {
            code,
            new_cap_cents,
        } = request.get_ref();
        let answer = vouchers::approve_cap(&self.node, &office, code, *new_cap_cents).await?;
        Ok(Response::new(answer))
    }

    async fn list_held_claims(
        &self,
        request: Request<ListClaimsRequest>,
    ) -> Result<Response<ListClaimsResponse>, Status> {
        authorize(&request, &self.node, Operation::ListHeldClaims)?;
        Ok(Response::new(claim::list_held(
            &self.node,
            request.get_ref(),
        )?))
    }

    async fn decide_held_claim(
        &self,
        request: Request<DecideHeldClaimRequest>,
    ) -> Result<Response<ClaimRecord>, Status> {
        let office = authorize(&request, &self.node, Operation::DecideHeldClaim)?;
        let DecideHeldClaimRequest {
            provider,
            claim_id,
            release,
        } = request.get_ref();
        let record = claim::decide_held(&self.node, &office, provider, claim_id, *release).await?;
        Ok(Response::new(record))
    }

    async fn ledger(
        &self,
        request: Request<LedgerRequest>,
    ) -> Result<Response<LedgerResponse>, Status> {
        authorize(&request, &self.node, Operation::Ledger)?;
        let LedgerRequest { from_seq, limit } = *request.get_ref();
        Ok(Response::new(ledger::read(&self.node, from_seq, limit)?))
    }

    async fn peer_ledger(
        &self,
        request: Request<PeerLedgerRequest>,
    ) -> Result<Response<PeerLedgerCheck>, Status> {
        authorize(&request, &self.node, Operation::PeerLedger)?;
        Ok(Response::new(
            witness::check_peer(&self.node, &request.get_ref().node).await?,
        ))
    }

    async fn close_clearing(
        &self,
        request: Request<ClearingRequest>,
    ) -> Result<Response<ClearingResult>, Status> {
        let office = authorize(&request, &self.node, Operation::CloseClearing)?;
        let period = clearing::parse_period(&request.get_ref().period)?;
        Ok(Response::new(
            clearing::close(&self.node, &office.name, period).await?,
        ))
    }

    async fn show_clearing(
        &self,
        request: Request<ClearingRequest>,
    ) -> Result<Response<ClearingResult>, Status> {
        authorize(&request, &self.node, Operation::ShowClearing)?;
        let period = clearing::parse_period(&request.get_ref().period)?;
        Ok(Response::new(clearing::view(&self.node, period)?))
    }
}
