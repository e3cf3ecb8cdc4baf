//! The node's ledger as its office reads it: hash-chained entries and a head signed by the node,
//! so that the office (and `schein ledger verify`) can check that nothing was changed or dropped.

use schein_proto::KeyId;
use schein_proto::v1::{LedgerHead, LedgerResponse};

use super::page;
use crate::node::Node;
use crate::store::StoreError;

/// Up to a page of entries from `from_seq` (1 is the first) and the signed head. The head is read
/// first and entries only up to it: a settlement in between must not make a consistent ledger
/// look broken.
pub fn read(node: &Node, from_seq: u64, limit: u32) -> Result<LedgerResponse, StoreError> {
    let head = node.store.ledger_head()?;
    let from = from_seq.max(1);
    let limit = page::size(limit).min(
        usize::try_from(head.seq.saturating_add(1).saturating_sub(from)).unwrap_or(usize::MAX),
    );
    let entries = node.store.ledger_entries(from, limit)?;
    let key_id = KeyId::of(&node.signing_key.verifying_key());
    let signed_head = schein_proto::signed::seal(
        schein_proto::signed::Kind::LedgerHead,
        &LedgerHead {
            node: node.id.clone(),
            seq: head.seq,
            hash: head.hash.to_vec(),
            key_id: key_id.0,
        },
        &node.signing_key,
    );
    let signing_keys = node
        .roster()
        .member(&node.id)
        .map(|me| me.to_proto().signing_keys)
        .unwrap_or_default();
    Ok(LedgerResponse {
        entries,
        signed_head,
        signing_keys,
    })
}
