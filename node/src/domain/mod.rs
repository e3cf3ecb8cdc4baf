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
//!
//! Each error enum says, for every variant, its [`schein_proto::v1::ErrorReason`] and a
//! sentence for people; the doors turn them into a gRPC status or a page in one place each.

pub mod access;
pub mod claim;
pub mod clearing;
pub mod report;
pub mod verify;
