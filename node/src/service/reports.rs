//! The reports service: aggregates for funders (of any member), released weekly, and live for
//! this node's offices.

use std::sync::Arc;

use schein_proto::v1::reports_server::Reports;
use schein_proto::v1::{MemberAddress, MembersRequest, MembersResponse, NodeReport, ReportRequest};
use tonic::{Request, Response, Status};

use super::authorize;
use crate::domain::access::Operation;
use crate::domain::report::Figures;
use crate::node::Node;
use crate::pki::Role;
use crate::roster::MemberKind;

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
        let period = crate::domain::clearing::parse_period(&request.get_ref().period)?;
        tracing::info!(reader = %reader, %period, "report read");
        // Offices see their node's claims one by one anyway; funders must not (privacy rule 4).
        let figures = match reader.role {
            Role::Office => Figures::Live,
            _ => Figures::Released,
        };
        let report =
            crate::domain::report::build(&self.node, period, schein_proto::Day::today(), figures)?;
        Ok(Response::new(report))
    }

    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        authorize(&request, &self.node, Operation::Members)?;
        let roster = self.node.roster();
        let members = roster
            .members()
            .filter(|m| m.entry.kind == MemberKind::Node)
            .map(|m| MemberAddress {
                id: m.id().to_owned(),
                name: m.name().to_owned(),
                endpoint: m.entry.endpoint.clone().unwrap_or_default(),
                ca_cert_pem: m.entry.ca_cert.clone(),
            })
            .collect();
        Ok(Response::new(MembersResponse { members }))
    }
}
