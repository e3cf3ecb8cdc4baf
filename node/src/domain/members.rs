//! What a node says about the federation's members and its own: its public member entry, the
//! members a funder's federation report asks, and whether a provider handle is enrolled here.

use schein_proto::Day;
use schein_proto::v1::{Member, MemberAddress, MembersResponse};

use crate::enrolled::RegisterError;
use crate::node::Node;
use crate::roster::MemberKind;

/// The node's own member entry, as it hands it to other operators; `None` if it is missing from
/// its own roster (which configuration loading rules out).
pub fn member_entry(node: &Node) -> Option<Member> {
    node.roster().member(&node.id).map(|me| me.to_proto())
}

/// The member nodes to ask for a federation-wide report: id, name, endpoint, CA.
pub fn members(node: &Node) -> MembersResponse {
    let roster = node.roster();
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
    MembersResponse { members }
}

/// Whether a provider called `name` is enrolled at this node with a certificate valid today.
pub fn provider_known(node: &Node, name: &str) -> Result<bool, RegisterError> {
    if crate::pki::validate_name(name).is_err() {
        return Ok(false);
    }
    crate::enrolled::provider_known(&node.base_dir, name, Day::today()).inspect_err(|error| {
        tracing::error!(%error, "reading the register of identities failed");
    })
}
