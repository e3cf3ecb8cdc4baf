//! Refusals on the wire: a gRPC status whose message is a sentence for people and whose details
//! carry an [`ErrorReason`] for programs. Both sides use these functions, so the encoding of
//! the reason lives in one place.
//!
//! The details are a standard `google.rpc.Status` holding one `google.rpc.ErrorInfo` (reason
//! `WRONG_ROLE` etc., domain [`DOMAIN`]), as gRPC's richer error model prescribes for the
//! `grpc-status-details-bin` trailer: grpcurl, grpc-go and tonic-types read it. Older nodes sent
//! a bare `ErrorDetail` there; [`reason_of`] still reads that.

use prost::Message;
use tonic::{Code, Status};

use crate::rpc::ErrorInfo;
use crate::v1::{ErrorDetail, ErrorReason};

/// The domain of schein's reasons in `google.rpc.ErrorInfo`.
pub const DOMAIN: &str = "schein.de";
/// The type URL of `google.rpc.ErrorInfo` inside `google.protobuf.Any`.
const ERROR_INFO_TYPE: &str = "type.googleapis.com/google.rpc.ErrorInfo";
/// The prefix of every [`ErrorReason`] name in the proto, left out on the wire.
const REASON_PREFIX: &str = "ERROR_REASON_";

/// The gRPC code of each reason: chosen here, once, for every service.
pub fn code_of(reason: ErrorReason) -> Code {
    match reason {
        ErrorReason::WrongRole | ErrorReason::WrongNode => Code::PermissionDenied,
        ErrorReason::UnknownIdentity => Code::Unauthenticated,
        ErrorReason::InvalidArgument | ErrorReason::MalformedCode => Code::InvalidArgument,
        ErrorReason::UnknownVoucher | ErrorReason::NotIssuedHere => Code::NotFound,
        ErrorReason::AlreadyRevoked => Code::FailedPrecondition,
        ErrorReason::UnknownIssuer => Code::FailedPrecondition,
        ErrorReason::PeerUnreachable | ErrorReason::Recovering => Code::Unavailable,
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
    let message = message.into();
    let code = code_of(reason);
    let details = status_details(code, &message, reason);
    Status::with_details(code, message, details.into())
}

/// The bytes of the `grpc-status-details-bin` trailer for a refusal: a `google.rpc.Status` with
/// the same code and message as the gRPC status, and `reason` as its `ErrorInfo`.
pub fn status_details(code: Code, message: &str, reason: ErrorReason) -> Vec<u8> {
    let name = reason.as_str_name();
    let info = ErrorInfo {
        reason: name.strip_prefix(REASON_PREFIX).unwrap_or(name).to_owned(),
        domain: DOMAIN.to_owned(),
        metadata: Default::default(),
    };
    crate::rpc::Status {
        code: code as i32,
        message: message.to_owned(),
        details: vec![prost_types::Any {
            type_url: ERROR_INFO_TYPE.to_owned(),
            value: info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

/// The reason carried by a status made with [`refusal`] (or by an older node's bare
/// `ErrorDetail`), if any.
pub fn reason_of(status: &Status) -> Option<ErrorReason> {
    let bytes = status.details();
    let reason = match crate::rpc::Status::decode(bytes) {
        // A bare `ErrorDetail` (one varint, field 1) also decodes as a `google.rpc.Status`
        // with a code and nothing else; anything more is a standard status.
        Ok(rpc) if !rpc.details.is_empty() || !rpc.message.is_empty() => {
            let info = rpc
                .details
                .iter()
                .filter(|any| any.type_url == ERROR_INFO_TYPE)
                .filter_map(|any| ErrorInfo::decode(any.value.as_slice()).ok())
                .find(|info| info.domain == DOMAIN)?;
            ErrorReason::from_str_name(&format!("{REASON_PREFIX}{}", info.reason))?
        }
        _ => ErrorReason::try_from(ErrorDetail::decode(bytes).ok()?.reason).ok()?,
    };
    (reason != ErrorReason::Unspecified).then_some(reason)
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

    #[test]
    fn details_are_a_standard_rpc_status_with_error_info() {
        let status = refusal(ErrorReason::TooMany, "too many today");
        let rpc = crate::rpc::Status::decode(status.details()).unwrap();
        assert_eq!(rpc.code, Code::ResourceExhausted as i32);
        assert_eq!(rpc.message, "too many today");
        assert_eq!(rpc.details.len(), 1);
        assert_eq!(rpc.details[0].type_url, ERROR_INFO_TYPE);
        let info = ErrorInfo::decode(rpc.details[0].value.as_slice()).unwrap();
        assert_eq!(info.reason, "TOO_MANY");
        assert_eq!(info.domain, "schein.de");
    }

    #[test]
    fn an_older_nodes_bare_error_detail_is_still_read() {
        let old = ErrorDetail {
            reason: ErrorReason::PeriodClosed as i32,
        };
        let status = Status::with_details(
            Code::FailedPrecondition,
            "closed",
            old.encode_to_vec().into(),
        );
        assert_eq!(reason_of(&status), Some(ErrorReason::PeriodClosed));
        // Another domain's ErrorInfo is not schein's reason.
        let foreign = crate::rpc::Status {
            code: 3,
            message: String::new(),
            details: vec![prost_types::Any {
                type_url: ERROR_INFO_TYPE.to_owned(),
                value: ErrorInfo {
                    reason: "WRONG_ROLE".into(),
                    domain: "example.com".into(),
                    metadata: Default::default(),
                }
                .encode_to_vec(),
            }],
        };
        let status =
            Status::with_details(Code::InvalidArgument, "", foreign.encode_to_vec().into());
        assert_eq!(reason_of(&status), None);
    }
}
