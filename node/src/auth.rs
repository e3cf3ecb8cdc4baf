//! Authorisation per RPC, by the caller's role and node (DESIGN.md, "Identities and trust"):
//! only this node's office issues and revokes, only this node's providers verify through it,
//! only member nodes call the federation service. Every call also checks that the CA which
//! vouched for the caller at the handshake is still the one the roster trusts for its node.

use schein_proto::error::refusal;
use schein_proto::v1::ErrorReason;
use tonic::{Request, Status};

use crate::node::Node;
use crate::pki::{Identity, Role};
use crate::tls::Caller;

/// The authenticated caller of `request`, if the roster in force still trusts its CA. Every
/// connection the server accepts carries one; a request without one did not come through
/// [`crate::tls`] and is refused.
fn caller<'r, T>(request: &'r Request<T>, node: &Node) -> Result<&'r Identity, Status> {
    let caller = request.extensions().get::<Caller>().ok_or_else(|| {
        refusal(
            ErrorReason::UnknownIdentity,
            "no client certificate was presented",
        )
    })?;
    let still_trusted = node
        .roster()
        .member(&caller.identity.node)
        .is_some_and(|m| m.ca_fingerprint == caller.ca_fingerprint);
    if !still_trusted {
        tracing::warn!(caller = %caller.identity, "refused: its CA left the roster");
        return Err(refusal(
            ErrorReason::UnknownIdentity,
            "the authority that issued your certificate is no longer trusted by this node",
        ));
    }
    Ok(&caller.identity)
}

/// The caller, if it holds one of `roles` at this node.
pub(crate) fn require_local<T>(
    request: &Request<T>,
    node: &Node,
    roles: &[Role],
    action: &str,
) -> Result<Identity, Status> {
    let identity = caller(request, node)?;
    if !roles.contains(&identity.role) {
        tracing::warn!(caller = %identity, action, "refused: wrong role");
        let allowed: Vec<&str> = roles.iter().map(|r| r.holders()).collect();
        return Err(refusal(
            ErrorReason::WrongRole,
            format!(
                "{} {} certificate cannot {action}; only {} may",
                article(identity.role.as_str()),
                identity.role,
                allowed.join(" or ")
            ),
        ));
    }
    if identity.node != node.id {
        tracing::warn!(caller = %identity, action, "refused: caller of another node");
        return Err(refusal(
            ErrorReason::WrongNode,
            format!(
                "this is the node of {}; your certificate belongs to {}. Use your own city's node",
                node.name, identity.node
            ),
        ));
    }
    Ok(identity.clone())
}

/// "a" or "an" before `word`, as it is spoken: an office, a provider.
fn article(word: &str) -> &'static str {
    match word.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    }
}

/// The caller, if it may read reports here: a funder of any member, or this node's office.
pub(crate) fn require_reader<T>(request: &Request<T>, node: &Node) -> Result<Identity, Status> {
    let identity = caller(request, node)?;
    match identity.role {
        Role::Funder => Ok(identity.clone()),
        Role::Office if identity.node == node.id => Ok(identity.clone()),
        _ => {
            tracing::warn!(caller = %identity, "refused: report read by a non-reader");
            Err(refusal(
                ErrorReason::WrongRole,
                "reports are for funders and this node's clearing office",
            ))
        }
    }
}

/// The caller, if it is a member node.
pub(crate) fn require_peer<T>(request: &Request<T>, node: &Node) -> Result<Identity, Status> {
    let identity = caller(request, node)?;
    if identity.role != Role::Node {
        tracing::warn!(caller = %identity, "refused: federation call by a non-node");
        return Err(refusal(
            ErrorReason::WrongRole,
            "only member nodes may call the federation service",
        ));
    }
    Ok(identity.clone())
}
