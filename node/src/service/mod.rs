//! The gRPC door: thin services over the domain core. Each RPC authorises its caller with the
//! one role table ([`crate::domain::access`]), converts, calls the core, and maps the core's
//! error to a status — the mapping lives here, in one place ([`status`]).

mod federation;
mod office;
mod provider;
mod reports;
mod status;

pub use federation::FederationService;
pub use office::OfficeService;
pub use provider::ProviderService;
pub use reports::ReportsService;

use schein_proto::error::refusal;
use schein_proto::v1::ErrorReason;
use tonic::Status;

use crate::store::StoreError;

/// The caller of `request` as the TLS acceptor attached it, if the role table admits it.
fn authorize<T>(
    request: &tonic::Request<T>,
    node: &crate::node::Node,
    operation: crate::domain::access::Operation,
) -> Result<crate::pki::Identity, Status> {
    let caller = request.extensions().get::<crate::tls::Caller>();
    Ok(crate::domain::access::authorize(caller, node, operation)?)
}

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
            StoreError::Settle(error) => refusal(ErrorReason::InvalidArgument, error.to_string()),
            StoreError::NeedsSecondApproval => refusal(
                ErrorReason::NeedsSecondApproval,
                "you approved this cap already; a second, different office identity must approve it too",
            ),
            StoreError::ClaimIdReused => refusal(
                ErrorReason::ClaimIdReused,
                "this claim id was used before for a different claim; use a new claim id",
            ),
            StoreError::UnknownClaim => {
                refusal(ErrorReason::UnknownClaim, "there is no claim with this id")
            }
            StoreError::NotHeld => refusal(
                ErrorReason::InvalidArgument,
                "this claim is not held for confirmation",
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

const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 1000;

/// A page size from a request: 0 means the default.
fn page_size(limit: u32) -> usize {
    let size = match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    size as usize
}

/// Page tokens are listing cursors (sequence numbers) in base32.
fn decode_page_token(token: &str) -> Result<Option<u64>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let bad_token = || invalid_argument("the page token is not one this node gave out");
    let bytes = data_encoding::BASE32_NOPAD
        .decode(token.as_bytes())
        .map_err(|_| bad_token())?;
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| bad_token())?;
    Ok(Some(u64::from_be_bytes(bytes)))
}

fn encode_page_token(cursor: Option<u64>) -> String {
    cursor
        .map(|c| data_encoding::BASE32_NOPAD.encode(&c.to_be_bytes()))
        .unwrap_or_default()
}

/// One page of this node's claims accepted by `keep`.
fn list_claims(
    node: &crate::node::Node,
    request: &schein_proto::v1::ListClaimsRequest,
    keep: impl Fn(&schein_proto::v1::ClaimRecord) -> bool,
) -> Result<schein_proto::v1::ListClaimsResponse, Status> {
    let after = decode_page_token(&request.page_token)?;
    let (claims, next) = node
        .store
        .list_claims(after, page_size(request.limit), keep)?;
    Ok(schein_proto::v1::ListClaimsResponse {
        claims,
        next_page_token: encode_page_token(next),
    })
}
