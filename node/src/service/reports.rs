//! The reports service: aggregates for funders (of any member) and this node's office. Each RPC
//! authorises, calls the domain core, answers.

use std::sync::Arc;

use schein_proto::v1::reports_server::Reports;
use schein_proto::v1::{MembersRequest, MembersResponse, NodeReport, ReportRequest};
use tonic::{Request, Response, Status};

use super::authorize;
use crate::domain::access::Operation;
use crate::domain::{members, report};
use crate::node::Node;

#[derive(Debug, Clone)]
pub struct ReportsService {
    node: Arc<Node>,
}

impl ReportsService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

#[tonic::async_trait]
impl Reports for ReportsService {
    async fn report(
        &self,
        request: Request<ReportRequest>,
    ) -> Result<Response<NodeReport>, Status> {
        let reader = authorize(&request, &self.node, Operation::Report)?;
        let report = report::for_reader(&self.node, &reader, &request.get_ref().period)?;
        Ok(Response::new(report))
    }

    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        authorize(&request, &self.node, Operation::Members)?;
        Ok(Response::new(members::members(&self.node)))
    }
}
