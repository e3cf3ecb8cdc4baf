//! The core's errors as gRPC statuses: the reason each error names travels in the details, its
//! sentence as the message. Every service maps through here, so that a new refusal reason is
//! added to its error enum and to nothing else. A refusal that is the node's own fault (storage,
//! an inconsistency) is logged with its details; the caller learns only that nothing changed.

use schein_proto::error::refusal;
use schein_proto::v1::ErrorReason;
use tonic::Status;

use crate::domain::Refusal;
use crate::domain::access::AccessError;
use crate::domain::claim::ClaimError;
use crate::domain::clearing::ClearingError;
use crate::domain::identities::RenewError;
use crate::domain::recovery::RecoveryRefusal;
use crate::domain::report::ReportError;
use crate::domain::settle::SettleError;
use crate::domain::verify::VerifyError;
use crate::domain::vouchers::VoucherError;
use crate::domain::witness::WitnessError;
use crate::store::StoreError;

/// The status for any refusal of the core.
pub(super) fn status_of(error: &dyn Refusal) -> Status {
    let reason = error.reason();
    match reason {
        ErrorReason::Storage | ErrorReason::Internal | ErrorReason::Unspecified => {
            tracing::error!(%error, "the node failed");
            refusal(
                reason,
                "the node could not do this; nothing was changed. Try again, and tell the node's operator if it persists",
            )
        }
        _ => refusal(reason, error.to_string()),
    }
}

macro_rules! statuses {
    ($($error:ty),* $(,)?) => {$(
        impl From<$error> for Status {
            fn from(error: $error) -> Self {
                status_of(&error)
            }
        }
    )*};
}

statuses!(
    StoreError,
    VoucherError,
    ClaimError,
    SettleError,
    ClearingError,
    ReportError,
    VerifyError,
    WitnessError,
    RenewError,
    RecoveryRefusal,
);

impl From<AccessError> for Status {
    fn from(error: AccessError) -> Self {
        refusal(error.reason(), error.to_string())
    }
}
