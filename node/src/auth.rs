//! Authorisation per RPC, by the caller's role and node (DESIGN.md, "Identities and trust"):
//! only this node's office issues and revokes, only this node's providers verify through it,
//! only member nodes call the federation service.

use schein_proto::error::refusal;
use schein_proto::v1::ErrorReason;
use tonic::{Code, Request, Status};

use crate::pki::{Identity, Role};
use crate::tls::Caller;

/// The authenticated caller of `request`. Every connection the server accepts carries one; a
/// request without one did not come through [`crate::tls`] and is refused.
pub(crate) fn caller<T>(request: &Request<T>) -> Result<&Identity, Status> {
    request
        .extensions()
        .get::<Caller>()
        .map(|caller| &caller.identity)
        .ok_or_else(|| {
            refusal(
                Code::Unauthenticated,
                ErrorReason::UnknownIdentity,
                "no client certificate was presented",
            )
        })
}

/// The caller, if it holds one of `roles` at this node (`node_id`).
pub(crate) fn require_local<T>(
    request: &Request<T>,
    node_id: &str,
    roles: &[Role],
    action: &str,
) -> Result<Identity, Status> {
    let identity = caller(request)?;
    if !roles.contains(&identity.role) {
        tracing::warn!(caller = %identity, action, "refused: wrong role");
        let allowed: Vec<&str> = roles.iter().map(|r| r.holders()).collect();
        return Err(refusal(
            Code::PermissionDenied,
            ErrorReason::WrongRole,
            format!(
                "a {} certificate cannot {action}; only {} may",
                identity.role,
                allowed.join(" or ")
            ),
        ));
    }
    if identity.node != node_id {
        tracing::warn!(caller = %identity, action, "refused: caller of another node");
        return Err(refusal(
            Code::PermissionDenied,
            ErrorReason::WrongNode,
            format!(
                "this is the node of {node_id}; your certificate belongs to {}. Use your own city's node",
                identity.node
            ),
        ));
    }
    Ok(identity.clone())
}

/// The caller, if it is a member node (its certificate was checked against its own CA at the
/// handshake).
pub(crate) fn require_peer<T>(request: &Request<T>) -> Result<Identity, Status> {
    let identity = caller(request)?;
    if identity.role != Role::Node {
        tracing::warn!(caller = %identity, "refused: federation call by a non-node");
        return Err(refusal(
            Code::PermissionDenied,
            ErrorReason::WrongRole,
            "only member nodes may call the federation service",
        ));
    }
    Ok(identity.clone())
}
