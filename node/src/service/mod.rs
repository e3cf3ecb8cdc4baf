//! The gRPC services of a node. Each checks who calls, turns the request into a domain call on
//! [`crate::node::Node`] and its store, and maps domain errors to statuses with a reason.

mod federation;
mod office;
mod provider;

pub use federation::FederationService;
pub use office::OfficeService;
pub use provider::ProviderService;

use schein_proto::error::refusal;
use schein_proto::v1::ErrorReason;
use tonic::Status;

use crate::store::StoreError;

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::UnknownVoucher => refusal(
                ErrorReason::UnknownVoucher,
                "no voucher with this code was issued by this office",
            ),
            StoreError::AlreadyRevoked => refusal(
                ErrorReason::AlreadyRevoked,
                "this voucher is revoked already",
            ),
            StoreError::Sled(_) | StoreError::Corrupt(_) | StoreError::SerialTaken => {
                // The details stay in the node's log; the caller learns only that nothing changed.
                tracing::error!(%error, "storage failed");
                refusal(
                    ErrorReason::Storage,
                    "the node could not store this; nothing was changed. Try again, and tell the node's operator if it persists",
                )
            }
        }
    }
}

fn invalid_argument(message: impl Into<String>) -> Status {
    refusal(ErrorReason::InvalidArgument, message)
}
