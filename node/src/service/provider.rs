//! The provider service: verify a voucher of any member through this node.

use std::sync::Arc;

use schein_proto::v1::provider_server::Provider;
use schein_proto::v1::{
    ClaimRecord, ClaimState, ClaimStatusRequest, ListClaimsRequest, ListClaimsResponse, Scope,
    SubmitClaimRequest, Verification, VerifyVoucherRequest, VerifyVouchersRequest,
    VerifyVouchersResponse,
};
use tonic::{Request, Response, Status};

use super::authorize;
use super::invalid_argument;
use crate::domain::access::Operation;
use crate::domain::verify::MAX_BATCH;
use crate::node::Node;
use crate::store::{ClaimKey, StoreError};

/// Longest code text accepted; a full code is about 250 characters.
const MAX_CODE_LEN: usize = 2048;

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
        let request = request.into_inner();
        if request.code.len() > MAX_CODE_LEN {
            return Err(invalid_argument(
                "the code is far too long to be a voucher code",
            ));
        }
        let scope = Scope::try_from(request.for_scope)
            .map_err(|_| invalid_argument("unknown kind of care (for_scope)"))?;
        let verification =
            crate::domain::verify::verify(&self.node, &provider, &request.code, scope).await;
        Ok(Response::new(verification))
    }

    async fn verify_vouchers(
        &self,
        request: Request<VerifyVouchersRequest>,
    ) -> Result<Response<VerifyVouchersResponse>, Status> {
        let provider = authorize(&request, &self.node, Operation::VerifyVouchers)?;
        let vouchers = &request.get_ref().vouchers;
        if !(1..=MAX_BATCH).contains(&vouchers.len()) {
            return Err(invalid_argument(format!(
                "send 1 to {MAX_BATCH} vouchers per request, not {}",
                vouchers.len()
            )));
        }
        let mut asked = Vec::with_capacity(vouchers.len());
        for (i, voucher) in vouchers.iter().enumerate() {
            if voucher.code.len() > MAX_CODE_LEN {
                return Err(invalid_argument(format!(
                    "code number {} is far too long to be a voucher code",
                    i + 1
                )));
            }
            let scope = Scope::try_from(voucher.for_scope).map_err(|_| {
                invalid_argument(format!(
                    "unknown kind of care (for_scope) at number {}",
                    i + 1
                ))
            })?;
            asked.push((voucher.code.as_str(), scope));
        }
        let verifications = crate::domain::verify::verify_many(&self.node, &provider, &asked).await;
        Ok(Response::new(VerifyVouchersResponse { verifications }))
    }

    async fn submit_claim(
        &self,
        request: Request<SubmitClaimRequest>,
    ) -> Result<Response<ClaimRecord>, Status> {
        let provider = authorize(&request, &self.node, Operation::SubmitClaim)?;
        let record =
            crate::domain::claim::submit(&self.node, &provider, request.into_inner()).await?;
        Ok(Response::new(record))
    }

    async fn claim_status(
        &self,
        request: Request<ClaimStatusRequest>,
    ) -> Result<Response<ClaimRecord>, Status> {
        let provider = authorize(&request, &self.node, Operation::ClaimStatus)?;
        let key = ClaimKey::new(&provider.name, &request.get_ref().claim_id);
        let record = self
            .node
            .store
            .claim(&key)?
            .ok_or(StoreError::UnknownClaim)?;
        Ok(Response::new(record))
    }

    async fn list_claims(
        &self,
        request: Request<ListClaimsRequest>,
    ) -> Result<Response<ListClaimsResponse>, Status> {
        let provider = authorize(&request, &self.node, Operation::ListClaims)?;
        let request = request.into_inner();
        let response = super::list_claims(&self.node, &request, |claim| {
            claim.provider == provider.name
                && (!request.pending_only || claim.state == ClaimState::Pending as i32)
        })?;
        Ok(Response::new(response))
    }
}
