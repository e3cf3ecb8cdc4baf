//! The provider service: a practice, dentist, hospital or pharmacy of this node verifies
//! vouchers of any member and bills treatments through it. Each RPC authorises, calls the domain
//! core, answers.

use std::sync::Arc;

use schein_proto::v1::provider_server::Provider;
use schein_proto::v1::{
    ClaimRecord, ClaimStatusRequest, ListClaimsRequest, ListClaimsResponse, SubmitClaimRequest,
    Verification, VerifyVoucherRequest, VerifyVouchersRequest, VerifyVouchersResponse,
};
use tonic::{Request, Response, Status};

use super::authorize;
use crate::domain::access::Operation;
use crate::domain::{claim, verify};
use crate::node::Node;

#[derive(Debug, Clone)]
pub struct ProviderService {
    node: Arc<Node>,
}

impl ProviderService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Provider for ProviderService {
    async fn verify_voucher(
        &self,
        request: Request<VerifyVoucherRequest>,
    ) -> Result<Response<Verification>, Status> {
        let provider = authorize(&request, &self.node, Operation::VerifyVoucher)?;
        let answer = verify::verify_request(&self.node, &provider, request.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn verify_vouchers(
        &self,
        request: Request<VerifyVouchersRequest>,
    ) -> Result<Response<VerifyVouchersResponse>, Status> {
        let provider = authorize(&request, &self.node, Operation::VerifyVouchers)?;
        let answer = verify::verify_requests(&self.node, &provider, request.get_ref()).await?;
        Ok(Response::new(answer))
    }

    async fn submit_claim(
        &self,
        request: Request<SubmitClaimRequest>,
    ) -> Result<Response<ClaimRecord>, Status> {
        let provider = authorize(&request, &self.node, Operation::SubmitClaim)?;
        let record = claim::submit(&self.node, &provider, request.into_inner()).await?;
        Ok(Response::new(record))
    }

    async fn claim_status(
        &self,
        request: Request<ClaimStatusRequest>,
    ) -> Result<Response<ClaimRecord>, Status> {
        let provider = authorize(&request, &self.node, Operation::ClaimStatus)?;
        let record = claim::status(&self.node, &provider, &request.get_ref().claim_id)?;
        Ok(Response::new(record))
    }

    async fn list_claims(
        &self,
        request: Request<ListClaimsRequest>,
    ) -> Result<Response<ListClaimsResponse>, Status> {
        let provider = authorize(&request, &self.node, Operation::ListClaims)?;
        Ok(Response::new(claim::list_own(
            &self.node,
            &provider,
            request.get_ref(),
        )?))
    }
}
