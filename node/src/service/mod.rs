//! The gRPC door: thin services over the domain core. Each RPC authorises its caller with the
//! one role table ([`crate::domain::access`]), converts, calls the core, and maps the core's
//! error to a status — the mapping lives here, in one place ([`status`]).

pub(crate) mod federation;
mod identities;
mod office;
mod provider;
mod reports;
mod status;

pub use federation::FederationService;
pub use identities::IdentitiesService;
pub use office::OfficeService;
pub use provider::ProviderService;
pub use reports::ReportsService;

use tonic::Status;

/// The caller of `request` as the TLS acceptor attached it, if the role table admits it.
fn authorize<T>(
    request: &tonic::Request<T>,
    node: &crate::node::Node,
    operation: crate::domain::access::Operation,
) -> Result<crate::pki::Identity, Status> {
    let caller = request.extensions().get::<crate::tls::Caller>();
    Ok(crate::domain::access::authorize(caller, node, operation)?)
}
