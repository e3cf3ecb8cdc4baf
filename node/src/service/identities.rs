//! The identity service: a client renews its own certificate.

use std::sync::Arc;

use schein_proto::v1::identities_server::Identities;
use schein_proto::v1::{RenewRequest, RenewResponse};
use tonic::{Request, Response, Status};

use super::authorize;
use crate::domain::access::Operation;
use crate::domain::identities;
use crate::node::Node;
use crate::tls::Caller;

#[derive(Debug, Clone)]
pub struct IdentitiesService {
    node: Arc<Node>,
}

impl IdentitiesService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Identities for IdentitiesService {
    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let holder = authorize(&request, &self.node, Operation::RenewIdentity)?;
        let presented = request
            .extensions()
            .get::<Caller>()
            .map(|caller| caller.fingerprint)
            .unwrap_or_default();
        Ok(Response::new(identities::renew(
            &self.node,
            &holder,
            &presented,
            request.get_ref(),
        )?))
    }
}
