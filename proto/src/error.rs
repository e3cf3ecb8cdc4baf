//! Refusals on the wire: a gRPC status whose message is a sentence for people and whose details
//! carry an [`ErrorReason`] for programs. Both sides use these two functions, so the encoding of
//! the reason lives in one place.

use prost::Message;
use tonic::{Code, Status};

use crate::v1::{ErrorDetail, ErrorReason};

/// The gRPC code of each reason: chosen here, once, for every service.
pub fn code_of(reason: ErrorReason) -> Code {
    match reason {
        ErrorReason::WrongRole | ErrorReason::WrongNode => Code::PermissionDenied,
        ErrorReason::UnknownIdentity => Code::Unauthenticated,
        ErrorReason::InvalidArgument | ErrorReason::MalformedCode => Code::InvalidArgument,
        ErrorReason::UnknownVoucher | ErrorReason::NotIssuedHere => Code::NotFound,
        ErrorReason::AlreadyRevoked => Code::FailedPrecondition,
        ErrorReason::UnknownIssuer => Code::FailedPrecondition,
        ErrorReason::PeerUnreachable => Code::Unavailable,
        ErrorReason::ClaimIdReused => Code::AlreadyExists,
        ErrorReason::UnknownClaim => Code::NotFound,
        ErrorReason::FeeItem | ErrorReason::BadSignature => Code::InvalidArgument,
        ErrorReason::VoucherNotClaimable
        | ErrorReason::NeedsSecondApproval
        | ErrorReason::PeriodNotClosable
        | ErrorReason::AlreadyClosed
        | ErrorReason::PeriodClosed
        | ErrorReason::OverCeiling
        | ErrorReason::WireVersion => Code::FailedPrecondition,
        ErrorReason::UnknownProvider => Code::NotFound,
        ErrorReason::TooMany => Code::ResourceExhausted,
        ErrorReason::Storage | ErrorReason::Internal | ErrorReason::Unspecified => Code::Internal,
    }
}

/// A status for `reason` with a human `message`; the reason travels in the details.
pub fn refusal(reason: ErrorReason, message: impl Into<String>) -> Status {
    let detail = ErrorDetail {
        reason: reason as i32,
    };
    Status::with_details(code_of(reason), message, detail.encode_to_vec().into())
}

/// The reason carried by a status made with [`refusal`], if any.
pub fn reason_of(status: &Status) -> Option<ErrorReason> {
    let detail = ErrorDetail::decode(status.details()).ok()?;
    ErrorReason::try_from(detail.reason)
        .ok()
        .filter(|r| *r != ErrorReason::Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_survives_the_status() {
        let status = refusal(ErrorReason::WrongRole, "not for you");
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(status.message(), "not for you");
        assert_eq!(reason_of(&status), Some(ErrorReason::WrongRole));
        assert_eq!(reason_of(&Status::internal("x")), None);
    }
}
