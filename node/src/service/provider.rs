//! The provider service: verify a voucher of any member through this node.

use std::sync::Arc;

use schein_proto::v1::provider_server::Provider;
use schein_proto::v1::{Scope, Verification, VerifyVoucherRequest};
use tonic::{Request, Response, Status};

use super::invalid_argument;
use crate::auth::require_local;
use crate::node::Node;
use crate::pki::Role;

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
        require_local(&request, &self.node, &[Role::Provider], "verify vouchers")?;
        let request = request.into_inner();
        if request.code.len() > MAX_CODE_LEN {
            return Err(invalid_argument(
                "the code is far too long to be a voucher code",
            ));
        }
        let scope = Scope::try_from(request.for_scope)
            .map_err(|_| invalid_argument("unknown kind of care (for_scope)"))?;
        let verification = crate::verify::verify(&self.node, &request.code, scope).await;
        Ok(Response::new(verification))
    }
}
