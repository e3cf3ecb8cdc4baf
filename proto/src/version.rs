//! The wire version between nodes (see `federation.proto`): each call of the federation service
//! names the caller's version in a metadata header; a node serves callers up to one version
//! newer than itself (and any older one), and refuses the rest with a reason, so that nodes one
//! version apart work together during a staggered upgrade and a larger gap is named, not
//! misread.

use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::error::refusal;
use crate::v1::ErrorReason;

/// The wire version this build speaks. 2: paged statements.
pub const WIRE_VERSION: u32 = 2;

/// The metadata header that carries a caller's wire version.
pub const WIRE_VERSION_HEADER: &str = "schein-wire-version";

/// The caller's wire version: as its header says; 1 if it sends none (nodes before versions
/// were sent).
pub fn caller_version(metadata: &MetadataMap) -> Result<u32, Status> {
    match metadata.get(WIRE_VERSION_HEADER) {
        None => Ok(1),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| {
                refusal(
                    ErrorReason::InvalidArgument,
                    format!("the header {WIRE_VERSION_HEADER} is not a version number"),
                )
            }),
    }
}

/// Refuses a caller more than one wire version ahead of `own`.
pub fn check_caller(metadata: &MetadataMap, own: u32) -> Result<u32, Status> {
    let theirs = caller_version(metadata)?;
    if theirs > own.saturating_add(1) {
        return Err(refusal(
            ErrorReason::WireVersion,
            format!(
                "the calling node speaks wire version {theirs}; this node speaks {own} and understands callers up to {}. Upgrade this node",
                own.saturating_add(1)
            ),
        ));
    }
    Ok(theirs)
}

/// Names this build's wire version in a request's metadata.
pub fn stamp(metadata: &mut MetadataMap) {
    metadata.insert(
        WIRE_VERSION_HEADER,
        tonic::metadata::MetadataValue::from(WIRE_VERSION),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_version_ahead_is_served_two_are_refused() {
        let mut metadata = MetadataMap::new();
        assert_eq!(
            check_caller(&metadata, 2).unwrap(),
            1,
            "no header: version 1"
        );
        stamp(&mut metadata);
        assert_eq!(check_caller(&metadata, WIRE_VERSION).unwrap(), WIRE_VERSION);
        metadata.insert(WIRE_VERSION_HEADER, "3".parse().unwrap());
        assert_eq!(check_caller(&metadata, 2).unwrap(), 3);
        metadata.insert(WIRE_VERSION_HEADER, "4".parse().unwrap());
        let refused = check_caller(&metadata, 2).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::FailedPrecondition);
        assert_eq!(
            crate::error::reason_of(&refused),
            Some(ErrorReason::WireVersion)
        );
        assert!(refused.message().contains("wire version 4"));
        metadata.insert(WIRE_VERSION_HEADER, "x".parse().unwrap());
        assert_eq!(
            check_caller(&metadata, 2).unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
