//! The domain core: what a node does, whichever door a request comes through (the gRPC
//! services, the web console, the in-process test node). It knows neither tonic nor sled:
//! operations take and return the protocol's messages and this module's error enums, decide
//! with pure functions, and persist through the [`crate::store::Store`]'s domain operations,
//! whose transactions call those decisions.
//!
//! - [`access`]: who may do what — the one role table every door uses.
//! - [`vouchers`]: issue, revoke, show, list, approve caps (the office's vouchers).
//! - [`verify`]: verify a voucher of any member for a provider.
//! - [`claim`]: a provider's claim at the redeeming node, and held claims.
//! - [`settle`]: the issuer's decision on a settlement record.
//! - [`outbox`]: delivering settlement records to their issuers.
//! - [`clearing`]: closing a period pair by pair.
//! - [`report`]: aggregates with disclosure control.
//! - [`ledger`], [`witness`]: this node's ledger, and witnessing the peers' ledgers.
//! - [`recovery`]: recovering the settlements made after a backup from the peers' receipts.
//!
//! Each error enum says, for every variant, its [`schein_proto::v1::ErrorReason`] and a
//! sentence for people; the doors turn them into a gRPC status or a page in one place each.

pub mod access;
pub mod claim;
pub mod clearing;
pub mod identities;
pub mod ledger;
pub mod members;
pub mod outbox;
pub mod recovery;
pub mod report;
pub mod settle;
pub mod verify;
pub mod vouchers;
pub mod witness;

use schein_proto::v1::ErrorReason;

use crate::store::StoreError;

/// What every refusal of the core gives a door: a reason for programs (its `reason`) and a
/// sentence for people (its `Display`). A reason of [`ErrorReason::Storage`] or
/// [`ErrorReason::Internal`] is the node's fault: doors log the sentence and show a general one.
pub trait Refusal: std::error::Error {
    fn reason(&self) -> ErrorReason;
}

impl Refusal for StoreError {
    fn reason(&self) -> ErrorReason {
        match self {
            StoreError::UnknownVoucher => ErrorReason::UnknownVoucher,
            StoreError::AlreadyRevoked => ErrorReason::AlreadyRevoked,
            StoreError::Settle(_) => ErrorReason::InvalidArgument,
            StoreError::NeedsSecondApproval => ErrorReason::NeedsSecondApproval,
            StoreError::ClaimIdReused => ErrorReason::ClaimIdReused,
            StoreError::UnknownClaim => ErrorReason::UnknownClaim,
            StoreError::NotHeld => ErrorReason::InvalidArgument,
            StoreError::Sled(_)
            | StoreError::Corrupt(_)
            | StoreError::SerialTaken
            | StoreError::NewerFormat { .. }
            | StoreError::NeedsMigration { .. }
            | StoreError::Locked(_) => ErrorReason::Storage,
        }
    }
}

/// A listing's page: how many entries, and where it continues.
pub mod page {
    /// Entries per page when the request names none, and the most it may name.
    const DEFAULT: u32 = 50;
    const MAX: u32 = 1000;

    /// A page size from a request: 0 means the default.
    pub fn size(limit: u32) -> usize {
        let size = match limit {
            0 => DEFAULT,
            n => n.min(MAX),
        };
        size as usize
    }

    /// A page token that is not one this node gave out.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
    #[error("the page token is not one this node gave out")]
    pub struct BadToken;

    /// A page token is a listing cursor (a sequence number) in base32; `None` if empty.
    pub fn decode(token: &str) -> Result<Option<u64>, BadToken> {
        if token.is_empty() {
            return Ok(None);
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(token.as_bytes())
            .map_err(|_| BadToken)?;
        let bytes: [u8; 8] = bytes.try_into().map_err(|_| BadToken)?;
        Ok(Some(u64::from_be_bytes(bytes)))
    }

    pub fn encode(cursor: Option<u64>) -> String {
        cursor
            .map(|c| data_encoding::BASE32_NOPAD.encode(&c.to_be_bytes()))
            .unwrap_or_default()
    }
}
